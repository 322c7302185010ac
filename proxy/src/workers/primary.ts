/**
 * `--workers N`: the primary process. It reads no request and forwards
 * nothing: it forks N workers (node:cluster) that share the listening port
 * (it only accepts each connection and passes the socket on, see
 * Scheduling below), owns everything they must agree on, and supervises them.
 *
 * - **One table for all.** The pool file and the admin API reach the
 *   primary only. It validates and decides a table (its own
 *   {@link TableStore}), then swaps it in two phases: every serving worker
 *   stages it (`prepare`: decide, compile, build pools) and only when all of
 *   them did does each `commit`; if one refuses, exits or does not answer
 *   within `--worker-sync-timeout`, every one `abort`s and the PUT is
 *   refused (400 when a worker found the table unusable, 503 otherwise), so
 *   no two workers ever serve different revisions after an offer settles.
 *   Offers and worker boots go through one {@link SerialQueue}.
 * - **One set of cookie keys.** The primary reads the keys file (or makes
 *   the random key) and sends the keys to every worker, at boot and on
 *   every reload, so a cookie signed by one worker verifies in all.
 * - **Supervision.** A worker that exits is re-forked into its slot after
 *   a {@link RestartBackoff} delay; it boots with the current keys and table
 *   before it listens, and counts as serving only then.
 * - **One admin API.** `/readyz` asks every worker for its revision
 *   ({@link decideAgreement}); `/metrics` asks each for its registry and
 *   sums them (prom-client's `AggregatorRegistry.aggregate`).
 * - **Shutdown.** SIGTERM/SIGINT: `/readyz` turns 503, each worker drains
 *   as a single process would, and the primary exits once all have exited
 *   (a worker that crashes meanwhile just counts as exited; one that hangs
 *   past `--shutdown-timeout` + 5 s is killed).
 *
 * Scheduling: node:cluster's round-robin (SCHED_RR, Node's default on
 * Linux): the primary accepts each connection and hands the socket to the
 * next free worker, so connections spread evenly (64 keep-alive connections
 * over 2 workers: 33/31, 31/33, 27/37), at the cost of one IPC message per
 * new connection in the primary and none per request. With SCHED_NONE the
 * workers accept from one shared socket themselves and Linux wakes them
 * unevenly (24/40, 35/29, 46/18), and a keep-alive connection stays where it
 * landed. SO_REUSEPORT (a socket per worker) was not taken: a worker's own
 * accept queue is reset when it exits or drains, which breaks the clean
 * drain of SIGTERM. `NODE_CLUSTER_SCHED_POLICY` (`rr`, `none`) overrides it.
 */
import cluster, { type Worker } from 'node:cluster';
import type { KeyObject } from 'node:crypto';
import { resolve } from 'node:path';
import { AggregatorRegistry, Counter, Gauge } from 'prom-client';
import { createAdminServer } from '../admin-server.ts';
import { parseDuration } from '../api/duration.ts';
import type { RoutingTable } from '../api/routing-table.ts';
import type { Flags } from '../data-plane.ts';
import { watchFile } from '../file-watch.ts';
import type { Logger } from '../json-log.ts';
import { ProxyMetrics } from '../metrics.ts';
import { PoolFileSource, type TableSink } from '../pool-file.ts';
import type { CompiledTable } from '../routing/compiled-table.ts';
import { type OfferResult, type TableSource, TableStore } from '../table-store.ts';
import { decideAgreement, type WorkerReport } from './agreement.ts';
import {
  isWorkerMessage,
  type MetricsJson,
  type PrimaryRequest,
  type WireKeys,
  type WorkerMessage,
  type WorkerStatus,
} from './messages.ts';
import { RestartBackoff } from './restart-backoff.ts';
import { SerialQueue } from './serial-queue.ts';
import { decideSwap, type PrepareAnswer } from './two-phase.ts';
import { SLOT_ENV } from './worker.ts';

/**
 * How long `/readyz` and `/v1/workers` wait for a worker's answer, ms: under
 * kubelet's default probe timeout (1 s), so a hung worker makes the probe
 * answer 503 with its reason rather than time out.
 */
