/**
 * `--workers`: one worker process. It builds the same data plane as a
 * single process, but everything shared comes from the primary: the cookie
 * keys, the routing table (in two phases, so all workers swap or none), and
 * when to stop. It has no admin listener and watches no file; its metrics
 * go to the primary's `/metrics` on request.
 *
 * Order at start: `hello` → the primary's `boot` (keys, the current table)
 * → listen on the shared port → answer `boot`. The primary counts the worker
 * as serving only then, so a worker never takes a request without the table
 * every other worker serves.
 */
import cluster from 'node:cluster';
import { createSecretKey, type KeyObject } from 'node:crypto';
import { parseDuration } from '../api/duration.ts';
import type { DataPlane, Flags } from '../data-plane.ts';
import type { Logger } from '../json-log.ts';
import type { ProxyMetrics } from '../metrics.ts';
import type { CompiledTable } from '../routing/compiled-table.ts';
import type { StagedOffer, TableSource } from '../table-store.ts';
import {
  isPrimaryRequest,
  type PrimaryRequest,
  type WireKeys,
  type WorkerMessage,
  type WorkerStatus,
} from './messages.ts';

/** What {@link runWorker} needs from the CLI. */
export interface WorkerContext {
  readonly flags: Flags;
  readonly log: Logger;
  /** cli.ts's `buildDataPlane`: the same data plane as a single process. */
  readonly build: (
    flags: Flags,
    log: Logger,
    cookieKeys: () => readonly KeyObject[],
    onSwap: (table: CompiledTable, source: TableSource, metrics: ProxyMetrics) => void,
  ) => DataPlane;
}

/** The slot the primary gave this worker (0..N-1), from the environment of the fork. */
export const SLOT_ENV = 'TETHER_WORKER_SLOT';

/** Cookie keys from their wire form (base64 of each key's bytes). */
export function decodeKeys(keys: WireKeys): KeyObject[] {
  return keys.map((k) => createSecretKey(Buffer.from(k, 'base64')));
}

/** Runs a worker until the primary (or a signal) stops it; never resolves before the process exits. */
export async function runWorker(ctx: WorkerContext): Promise<void> {
  const slot = Number(process.env[SLOT_ENV] ?? cluster.worker?.id ?? 0);
  const log: Logger = (level, msg, fields) => ctx.log(level, msg, { worker: slot, ...fields });
  let keys: KeyObject[] = [];
  const dp = ctx.build(
    ctx.flags,
    log,
    () => keys,
    (table, source) =>
      // The primary logs each swap once, for every worker.
      log('debug', 'routing table swapped in', { pool: table.pool, revision: table.revision, source }),
  );
  const staged = new Map<number, StagedOffer>();
  let listening = false;
  let shuttingDown = false;

  const reply = (m: WorkerMessage): void => {
    if (process.connected) process.send?.(m);
  };

  const stop = async (why: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeoutMs = parseDuration(ctx.flags['shutdown-timeout']);
    log('info', 'worker shutting down: finishing requests in flight', { why, timeoutMs });
    await dp.proxy.shutdown(timeoutMs);
    await dp.upstreams.close();
    log('info', 'worker stopped');
    process.exit(0);
  };

  const status = async (): Promise<WorkerStatus> => {
    const requests = (await dp.metrics.requests.get()).values.reduce((sum, v) => sum + v.value, 0);
    const open = (await dp.metrics.openConnections.get()).values[0]?.value ?? 0;
    return {
      pid: process.pid,
      pool: dp.store.current?.pool,
      revision: dp.store.current?.revision,
      requests,
      openConnections: open,
      shuttingDown,
    };
  };

  const handle = async (m: PrimaryRequest): Promise<WorkerMessage> => {
    switch (m.type) {
      case 'boot': {
        keys = decodeKeys(m.keys);
        if (m.table !== undefined) {
          const r = dp.store.offer(m.table, m.source);
          if (!r.accepted)
            return {
              re: m.id,
              ok: false,
              reason: r.reason === 'unavailable' ? 'failed' : r.reason,
              message: r.message,
            };
        }
        const port = await dp.proxy.listen(ctx.flags.listen.host, m.port);
        listening = true;
        return { re: m.id, ok: true, port, revision: dp.store.current?.revision };
      }
      case 'prepare': {
        const r = dp.store.stage(m.table, m.source);
        if (!r.accepted)
          return {
            re: m.id,
            ok: false,
            reason: r.reason === 'unavailable' ? 'failed' : r.reason,
            message: r.message,
          };
        staged.get(m.txn)?.abort();
        staged.set(m.txn, r);
        return { re: m.id, ok: true };
      }
      case 'commit': {
        const s = staged.get(m.txn);
        staged.delete(m.txn);
        if (s === undefined)
          return { re: m.id, ok: false, reason: 'failed', message: `no staged table ${m.txn}` };
        s.commit();
        return { re: m.id, ok: true, revision: dp.store.current?.revision };
      }
      case 'abort': {
        staged.get(m.txn)?.abort();
        staged.delete(m.txn);
        return { re: m.id, ok: true };
      }
      case 'keys':
        keys = decodeKeys(m.keys);
        log('debug', 'cookie keys replaced', { keys: keys.length });
        return { re: m.id, ok: true };
      case 'status':
        return { re: m.id, ok: true, status: await status() };
      case 'metrics':
        return { re: m.id, ok: true, metrics: await dp.metrics.registry.getMetricsAsJSON() };
      case 'shutdown':
        void stop('primary');
        return { re: m.id, ok: true };
    }
  };

  process.on('message', (m: unknown) => {
    if (!isPrimaryRequest(m)) return;
    handle(m).then(reply, (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      log('error', 'worker request failed', { type: m.type, error: message });
      reply({ re: m.id, ok: false, reason: 'failed', message });
    });
  });
  // The primary stops workers by message; a signal to the whole process group
  // (Ctrl-C, a container runtime) or to this pid drains the same way.
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  // The primary reloads on SIGHUP and tells the workers; a hangup of the terminal must not kill them.
  process.on('SIGHUP', () => {});
  log('debug', 'worker started', { pid: process.pid, listening });
  reply({ type: 'hello' });
}
