/**
 * One process's data plane and the flags it is built from: what
 * `tether-proxy` runs as a single process, and what each worker of
 * `--workers` runs. Apart from cli.ts (which starts the primary or the
 * workers) so that the workers' modules depend on this, not on the entry point.
 */
import type { KeyObject } from 'node:crypto';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import { DURATION_PATTERN, parseDuration } from './api/duration.ts';
import { durationSchema } from './api/pool-spec.ts';
import { NativeProxyServer } from './engine/native-server.ts';
import { watchFile } from './file-watch.ts';
import type { Logger } from './json-log.ts';
import { ProxyMetrics } from './metrics.ts';
import { ProxyServer } from './proxy-server.ts';
import type { CompiledTable } from './routing/compiled-table.ts';
import { readPublishedSessionStore, type SessionStoreConnection } from './session-store/connection.ts';
import { DEFAULT_STORE_TIMEOUT_MS, PinStore } from './session-store/pin-store.ts';
import { sessionStoreProblems } from './support.ts';
import { type TableSource, TableStore } from './table-store.ts';
import { Upstreams } from './upstreams.ts';

/** The data path when `--engine` is not given. */
const DEFAULT_ENGINE: 'native' | 'node' = 'native';

/** A size in bytes, nginx style: `512`, `64k`, `1m` (powers of 1024). */
const sizeSchema = z
  .string()
  .regex(/^[0-9]{1,10}[kKmM]?$/, 'a size such as 512, 64k or 1m')
  .transform((s) => {
    const unit = s.slice(-1).toLowerCase();
    const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1;
    return Number(mult === 1 ? s : s.slice(0, -1)) * mult;
  })
  .refine((n) => n >= 1 && n <= 1024 * 1024 * 1024, 'between 1 byte and 1g');

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, 'HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080')
  .transform((s) => {
    const at = s.lastIndexOf(':');
    return { host: s.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(s.slice(at + 1)) };
  })
  .refine((a) => a.port <= 65535, 'port above 65535');

/**
 * A duration flag between `minMs` and `maxMs`. zod runs a refinement even
 * after the format check failed, so the range is only judged on a value
 * that parses (else `parseDuration` would throw out of `safeParse`).
 */
function durationBetween(minMs: number, maxMs: number, message: string) {
  return durationSchema.refine((d) => {
    if (!DURATION_PATTERN.test(d)) return true;
    const ms = parseDuration(d);
    return ms >= minMs && ms <= maxMs;
  }, message);
}

/** `--workers`: a count, or `auto` for one per core the process may run on (nginx `worker_processes auto`). */
const workersSchema = z
  .string()
  .regex(/^(auto|[0-9]{1,7})$/, 'a whole number of processes (1 or more), or auto (one per core)')
  .transform((s) => (s === 'auto' ? availableParallelism() : Number(s)))
  .refine((n) => n >= 1 && n <= 1024, 'between 1 and 1024 processes, or auto (one per core)');

/** The flags, validated: zod at the edge. */
export const flagsSchema = z.object({
  config: z.string().min(1).optional(),
  listen: hostPort.prefault('127.0.0.1:8080'),
  'admin-listen': hostPort.prefault('127.0.0.1:9901'),
  'admin-token-file': z.string().min(1).optional(),
  'cookie-keys-file': z.string().min(1).optional(),
  'connect-timeout': durationSchema.default('5s'),
  'read-timeout': durationSchema.default('60s'),
  'shutdown-timeout': durationSchema.default('30s'),
  'tunnel-timeout': durationSchema.default('1h'),
  'client-header-timeout': durationBetween(100, Number.MAX_SAFE_INTEGER, 'at least 100ms').default('60s'),
  'shutdown-idle-grace': durationSchema.default('1s'),
  'connections-per-endpoint': z.coerce.number().int().min(1).max(10_000).default(128),
  'queue-size': z.coerce.number().int().min(0).max(1_000_000).default(1024),
  'queue-timeout': durationSchema.default('10s'),
  'client-body-timeout': durationSchema.default('60s'),
  'request-buffer-size': sizeSchema.prefault('64k'),
  'send-timeout': durationSchema.default('60s'),
  'response-buffer-size': sizeSchema.prefault('256k'),
  'session-store': z.string().min(1).optional(),
  'session-store-timeout': durationBetween(1, 1_000, 'between 1ms and 1s').default(
    `${DEFAULT_STORE_TIMEOUT_MS}ms`,
  ),
  'log-level': z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  workers: workersSchema.prefault('1'),
  'worker-sync-timeout': durationSchema
    .refine((d) => parseDuration(d) >= 100, 'at least 100ms')
    .default('10s'),
  engine: z.enum(['native', 'node']).default(DEFAULT_ENGINE),
});

/** The flags after validation. */
export type Flags = z.infer<typeof flagsSchema>;

/** One process's data plane: what serves requests, from metrics to the listener. */
export interface DataPlane {
  readonly metrics: ProxyMetrics;
  readonly upstreams: Upstreams;
  readonly store: TableStore;
  /** The listener of `--engine`: the native engine or the node:http path. */
  readonly proxy: ProxyServer | NativeProxyServer;
  /** The session store's pins (`--session-store`); each worker of `--workers` has its own client. */
  readonly pins: PinStore | undefined;
  /** Reads `--session-store`'s Secret again (SIGHUP); a bad one is logged and the last good kept. */
  reloadSessionStore(): void;
}

