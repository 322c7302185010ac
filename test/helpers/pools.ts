/**
 * StickyBackendPools and routing tables of static loopback endpoints, for
 * tests: one way to build them, with the schema's defaults applied.
 */
import { type StickyBackendPool, stickyBackendPoolSchema } from '../../proxy/src/api/pool-spec.ts';
import { buildRoutingTable, type RoutingTable } from '../../proxy/src/api/routing-table.ts';

/** An endpoint as a pool file lists it; `address` defaults to 127.0.0.1. */
export interface TestEndpoint {
  name: string;
  port: number;
  address?: string;
  draining?: boolean;
  weight?: number;
}

/**
 * The pool's manifest (the input form a user writes), before defaults.
 *
 * @param spec - more spec fields (affinity, draining, …), merged over the backend.
 * @param name - `namespace/name`, or a bare name in `default`.
 */
export function poolManifest(
  endpoints: readonly TestEndpoint[],
  spec: Record<string, unknown> = {},
  name = 'shop',
) {
  const [namespace, bare] = name.includes('/') ? name.split('/') : ['default', name];
  return {
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name: bare, namespace },
    spec: { backend: { endpoints: endpoints.map((e) => ({ address: '127.0.0.1', ...e })) }, ...spec },
  };
}

/** The parsed pool. @throws {ZodError} when the manifest breaks the schema. */
export function testPool(
  endpoints: readonly TestEndpoint[],
  spec: Record<string, unknown> = {},
  name = 'shop',
): StickyBackendPool {
  return stickyBackendPoolSchema.parse(poolManifest(endpoints, spec, name));
}

/** The pool's routing table at `revision`. */
export function testTable(
  revision: number,
  endpoints: readonly TestEndpoint[],
  spec: Record<string, unknown> = {},
  name = 'shop',
): RoutingTable {
  return buildRoutingTable(testPool(endpoints, spec, name), revision);
}
