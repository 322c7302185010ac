/**
 * `--workers`: the messages between the primary and its workers over
 * node:cluster's IPC channel (JSON). Requests carry an `id`; the worker
 * answers each with `{ re: id, ok, ... }`. Both ends are this program, so the
 * shapes are trusted (zod stays at the edges: the admin API, the pool file).
 */
import type { Registry } from 'prom-client';
import type { RoutingTable } from '../api/routing-table.ts';
import type { TableSource } from '../table-store.ts';

/** Cookie keys as they travel: base64 of each key's bytes, the signing key first. */
export type WireKeys = readonly string[];

/** Primary → worker. */
export type PrimaryRequest =
  /** The first message a worker gets, after its `hello`: keys, the table to serve (if any), where to listen. */
  | {
      id: number;
      type: 'boot';
      keys: WireKeys;
      table: RoutingTable | undefined;
      source: TableSource;
      port: number;
    }
  /** Phase 1 of a swap: stage the table (decide, compile, prepare pools) and serve nothing yet. */
  | { id: number; type: 'prepare'; txn: number; table: RoutingTable; source: TableSource }
  /** Phase 2: serve the staged table. */
  | { id: number; type: 'commit'; txn: number }
  /** Phase 2, the other way: drop the staged table. */
  | { id: number; type: 'abort'; txn: number }
  | { id: number; type: 'keys'; keys: WireKeys }
  | { id: number; type: 'status' }
  | { id: number; type: 'metrics' }
  /** Graceful stop: the same drain as SIGTERM on a single process. */
  | { id: number; type: 'shutdown' };

/** What a worker reports of itself (`GET /v1/workers`). */
export interface WorkerStatus {
  readonly pid: number;
  readonly pool: string | undefined;
  readonly revision: number | undefined;
  /** Requests this worker answered (its `tether_proxy_requests_total`, all labels). */
  readonly requests: number;
  readonly openConnections: number;
  readonly shuttingDown: boolean;
}

/** Worker → primary: an answer to a request, or `hello` once it listens for messages. */
export type WorkerMessage =
  | { type: 'hello' }
  | { re: number; ok: true; port?: number; revision?: number; status?: WorkerStatus; metrics?: MetricsJson }
  | { re: number; ok: false; reason: 'stale' | 'wrong_pool' | 'invalid' | 'failed'; message: string };

/** A registry's `getMetricsAsJSON()`, as `AggregatorRegistry.aggregate` takes it. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** Whether an IPC message is one of ours (cluster's own internal messages share the channel). */
export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && ('re' in m || (m as { type?: unknown }).type === 'hello');
}

/** Whether an IPC message is a request from our primary. */
export function isPrimaryRequest(m: unknown): m is PrimaryRequest {
  return typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'number' && 'type' in m;
}
