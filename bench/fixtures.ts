/**
 * Figures for the bench's unit tests: a run shaped like what run-bench.ts
 * writes, with the numbers a test cares about and zeros elsewhere.
 */
import { type BenchResults, RESULTS_SCHEMA_VERSION, type ThroughputRun } from './results.ts';

/** A throughput run of `id` at `requestsPerS`, valid and undisturbed unless overridden. */
export function throughputRun(
  id: string,
  requestsPerS: number,
  over: Partial<ThroughputRun> = {},
): ThroughputRun {
  return {
    id,
    label: id,
    note: '',
    headers: [],
    requestsPerS,
    requests: requestsPerS * 8,
    durationS: 8,
    latencyUs: { min: 50, mean: 900, stdev: 100, max: 9000, p50: 800, p90: 1200, p99: 2500, p999: 5000 },
    errors: { connect: 0, read: 0, write: 0, status: 0, timeout: 0, total: 0 },
    cpuPercent: { proxy: 99, nginx: 30, wrk: 60, other: 2, cores: [100, 95] },
    attempts: 1,
    valid: true,
    disturbed: false,
    ...over,
  };
}

/** A whole latest.json with the given parts; the rest empty. */
export function benchResults(over: Partial<BenchResults> = {}): BenchResults {
  return {
    schemaVersion: RESULTS_SCHEMA_VERSION,
    finishedAt: '2026-11-27T19:00:00.000Z',
    machine: {
      cpus: 2,
      cpuModel: 'Test CPU',
      node: 'v24.21.0',
      nginx: 'nginx version: nginx/1.22.1',
      haproxy: 'HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/',
      wrk: 'wrk 4.1.0',
      vegeta: 'v12.13.0',
    },
    settings: {
      wrk: 'wrk -t1 -c64 -d8s --timeout 2s',
      warmupS: 2,
      pinning: { server: 0, load: 1 },
      nice: null,
      steps: ['throughput', 'paced', 'memory', 'workers'],
      pacedDurationS: 8,
      idleConnections: 10_000,
    },
    floor: 0.5,
    runs: [],
    paced: [],
    memory: [],
    workers: { status: 'skipped', reason: 'test' },
    ratios: [],
    ...over,
  };
}
