/**
 * The operator's view of the API: one re-export of the proxy's pool spec and
 * routing-table schemas (the proxy, the table's consumer, owns them), plus
 * the status the operator writes, which only the operator knows.
 */
export {
  API_GROUP,
  API_VERSION,
  POOL_KIND,
  type PoolSpec,
  type PoolSpecInput,
  poolSpecSchema,
  type StickyBackendPool,
  stickyBackendPoolSchema,
} from '../../../proxy/src/api/pool-spec.ts';
export {
  ROUTING_TABLE_SCHEMA_VERSION,
  type RoutingTable,
  routingTableSchema,
  type TableEndpoint,
} from '../../../proxy/src/api/routing-table.ts';
export {
  type Condition,
  type PoolStatus,
  poolStatusSchema,
  type SessionStoreStatus,
} from './pool-status.ts';

/** Plural resource name of StickyBackendPool (URL path segment). */
export const POOL_PLURAL = 'stickybackendpools';
/** Label that ties a proxy pod (managed or sidecar) to its pool: `tether.dev/pool: <pool name>`. */
export const POOL_LABEL = 'tether.dev/pool';