const STATUS_TIMEOUT_MS = 800;
/** How long `/metrics` waits for a worker's registry, ms (a worker that does not answer is left out). */
const METRICS_TIMEOUT_MS = 2_000;
/** A pool file the workers could not all take (one did not answer) is offered again after this, ms. */
const FILE_RETRY_MS = 1_000;
/** What a worker gets beyond `--shutdown-timeout` to exit (lingering closes, pools), ms. */
const SHUTDOWN_SLACK_MS = 5_000;

/** What {@link runPrimary} needs from the CLI. */
export interface PrimaryContext {
  readonly flags: Flags;
  readonly log: Logger;
  /** The keys read at start (or the random key): every worker gets these. */
  readonly cookieKeys: readonly KeyObject[];
  /** Re-reads the keys file; undefined without `--cookie-keys-file`. */
  readonly loadKeys: (() => Promise<KeyObject[]>) | undefined;
  readonly readToken: () => string | undefined;
  /** Exits 2 with a message (bad first config, cannot listen). */
  readonly die: (message: string) => never;
  /** Logs and counts a swap, as a single process does. */
  readonly reportSwap: (table: CompiledTable, source: TableSource, metrics: ProxyMetrics) => void;
}

/** Cookie keys in their wire form. */
export function encodeKeys(keys: readonly KeyObject[]): WireKeys {
  return keys.map((k) => k.export().toString('base64'));
}

type Reply = Extract<WorkerMessage, { re: number }>;

/** One worker slot: the worker serving it now, if any, and its restart history. */
interface Slot {
  readonly slot: number;
  worker: Worker | undefined;
  state: 'starting' | 'serving' | 'down';
  /** The worker sent `hello`: it listens for our messages. */
  hello: boolean;
  forkedAt: number;
  readonly backoff: RestartBackoff;
  restartTimer: NodeJS.Timeout | undefined;
}

/** The workers, what they share, and the two-phase swap. */
export class WorkerSet implements TableSink {
  readonly store: TableStore;
  private readonly slots: Slot[];
  private readonly pending = new Map<
    number,
    { resolve: (r: Reply) => void; timer: NodeJS.Timeout; worker: Worker }
  >();
  private readonly queue = new SerialQueue();
  private nextId = 0;
  private nextTxn = 0;
  private keys: WireKeys;
  /** The data plane's port once the first worker bound it (for the log when `--listen …:0`). */
  private port: number | undefined;
  private source: TableSource = 'file';
  private closing = false;
  private started = false;
  private startup: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private readonly exitWaiters = new Set<() => void>();
  /** Workers that did not exit 0 during shutdown. */
  private uncleanExits = 0;
  private readonly syncTimeoutMs: number;
  private readonly restarts: Counter;
  private readonly serving: Gauge;

  private readonly ctx: PrimaryContext;
  readonly metrics: ProxyMetrics;

  constructor(ctx: PrimaryContext, metrics: ProxyMetrics) {
    this.ctx = ctx;
    this.metrics = metrics;
    this.syncTimeoutMs = parseDuration(ctx.flags['worker-sync-timeout']);
    this.keys = encodeKeys(ctx.cookieKeys);
    let pool: string | undefined;
    this.store = new TableStore((table, source) => {
      // A single process drops a renamed pool's series with its upstreams; the primary has none.
      if (pool !== undefined && pool !== table.pool) metrics.tableRevision.remove({ pool });
      pool = table.pool;
      ctx.reportSwap(table, source, metrics);
    });
    this.slots = Array.from({ length: ctx.flags.workers }, (_, slot) => ({
      slot,
      worker: undefined,
      state: 'down' as const,
      hello: false,
      forkedAt: 0,
      backoff: new RestartBackoff(),
      restartTimer: undefined,
    }));
    this.restarts = new Counter({
      name: 'tether_proxy_worker_restarts_total',
      help: 'Workers re-forked after they exited (--workers).',
      registers: [metrics.registry],
    });
    this.serving = new Gauge({
      name: 'tether_proxy_workers',
      help: 'Workers serving (booted with the current table and listening), of --workers N.',
      registers: [metrics.registry],
      collect: () => this.serving.set(this.slots.filter((s) => s.state === 'serving').length),
    });
  }