/**
 * Reads `--session-store`'s directory (the operator's mounted Secret).
 *
 * @returns undefined without the flag, or while the Secret has no
 *   `sentinels` yet (the operator publishes them once their pods have IPs).
 * @throws {Error} naming the directory and each bad key.
 */
export function readSessionStoreFlag(dir: string | undefined): SessionStoreConnection | undefined {
  if (dir === undefined) return undefined;
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    return readPublishedSessionStore(dir);
  } catch (err) {
    const e = err as Error;
    throw new Error(`--session-store ${dir}: ${e instanceof z.ZodError ? z.prettifyError(e) : e.message}`);
  }
}

/**
 * Builds the data plane of one process (the only one, or one of `--workers`).
 *
 * @param cookieKeys - the current keys, read per request; the first signs.
 * @param onSwap - after each table swap, before the next request sees it.
 */
export function buildDataPlane(
  flags: Flags,
  log: Logger,
  cookieKeys: () => readonly KeyObject[],
  onSwap: (table: CompiledTable, source: TableSource, metrics: ProxyMetrics) => void,
): DataPlane {
  const metrics = new ProxyMetrics();
  const upstreams = new Upstreams(
    {
      connectTimeoutMs: parseDuration(flags['connect-timeout']),
      readTimeoutMs: parseDuration(flags['read-timeout']),
      connectionsPerEndpoint: flags['connections-per-endpoint'],
      keepAliveTimeoutMs: 4_000,
    },
    metrics,
  );
  // The session store: connected before the first table, which may need it.
  const storeDir = flags['session-store'];
  let storeConn = readSessionStoreFlag(storeDir);
  // Until the Sentinels' IPs are published the proxy serves (store-kept pins
  // by consistent hashing) and connects when the Secret fills in.
  if (storeDir !== undefined && storeConn === undefined)
    log('warn', 'session store not published yet (no sentinels): waiting for its Secret', { dir: storeDir });
  const pins =
    storeDir === undefined
      ? undefined
      : new PinStore({
          connection: storeConn,
          timeoutMs: parseDuration(flags['session-store-timeout']),
          metrics,
          log,
        });
  const reloadSessionStore = (): void => {
    if (storeDir === undefined || pins === undefined) return;
    try {
      const next = readPublishedSessionStore(storeDir);
      // An emptied list (no Sentinel pod with an IP for a moment): the old one may still answer.
      if (next === undefined || isDeepStrictEqual(next, storeConn)) return;
      storeConn = next;
      pins.reconnect(next);
      log('info', 'session store connection reloaded', { sentinels: next.sentinels.length });
    } catch (err) {
      log('error', 'session store Secret rejected; keeping the previous connection', {
        error: (err as Error).message,
      });
    }
  };
  if (storeDir !== undefined) watchFile(join(storeDir, 'sentinels'), reloadSessionStore);
  const store = new TableStore(
    (table, source) => onSwap(table, source, metrics),
    (table) => {
      const missing = sessionStoreProblems(table.source, pins !== undefined);
      if (missing.length > 0) throw new Error(missing.join('; '));
      const prepared = upstreams.prepare(table);
      return {
        commit: () => upstreams.commit(prepared),
        // Pools made for new origins have no connection yet; dropping them frees them.
        abort: () => {
          for (const p of prepared.created.values()) p.destroy().catch(() => {});
        },
      };
    },
  );
  const proxy = new (flags.engine === 'native' ? NativeProxyServer : ProxyServer)({
    store,
    upstreams,
    metrics,
    cookieKeys,
    log,
    pins,
    limits: {
      connectTimeoutMs: parseDuration(flags['connect-timeout']),
      handshakeTimeoutMs: parseDuration(flags['read-timeout']),
      tunnelIdleTimeoutMs: parseDuration(flags['tunnel-timeout']),
      clientHeaderTimeoutMs: parseDuration(flags['client-header-timeout']),
      shutdownIdleGraceMs: parseDuration(flags['shutdown-idle-grace']),
      queueSize: flags['queue-size'],
      queueTimeoutMs: parseDuration(flags['queue-timeout']),
      clientBodyTimeoutMs: parseDuration(flags['client-body-timeout']),
      requestBufferBytes: flags['request-buffer-size'],
      sendTimeoutMs: parseDuration(flags['send-timeout']),
      responseBufferBytes: flags['response-buffer-size'],
    },
  });
  return { metrics, upstreams, store, proxy, pins, reloadSessionStore };
}

/** Logs and counts a swap (one process, or the primary of `--workers`). */
export function reportSwap(
  log: Logger,
  table: CompiledTable,
  source: TableSource,
  metrics: ProxyMetrics,
): void {
  metrics.tableRevision.set({ pool: table.pool }, table.revision);
  metrics.tableSwaps.inc({ source });
  log('info', 'routing table swapped in', {
    pool: table.pool,
    revision: table.revision,
    source,
    endpoints: table.endpoints.length,
  });
}
