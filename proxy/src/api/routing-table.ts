/**
 * The routing table: the contract between the operator (producer) and the
 * proxy (consumer, owner of this schema). The operator imports it through one
 * re-export; see the architecture's "The routing table" section.
 */
import { z } from 'zod';
import {
  affinitySchema,
  drainingSchema,
  durationSchema,
  endpointAddressSchema,
  healthCheckSchema,
  type PoolSpec,
  type StickyBackendPool,
} from './pool-spec.ts';

export const ROUTING_TABLE_SCHEMA_VERSION = 1;

export const tableEndpointSchema = z.object({
  /** Stable id (pod name, or the static endpoint's name); what a cookie pins to. Never an index. */
  id: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9[][A-Za-z0-9._:/[\]-]*$/),
  /** An IP literal the proxy dials as is (see {@link endpointAddressSchema}). */
  address: endpointAddressSchema,
  port: z.number().int().min(1).max(65535),
  zone: z.string().max(63).optional(),
  /** `Draining`: keeps pinned clients until `draining.timeout`, gets no new pins. */
  state: z.enum(['Ready', 'Draining']),
  weight: z.number().int().min(1).max(1000),
  /** When draining began (RFC 3339); absent: when this proxy first saw it draining. */
  drainingSince: z.iso.datetime({ offset: true }).optional(),
});

export const routingTableSchema = z
  .object({
    schemaVersion: z.literal(ROUTING_TABLE_SCHEMA_VERSION),
    /** `namespace/name` of the pool. */
    pool: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/),
    /** Strictly increasing per pool; a proxy refuses a lower one (409). */
    revision: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    endpoints: z.array(tableEndpointSchema).max(5000),
    affinity: affinitySchema,
    onEndpointFailure: z.enum(['Repin', 'Reject']),
    draining: drainingSchema,
    healthCheck: healthCheckSchema,
    balanceFactor: z.number().int().min(100).max(10_000).optional(),
    /**
     * Pins the proxy keeps in the session store beyond Learn's: present (from
     * the spec's `sessionStore.persistPins: true`) when ClientIP and Header
     * pins are persisted, with their sliding timeout. Absent: off, so tables
     * of pools without it are what they were before the field existed.
     */
    sessionStore: z.object({ persistPins: z.boolean(), pinTimeout: durationSchema }).optional(),
  })
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    for (const [i, e] of t.endpoints.entries()) {
      if (seen.has(e.id))
        ctx.addIssue({
          code: 'custom',
          message: `duplicate endpoint id ${e.id}`,
          path: ['endpoints', i, 'id'],
        });
      seen.add(e.id);
    }
  });

export type RoutingTable = z.infer<typeof routingTableSchema>;
export type TableEndpoint = z.infer<typeof tableEndpointSchema>;

/**
 * Builds the routing table of a pool whose backend is a static endpoint list
 * (the standalone proxy's pool file). The operator builds tables of
 * Service-backed pools from EndpointSlices with the same spec fields.
 *
 * @param pool - a parsed StickyBackendPool (defaults applied).
 * @param revision - the table revision, ≥ 1.
 * @throws {Error} when the pool's backend is a Service (needs the operator).
 */
export function buildRoutingTable(pool: StickyBackendPool, revision: number): RoutingTable {
  const spec: PoolSpec = pool.spec;
  const statics = spec.backend.endpoints;
  if (statics === undefined) {
    throw new Error(
      `pool ${pool.metadata.name}: backend.service needs the operator; the standalone proxy takes backend.endpoints`,
    );
  }
  return routingTableSchema.parse({
    schemaVersion: ROUTING_TABLE_SCHEMA_VERSION,
    pool: `${pool.metadata.namespace}/${pool.metadata.name}`,
    revision,
    endpoints: statics.map((e) => ({
      id: e.name ?? (e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`),
      address: e.address,
      port: e.port,
      ...(e.zone === undefined ? {} : { zone: e.zone }),
      state: e.draining ? 'Draining' : 'Ready',
      weight: e.weight,
    })),
    affinity: spec.affinity,
    onEndpointFailure: spec.onEndpointFailure,
    draining: spec.draining,
    healthCheck: spec.healthCheck,
    ...(spec.balanceFactor === undefined ? {} : { balanceFactor: spec.balanceFactor }),
    ...sessionStoreOfTable(spec),
  });
}

/**
 * The table's `sessionStore` field for a spec: present only when pins are
 * persisted, so every other pool's table (and the operator's content hash
 * of it, hence its revision) is unchanged by the field's existence.
 */
export function sessionStoreOfTable(spec: PoolSpec): Pick<RoutingTable, 'sessionStore'> {
  return spec.sessionStore.persistPins
    ? { sessionStore: { persistPins: true, pinTimeout: spec.sessionStore.pinTimeout } }
    : {};
}
