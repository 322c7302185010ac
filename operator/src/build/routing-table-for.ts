/**
 * The routing table of a pool, from its spec and (for a Service backend)
 * the Service's EndpointSlices: a pure function, so everything a reconcile
 * decides about endpoints is table-tested here.
 */
import { createHash } from 'node:crypto';
import { buildRoutingTable, sessionStoreOfTable } from '../../../proxy/src/api/routing-table.ts';
import {
  ROUTING_TABLE_SCHEMA_VERSION,
  type RoutingTable,
  routingTableSchema,
  type StickyBackendPool,
  type TableEndpoint,
} from '../api/index.ts';
import type { EndpointSlice, Service } from '../kube/types.ts';

/** Label an EndpointSlice carries with the name of its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Why a Service-backed pool has no table content of its own. */
export type BackendProblem =
  | { reason: 'ServiceNotFound'; message: string }
  | { reason: 'PortNotFound'; message: string };

/** A table without its revision: what a reconcile builds before it knows the revision. */
export type TableContent = Omit<RoutingTable, 'revision'>;

/**
 * The name an EndpointSlice gives the pool's `backend.service.port`.
 * EndpointSlice ports carry the Service port's *name* and the target port
 * number, never the Service port number: a number is looked up in the Service.
 *
 * @returns the port name ("" for a Service's single unnamed port), or a problem.
 */
export function resolvePortName(
  port: string | number,
  service: Service | undefined,
  serviceName: string,
): string | BackendProblem {
  if (service === undefined) {
    return { reason: 'ServiceNotFound', message: `Service ${serviceName} not found` };
  }
  const ports = service.spec?.ports ?? [];
  const found = ports.find((p) => (typeof port === 'number' ? p.port === port : p.name === port));
  if (found === undefined) {
    return {
      reason: 'PortNotFound',
      message: `Service ${serviceName} has no port ${JSON.stringify(port)} (ports: ${
        ports.map((p) => p.name || String(p.port)).join(', ') || 'none'
      })`,
    };
  }
  return found.name ?? '';
}

/**
 * The endpoints of a Service's EndpointSlices for one port, as table endpoints.
 *
 * - `ready` (nil means true, as the API says) → `Ready`;
 * - `serving && terminating` → `Draining` (keeps its pinned clients, gets no new ones);
 * - anything else (not serving, or not ready and not terminating) is left out.
 *
 * The id is the pod's name (`targetRef`), never an index, so a cookie stays
 * valid while slices are re-cut; an endpoint without a pod is `address:port`.
 * An endpoint listed twice (two slices during a change) is kept once, Ready
 * before Draining. Sorted by id, so equal inputs give equal tables.
 */
export function endpointsFromSlices(slices: readonly EndpointSlice[], portName: string): TableEndpoint[] {
  const byId = new Map<string, TableEndpoint>();
  for (const s of slices) {
    if (s.addressType !== 'IPv4' && s.addressType !== 'IPv6') continue;
    const port = (s.ports ?? []).find((p) => (p.name ?? '') === portName)?.port;
    if (port === undefined || port === null) continue;
    for (const e of s.endpoints ?? []) {
      const address = e.addresses[0];
      if (address === undefined) continue;
      const c = e.conditions ?? {};
      const ready = c.ready ?? true;
      const serving = c.serving ?? ready;
      const terminating = c.terminating ?? false;
      const state = ready && !terminating ? 'Ready' : serving && terminating ? 'Draining' : undefined;
      if (state === undefined) continue;
      const id =
        e.targetRef?.kind === 'Pod' && e.targetRef.name
          ? e.targetRef.name
          : s.addressType === 'IPv6'
            ? `[${address}]:${port}`
            : `${address}:${port}`;
      const prev = byId.get(id);
      if (prev !== undefined && (prev.state === 'Ready' || state === 'Draining')) continue;
      byId.set(id, { id, address, port, ...(e.zone ? { zone: e.zone } : {}), state, weight: 1 });
    }
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * The table content (everything but the revision) of a pool.
 *
 * @param service - the backend Service; read only when `backend.service.port` is a number.
 * @param slices - EndpointSlices of the pool's namespace labelled with the
 *   Service's name (others are ignored); unused for static endpoints.
 * @returns the content, or the reason there is none (the pool is then not Ready).
 */
export function routingTableFor(
  pool: StickyBackendPool,
  slices: readonly EndpointSlice[],
  service: Service | undefined,
): TableContent | BackendProblem {
  const spec = pool.spec;
  const svc = spec.backend.service;
  if (svc === undefined) {
    const { revision: _r, ...content } = buildRoutingTable(pool, 1);
    return content;
  }
  // A named port is what EndpointSlices carry; only a number needs the Service.
  const portName = typeof svc.port === 'string' ? svc.port : resolvePortName(svc.port, service, svc.name);
  if (typeof portName !== 'string') return portName;
  const mine = slices.filter(
    (s) =>
      s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.name &&
      s.metadata.namespace === pool.metadata.namespace,
  );
  return {
    schemaVersion: ROUTING_TABLE_SCHEMA_VERSION,
    pool: `${pool.metadata.namespace}/${pool.metadata.name}`,
    endpoints: endpointsFromSlices(mine, portName),
    affinity: spec.affinity,
    onEndpointFailure: spec.onEndpointFailure,
    draining: spec.draining,
    healthCheck: spec.healthCheck,
    ...(spec.balanceFactor === undefined ? {} : { balanceFactor: spec.balanceFactor }),
    ...sessionStoreOfTable(spec),
  };
}

/** Puts a revision on table content and checks it against the contract. @throws {ZodError} when invalid. */
export function withRevision(content: TableContent, revision: number): RoutingTable {
  return routingTableSchema.parse({ ...content, revision });
}

/** SHA-256 (hex, first 32 chars) of the content: equal content, equal hash, so an idle reconcile keeps the revision. */
export function hashTableContent(content: TableContent): string {
  return createHash('sha256').update(stableJson(content)).digest('hex').slice(0, 32);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

export function isBackendProblem(x: TableContent | BackendProblem): x is BackendProblem {
  return 'reason' in x;
}
