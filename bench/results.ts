/**
 * The shape of `bench/results/latest.json`: what `make bench` measured in one
 * run. The zod schema is the single source of truth; the types are inferred
 * from it. `run-bench.ts` writes the file, `render-readme.ts` reads it back
 * (zod at that edge: the file may come from an older bench).
 *
 * Units are in the field names: `Us` microseconds, `Bytes` bytes, `PerS` per
 * second, `Percent` % of one core.
 */
import { z } from 'zod';

/** The layout version of latest.json; bumped when a field changes meaning. */
export const RESULTS_SCHEMA_VERSION = 2;

const latencyUsSchema = z.object({
  min: z.number(),
  mean: z.number(),
  stdev: z.number(),
  max: z.number(),
  p50: z.number(),
  p90: z.number(),
  p99: z.number(),
  p999: z.number(),
});

/** One wrk measurement of one target (saturated: wrk sends as fast as answers come). */
export const throughputRunSchema = z.object({
  /** `tether-new`, `haproxy-pinned`, `fastify-new`, … (run-bench.ts names them). */
  id: z.string(),
  label: z.string(),
  note: z.string(),
  /** Extra request headers wrk sent, cookie values elided. */
  headers: z.array(z.string()),
  requestsPerS: z.number(),
  requests: z.number(),
  durationS: z.number(),
  latencyUs: latencyUsSchema,
  errors: z.object({
    connect: z.number(),
    read: z.number(),
    write: z.number(),
    status: z.number(),
    timeout: z.number(),
    total: z.number(),
  }),
  cpuPercent: z.object({
    proxy: z.number().nullable(),
    nginx: z.number().nullable(),
    wrk: z.number().nullable(),
    other: z.number().nullable(),
    cores: z.array(z.number()),
  }),
  attempts: z.number(),
  /** Few enough errors (≤ 1 %) for the figures to count. */
  valid: z.boolean(),
  /** Processes the bench did not start used more than 15 % of a core meanwhile. */
  disturbed: z.boolean(),
});
export type ThroughputRun = z.infer<typeof throughputRunSchema>;

/** One vegeta measurement at a fixed request rate (open loop: the rate does not wait for answers). */
export const pacedRunSchema = z.object({
  id: z.string(),
  label: z.string(),
  /** The rate asked for, requests/s. */
  rate: z.number(),
  /** The rate vegeta managed to send, requests/s; below `rate` when it fell behind. */
  achievedRate: z.number(),
  requests: z.number(),
  /** Share of answers with a 2xx/3xx status, 0..1. */
  success: z.number(),
  latencyUs: z.object({
    mean: z.number(),
    p50: z.number(),
    p90: z.number(),
    p99: z.number(),
    max: z.number(),
  }),
  /** vegeta sent less than 95 % of `rate`: the target (or vegeta) could not keep the pace. */
  behind: z.boolean(),
  disturbed: z.boolean(),
});
export type PacedRun = z.infer<typeof pacedRunSchema>;

/** The resident memory of one proxy holding many idle keep-alive client connections. */
export const memoryRunSchema = z.object({
  id: z.string(),
  label: z.string(),
  /** Connections asked for, those that got their answer, and those still open when RSS was read. */
  connections: z.object({ wanted: z.number(), answered: z.number(), openAtSample: z.number() }),
  /** VmRSS right after start, before any traffic: what the process costs before it serves. */
  rssStartBytes: z.number().nullable(),
  /** VmRSS before the connections were opened, after a short wrk warm-up. */
  rssBeforeBytes: z.number(),
  /** VmRSS with the connections open and idle. */
  rssBytes: z.number(),
  /** (rssBytes − rssBeforeBytes) / openAtSample. */
  perConnectionBytes: z.number().nullable(),
});
export type MemoryRun = z.infer<typeof memoryRunSchema>;