  get current(): CompiledTable | undefined {
    return this.store.current;
  }

  /** The port the workers listen on, once known. */
  get listenPort(): number | undefined {
    return this.port;
  }

  /**
   * Forks every worker and resolves once all serve.
   * @throws {Error} when a worker fails to boot or exits first (the caller stops the rest).
   */
  start(): Promise<void> {
    return new Promise((res, rej) => {
      this.startup = { resolve: res, reject: rej };
      for (const s of this.slots) this.fork(s);
    });
  }

  private fork(s: Slot): void {
    s.restartTimer = undefined;
    const w = cluster.fork({ [SLOT_ENV]: String(s.slot) });
    s.worker = w;
    s.state = 'starting';
    s.hello = false;
    s.forkedAt = Date.now();
    w.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if ('type' in m) {
        s.hello = true;
        this.boot(s, w);
        return;
      }
      const p = this.pending.get(m.re);
      if (p === undefined) return; // answered after its timeout
      this.pending.delete(m.re);
      clearTimeout(p.timer);
      p.resolve(m as Reply);
    });
    // IPC errors (a channel closing under a send) end in 'exit' too.
    w.on('error', (err) => this.ctx.log('warn', 'worker IPC error', { worker: s.slot, error: err.message }));
    w.on('exit', (code, signal) => this.onExit(s, w, code, signal));
  }

  /** A new worker gets the keys and the current table, listens, and only then serves. */
  private boot(s: Slot, w: Worker): void {
    void this.queue
      .run(async () => {
        if (s.worker !== w || this.closing) return;
        const table = this.store.current?.source;
        const r = await this.request(
          w,
          s.slot,
          // The flag's port, 0 included: node:cluster shares one handle per listen address as
          // given, so every worker asking for port 0 gets the port the first one bound.
          { type: 'boot', keys: this.keys, table, source: this.source, port: this.ctx.flags.listen.port },
          this.syncTimeoutMs,
        );
        if (s.worker !== w) return;
        if (!r.ok) throw new Error(r.message);
        this.port ??= r.port;
        s.state = 'serving';
        this.ctx.log(this.started ? 'info' : 'debug', 'worker serving', {
          worker: s.slot,
          pid: w.process.pid,
          revision: r.revision,
        });
        if (!this.started && this.slots.every((x) => x.state === 'serving')) {
          this.started = true;
          this.startup?.resolve();
        }
      })
      .catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        this.ctx.log('error', 'worker failed to start', {
          worker: s.slot,
          pid: w.process.pid,
          error: message,
        });
        if (!this.started) this.startup?.reject(new Error(`worker ${s.slot}: ${message}`));
        // Its exit is handled (and backed off) like any other.
        w.process.kill('SIGKILL');
      });
  }

  private onExit(s: Slot, w: Worker, code: number | null, signal: string | null): void {
    for (const [id, p] of this.pending) {
      if (p.worker !== w) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.resolve({
        re: id,
        ok: false,
        reason: 'failed',
        message: `worker ${s.slot} (pid ${w.process.pid}) exited`,
      });
    }
    if (s.worker !== w) return;
    s.worker = undefined;
    s.state = 'down';
    s.hello = false;
    const fields = { worker: s.slot, pid: w.process.pid, code, signal };
    if (this.closing) {
      if (code !== 0) {
        this.uncleanExits++;
        this.ctx.log('error', 'worker ended badly during shutdown', fields);
      }
      for (const wake of this.exitWaiters) wake();
      return;
    }
    if (!this.started) {
      this.startup?.reject(
        new Error(`worker ${s.slot} exited (code ${code}, signal ${signal}) before it served`),
      );
      return;
    }
    const delayMs = s.backoff.onExit(Date.now() - s.forkedAt);
    this.restarts.inc();
    this.ctx.log(code === 0 ? 'warn' : 'error', 'worker exited; re-forking it', {
      ...fields,
      delayMs,
      quickExits: s.backoff.consecutiveQuickExits,
    });
    s.restartTimer = setTimeout(() => {
      if (!this.closing) this.fork(s);
    }, delayMs);
  }

  /** Sends one request; never rejects: a timeout or an exit comes back as `{ ok: false, reason: 'failed' }`. */
  private request(
    w: Worker,
    slot: number,
    msg: DistributiveOmit<PrimaryRequest, 'id'>,
    timeoutMs: number,
  ): Promise<Reply> {
    const id = ++this.nextId;
    return new Promise((res) => {
      const fail = (message: string): void => {
        const p = this.pending.get(id);
        if (p === undefined) return;
        this.pending.delete(id);
        clearTimeout(p.timer);
        res({ re: id, ok: false, reason: 'failed', message });
      };
      const timer = setTimeout(
        () => fail(`worker ${slot} (pid ${w.process.pid}) did not answer ${msg.type} within ${timeoutMs} ms`),
        timeoutMs,
      );
      this.pending.set(id, { resolve: res, timer, worker: w });
      if (!w.isConnected()) return void fail(`worker ${slot} is not connected`);
      w.send({ ...msg, id }, undefined, (err: Error | null) => {
        if (err) fail(`worker ${slot}: ${err.message}`);
      });
    });
  }

  /**
   * Offers a validated table to every worker, all or nothing (the module
   * comment). Resolves once every serving worker serves it, or none does.
   * With no worker serving (all re-forking) the primary's record changes
   * alone, and each worker boots with it.
   */
  offer(table: RoutingTable, source: TableSource): Promise<OfferResult> {
    return this.queue.run(async () => {
      if (this.closing) return { accepted: false, reason: 'unavailable', message: 'shutting down' };
      const staged = this.store.stage(table, source);
      if (!staged.accepted || !staged.changed) return staged;
      // The workers as they are now: one re-forked into a slot meanwhile boots after this offer.
      const targets = this.slots.flatMap((s) =>
        s.state === 'serving' && s.worker !== undefined ? [{ slot: s.slot, w: s.worker }] : [],
      );
      const txn = ++this.nextTxn;
      const answers = await Promise.all(
        targets.map(async ({ slot, w }): Promise<PrepareAnswer> => {
          const r = await this.request(w, slot, { type: 'prepare', txn, table, source }, this.syncTimeoutMs);
          return r.ok ? { slot, ok: true } : { slot, ok: false, reason: r.reason, message: r.message };
        }),
      );
      const decision = decideSwap(answers);
      if (!decision.commit) {
        await Promise.all(
          targets.map(({ slot, w }) =>
            w.isConnected() ? this.request(w, slot, { type: 'abort', txn }, this.syncTimeoutMs) : undefined,
          ),
        );
        staged.abort();
        this.ctx.log('error', 'a worker did not take the routing table; no worker serves it', {
          pool: table.pool,
          revision: table.revision,
          source,
          error: decision.why,
        });
        return {
          accepted: false,
          reason: decision.reason,
          message: `not every worker could take revision ${table.revision}, so none serves it (${decision.why})`,
        };
      }
      const committed = await Promise.all(
        targets.map(async ({ slot, w }) => ({
          slot,
          w,
          r: await this.request(w, slot, { type: 'commit', txn }, this.syncTimeoutMs),
        })),
      );
      staged.commit();
      this.source = source;
      for (const { slot, w, r } of committed) {
        if (r.ok || w.isDead()) continue;
        // It staged the table but cannot say it serves it: a replacement boots with this table.
        this.ctx.log('error', 'worker did not confirm the swap; replacing it', {
          worker: slot,
          error: r.message,
        });
        w.process.kill('SIGKILL');
      }
      return { accepted: true, changed: true, table: staged.table };
    });
  }

  /** Replaces the keys in every worker (a worker not yet booted gets them with its boot). */
  async setKeys(keys: readonly KeyObject[]): Promise<void> {
    this.keys = encodeKeys(keys);
    const live = this.slots.flatMap((s) =>
      s.hello && s.worker !== undefined ? [{ slot: s.slot, w: s.worker }] : [],
    );
    const replies = await Promise.all(
      live.map(async ({ slot, w }) => ({
        slot,
        w,
        r: await this.request(w, slot, { type: 'keys', keys: this.keys }, this.syncTimeoutMs),
      })),
    );
    for (const { slot, w, r } of replies) {
      if (r.ok || w.isDead()) continue;
      // A worker left with old keys would reject cookies the others sign: its replacement boots with the new ones.
      this.ctx.log('error', 'worker did not take the cookie keys; replacing it', {
        worker: slot,
        error: r.message,
      });
      w.process.kill('SIGKILL');
    }
  }

  /** Each slot with its worker's own report, asked now. */
  async reports(): Promise<(WorkerReport & { pid: number | undefined; status: WorkerStatus | undefined })[]> {
    return Promise.all(
      this.slots.map(async (s) => {
        const w = s.worker;
        let status: WorkerStatus | undefined;
        if (w !== undefined && s.state === 'serving') {
          const r = await this.request(w, s.slot, { type: 'status' }, STATUS_TIMEOUT_MS);
          if (r.ok) status = r.status;
        }
        return {
          slot: s.slot,
          state: s.state,
          pid: w?.process.pid,
          revision: status?.revision,
          answered: status !== undefined,
          status,
        };
      }),
    );
  }

  /** `/readyz`: the revision every worker serves, or why not. */
  async readiness(): Promise<{ ready: boolean; text: string }> {
    if (this.closing) return { ready: false, text: 'not ready: shutting down\n' };
    const a = decideAgreement(this.slots.length, this.store.current?.revision, await this.reports());
    return a.ready
      ? { ready: true, text: `ready: revision ${a.revision} on ${a.workers} workers\n` }
      : { ready: false, text: `not ready: ${a.reason}\n` };
  }

  /** `/metrics`: the primary's registry and every serving worker's, aggregated. */
  async metricsText(): Promise<string> {
    const own = await this.metrics.registry.getMetricsAsJSON();
    const theirs = await Promise.all(
      this.slots.map(async (s) => {
        if (s.worker === undefined || s.state !== 'serving') return undefined;
        const r = await this.request(s.worker, s.slot, { type: 'metrics' }, METRICS_TIMEOUT_MS);
        return r.ok ? r.metrics : undefined;
      }),
    );
    const all = [own, ...theirs.filter((m): m is MetricsJson => m !== undefined)];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  /**
   * Drains every worker (SIGTERM: each runs the single process's graceful
   * shutdown) and resolves once all exited.
   * @returns whether every worker exited 0 within `timeoutMs` + 5 s (later ones are killed).
   */
  async shutdown(timeoutMs: number): Promise<boolean> {
    this.closing = true;
    for (const s of this.slots) {
      clearTimeout(s.restartTimer);
      s.restartTimer = undefined;
      s.worker?.process.kill('SIGTERM');
    }
    const allExited = (): boolean => this.slots.every((s) => s.worker === undefined);
    const waitAll = (ms: number): Promise<boolean> =>
      new Promise((res) => {
        if (allExited()) return res(true);
        const timer = setTimeout(() => {
          this.exitWaiters.delete(check);
          res(false);
        }, ms);
        const check = (): void => {
          if (!allExited()) return;
          clearTimeout(timer);
          this.exitWaiters.delete(check);
          res(true);
        };
        this.exitWaiters.add(check);
      });
    if (!(await waitAll(timeoutMs + SHUTDOWN_SLACK_MS))) {
      for (const s of this.slots) {
        if (s.worker === undefined) continue;
        this.ctx.log('error', 'worker still running after the shutdown timeout; killing it', {
          worker: s.slot,
          pid: s.worker.process.pid,
        });
        s.worker.process.kill('SIGKILL');
      }
      await waitAll(5_000);
      return false;
    }
    return this.uncleanExits === 0;
  }

  /** Kills every worker at once (a failed start). */
  killAll(): void {
    this.closing = true;
    for (const s of this.slots) s.worker?.process.kill('SIGKILL');
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Runs the primary of `--workers N` (N ≥ 2) until SIGTERM/SIGINT; exits the process. */
export async function runPrimary(ctx: PrimaryContext): Promise<void> {
  const { flags, log } = ctx;
  if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_RR;
  const metrics = new ProxyMetrics();
  const workers = new WorkerSet(ctx, metrics);
  let shuttingDown = false;

  const poolFile =
    flags.config === undefined ? undefined : new PoolFileSource(resolve(flags.config), workers);
  const reloadConfig = async (): Promise<void> => {
    const r = await poolFile?.reload();
    if (r?.outcome !== 'rejected') return;
    metrics.tableRejections.inc({
      source: 'file',
      reason: r.error.code === 'TETHER_WORKERS_UNAVAILABLE' ? 'unavailable' : 'invalid',
    });
    // Nothing was wrong with the file: offer it again soon (the operator's PUTs retry the same way).
    if (r.error.code === 'TETHER_WORKERS_UNAVAILABLE' && !shuttingDown) {
      poolFile?.forget();
      setTimeout(() => void reloadConfig(), FILE_RETRY_MS).unref();
    }
    log('error', 'pool file rejected; the last good table keeps serving', {
      file: poolFile?.path,
      revision: workers.current?.revision,
      error: r.error.message,
    });
  };
  if (poolFile !== undefined) {
    // No worker yet: this only sets the table they boot with.
    const first = await poolFile.reload();
    if (first.outcome === 'rejected') ctx.die(`--config ${poolFile.path}: ${first.error.message}`);
  }

  const admin = createAdminServer({
    store: workers.store,
    metrics,
    token: ctx.readToken,
    ready: () => false,
    readiness: () =>
      shuttingDown
        ? Promise.resolve({ ready: false, text: 'not ready: shutting down\n' })
        : workers.readiness(),
    offer: (table, source) => workers.offer(table, source),
    metricsText: () => workers.metricsText(),
    workers: async () => ({
      revision: workers.current?.revision,
      workers: await workers.reports(),
    }),
    log,
  });

  try {
    await workers.start();
  } catch (err) {
    workers.killAll();
    ctx.die(`workers did not start: ${(err as Error).message}`);
  }
  let adminPort: number;
  try {
    adminPort = await new Promise<number>((res, rej) => {
      admin.once('error', rej);
      admin.listen(flags['admin-listen'].port, flags['admin-listen'].host, () => {
        const a = admin.address();
        res(typeof a === 'object' && a !== null ? a.port : flags['admin-listen'].port);
      });
    });
  } catch (err) {
    workers.killAll();
    ctx.die(`cannot listen: ${(err as Error).message}`);
  }
  log('info', 'tether-proxy listening', {
    listen: `${flags.listen.host}:${workers.listenPort ?? flags.listen.port}`,
    admin: `${flags['admin-listen'].host}:${adminPort}`,
    workers: flags.workers,
    scheduling: cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none',
    pool: workers.current?.pool,
    revision: workers.current?.revision,
    engine: flags.engine,
    node: process.version,
  });

  if (poolFile !== undefined) watchFile(poolFile.path, () => void reloadConfig());
  const reloadKeys = async (): Promise<void> => {
    if (ctx.loadKeys === undefined) return;
    let keys: KeyObject[];
    try {
      keys = await ctx.loadKeys();
    } catch (err) {
      log('error', 'cookie keys file rejected; keeping the previous keys', { error: (err as Error).message });
      return;
    }
    await workers.setKeys(keys);
    log('info', 'cookie keys reloaded', { keys: keys.length, workers: flags.workers });
  };
  if (flags['cookie-keys-file'] !== undefined) watchFile(flags['cookie-keys-file'], () => void reloadKeys());
  process.on('SIGHUP', () => {
    poolFile?.forget();
    void reloadConfig();
    void reloadKeys();
  });

  const stop = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeoutMs = parseDuration(flags['shutdown-timeout']);
    log('info', 'shutting down: every worker finishes its requests in flight', {
      signal,
      timeoutMs,
      workers: flags.workers,
    });
    const clean = await workers.shutdown(timeoutMs);
    admin.closeAllConnections();
    admin.close();
    log(clean ? 'info' : 'error', clean ? 'stopped' : 'stopped; a worker did not end cleanly');
    process.exit(clean ? 0 : 1);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
