/**
 * `make bench-session-store`: what `writeMode: Sync` costs. Session writes
 * (express-session's `store.set`, i.e. connect-redis `SET … EX`, plus
 * `WAIT 1 500` in Sync mode) per second and their p50/p99 latency, Async vs
 * Sync, against a real loopback store (redis-server primary + 2 replicas +
 * 3 redis-sentinel, min-replicas-to-write 1, as the operator provisions).
 *
 * Runs alternate Async, Sync, Async, … so that a noisy neighbour hits both
 * modes alike, after one discarded run per mode; each run is bounded by a
 * write count and a time limit. It
 * prints one line per run, the range of each figure over the runs, and the
 * Sync/Async ratios. Not part of `make test`.
 *
 * Environment (optional): SESSION_BENCH_RUNS (3 per mode),
 * SESSION_BENCH_WRITES (20000 per run), SESSION_BENCH_CONCURRENCY (16
 * writes in flight), SESSION_BENCH_MAX_MS (15000 per run),
 * SESSION_BENCH_WAIT_REPLICAS (1).
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import type { SessionData } from 'express-session';
import { createSessionStore } from 'tether/session-store';
import { ChildProcesses } from '../tools/child-processes.ts';
import { startRedisStore } from '../tools/redis-store.ts';

const RUNS = Number(process.env.SESSION_BENCH_RUNS ?? 3);
const WRITES = Number(process.env.SESSION_BENCH_WRITES ?? 20_000);
const CONCURRENCY = Number(process.env.SESSION_BENCH_CONCURRENCY ?? 16);
const MAX_MS = Number(process.env.SESSION_BENCH_MAX_MS ?? 15_000);
const WAIT_REPLICAS = Number(process.env.SESSION_BENCH_WAIT_REPLICAS ?? 1);

type Mode = 'Async' | 'Sync';

interface RunResult {
  readonly mode: Mode;
  readonly run: number;
  readonly writes: number;
  readonly failed: number;
  readonly ms: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** The `q` quantile (0..1) of sorted values, nearest rank. */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** A session as express-session hands it to the store: a cookie with 30 min left and some data. */
function sessionData(i: number): SessionData {
  return {
    cookie: {
      originalMaxAge: 1_800_000,
      expires: new Date(Date.now() + 1_800_000),
      httpOnly: true,
      path: '/',
    },
    cart: { items: i % 7, updated: i },
  } as unknown as SessionData;
}

async function runOnce(
  store: Awaited<ReturnType<typeof startRedisStore>>,
  mode: Mode,
  run: number,
  writes: number,
): Promise<RunResult> {
  const lib = createSessionStore({
    connection: store.connection(),
    writeMode: mode,
    waitReplicas: WAIT_REPLICAS,
    waitTimeoutMs: 500,
  });
  try {
    await lib.redis.ping();
    const lat = new Float64Array(writes);
    let next = 0;
    let done = 0;
    let failed = 0;
    const t0 = performance.now();
    const deadline = t0 + MAX_MS;
    const worker = async (w: number): Promise<void> => {
      while (next < writes && performance.now() < deadline) {
        const i = next++;
        const start = performance.now();
        try {
          await lib.set(`bench-${mode}-${run}-${w}-${i}`, sessionData(i));
          lat[done++] = performance.now() - start;
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
    const ms = performance.now() - t0;
    const sorted = lat.slice(0, done).sort();
    return {
      mode,
      run,
      writes: done,
      failed,
      ms,
      perSecond: (done / ms) * 1_000,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
    };
  } finally {
    await lib.close();
  }
}

function range(values: readonly number[], digits: number): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo.toFixed(digits) === hi.toFixed(digits)
    ? lo.toFixed(digits)
    : `${lo.toFixed(digits)}–${hi.toFixed(digits)}`;
}

async function main(): Promise<void> {
  const children = new ChildProcesses();
  process.on('exit', () => children.killAllNow());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
  process.stdout.write(
    `session store bench: ${RUNS} runs per mode, ≤ ${WRITES} writes and ≤ ${MAX_MS / 1000} s each, ${CONCURRENCY} in flight, Sync = WAIT ${WAIT_REPLICAS} 500; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  const store = await startRedisStore(children, {
    replicas: 2,
    sentinels: 3,
    minReplicasToWrite: 1,
    password: randomBytes(16).toString('hex'),
    masterName: 'bench-session-store',
  });
  const results: RunResult[] = [];
  try {
    // One discarded run per mode: the first run on an empty store measured up to 5× slower
    // (the keyspace growing and rehashing, JIT warm-up), which would only bias the first mode.
    for (const mode of ['Async', 'Sync'] as const) await runOnce(store, mode, 0, WRITES);
    for (let run = 1; run <= RUNS; run++) {
      for (const mode of ['Async', 'Sync'] as const) {
        const r = await runOnce(store, mode, run, WRITES);
        results.push(r);
        process.stdout.write(
          `  run ${run} ${mode.padEnd(5)}  ${r.writes} writes in ${(r.ms / 1000).toFixed(2)} s: ${Math.round(r.perSecond)} writes/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(2)} ms${r.failed > 0 ? `, ${r.failed} FAILED` : ''}\n`,
        );
      }
    }
  } finally {
    await store.stop();
    await children.stopAll();
  }
  const of = (mode: Mode) => results.filter((r) => r.mode === mode);
  process.stdout.write('\n  mode    writes/s          p50 ms        p99 ms        failed\n');
  for (const mode of ['Async', 'Sync'] as const) {
    const rs = of(mode);
    process.stdout.write(
      `  ${mode.padEnd(6)}  ${range(
        rs.map((r) => r.perSecond),
        0,
      ).padEnd(16)}  ${range(
        rs.map((r) => r.p50Ms),
        2,
      ).padEnd(12)}  ${range(
        rs.map((r) => r.p99Ms),
        2,
      ).padEnd(12)}  ${rs.reduce((s, r) => s + r.failed, 0)}\n`,
    );
  }
  // Ratios within a run pair (Async then Sync, seconds apart), then their range.
  const pairs = of('Async').map((a) => ({ a, s: of('Sync').find((x) => x.run === a.run) as RunResult }));
  process.stdout.write(
    `\n  Sync/Async per run: writes/s ${range(
      pairs.map((p) => p.s.perSecond / p.a.perSecond),
      2,
    )}, p50 ${range(
      pairs.map((p) => p.s.p50Ms / p.a.p50Ms),
      2,
    )}, p99 ${range(
      pairs.map((p) => p.s.p99Ms / p.a.p99Ms),
      2,
    )}; load average now ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  process.stdout.write(`${JSON.stringify({ sessionStoreBench: results })}\n`);
  if (results.some((r) => r.failed > 0)) process.exitCode = 1;
}

await main();