/** `tether-proxy --workers N` throughput, or why it was not measured. */
export const workersResultSchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('measured'),
    /** How it was run: the cores the proxy was pinned to, wrk unpinned. */
    note: z.string(),
    runs: z.array(z.object({ workers: z.number(), requestsPerS: z.number(), valid: z.boolean() })),
    /** requests/s with the most workers over requests/s with one. */
    scaling: z.number().nullable(),
    /** The most workers measured (the N of the 0.8 × N goal). */
    maxWorkers: z.number(),
  }),
  z.object({ status: z.literal('skipped'), reason: z.string() }),
]);
export type WorkersResult = z.infer<typeof workersResultSchema>;

/** A comparison the bench prints; `goal`, when set, is what issue 12 asks of it. */
export const ratioSchema = z.object({
  name: z.string(),
  value: z.number().nullable(),
  goal: z.object({ op: z.enum(['>=', '<=', '<']), value: z.number() }).optional(),
  /** Whether the goal was met; absent without a goal, false without a value. */
  met: z.boolean().optional(),
  /** Other processes disturbed a run it is computed from (see ThroughputRun.disturbed): read it with care. */
  disturbed: z.boolean().optional(),
  /** Set on the ratios BENCH_ENFORCE_FLOOR=1 holds to the floor (Tether/HAProxy). */
  floor: z.number().optional(),
  floorMet: z.boolean().optional(),
});
export type Ratio = z.infer<typeof ratioSchema>;

export const benchResultsSchema = z.object({
  schemaVersion: z.literal(RESULTS_SCHEMA_VERSION),
  finishedAt: z.string(),
  machine: z.object({
    cpus: z.number(),
    cpuModel: z.string(),
    node: z.string(),
    nginx: z.string(),
    haproxy: z.string(),
    wrk: z.string(),
    vegeta: z.string().nullable(),
  }),
  settings: z.object({
    wrk: z.string(),
    warmupS: z.number(),
    pinning: z.object({ server: z.number(), load: z.number() }).nullable(),
    /** BENCH_NICE: the niceness of the processes the bench started; null: inherited. */
    nice: z.number().nullable(),
    /** The steps run (BENCH_ONLY). */
    steps: z.array(z.string()),
    pacedDurationS: z.number(),
    idleConnections: z.number(),
  }),
  floor: z.number(),
  runs: z.array(throughputRunSchema),
  paced: z.array(pacedRunSchema),
  memory: z.array(memoryRunSchema),
  workers: workersResultSchema,
  ratios: z.array(ratioSchema),
});
export type BenchResults = z.infer<typeof benchResultsSchema>;

/** The steps of `make bench` (BENCH_ONLY picks some; all by default). */
export const STEPS = ['throughput', 'paced', 'memory', 'workers'] as const;
export type Step = (typeof STEPS)[number];

/**
 * The steps BENCH_ONLY names (`throughput,memory`), in their run order;
 * all when empty or unset.
 *
 * @throws {Error} on a name that is no step.
 */
export function parseSteps(text: string | undefined): Step[] {
  if (text === undefined || text.trim() === '') return [...STEPS];
  const asked = text.split(',').map((s) => s.trim());
  for (const s of asked)
    if (!(STEPS as readonly string[]).includes(s))
      throw new Error(`BENCH_ONLY: unknown step ${JSON.stringify(s)} (steps: ${STEPS.join(', ')})`);
  return STEPS.filter((s) => asked.includes(s));
}

/** A Node peer: a forwarder in bench/peers/ doing the route-cookie job. */
export interface PeerTarget {
  /** Prefix of its run ids (`fastify` → `fastify-new`, `fastify-pinned`). */
  readonly id: string;
  readonly label: string;
  /** Its script, relative to the repository. */
  readonly script: string;
}

/** The Node peers issue 12 compares Tether with, in the order they run. */
export const PEERS: readonly PeerTarget[] = [
  { id: 'fastify', label: 'fastify 5 + @fastify/reply-from 12', script: 'bench/peers/fastify-peer.ts' },
  {
    id: 'http-proxy-3',
    label: 'http-proxy-3 2.0 + keep-alive agent',
    script: 'bench/peers/http-proxy-3-peer.ts',
  },
  { id: 'http-proxy', label: 'http-proxy 1.18 + keep-alive agent', script: 'bench/peers/http-proxy-peer.ts' },
];
