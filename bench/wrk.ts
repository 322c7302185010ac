/**
 * Runs wrk and reads its figures from the JSON line `wrk-report.lua` prints.
 */
import { fileURLToPath } from 'node:url';
import { type ChildProcesses, describeExit } from '../tools/child-processes.ts';
import { pinned } from './processes.ts';

const REPORT_SCRIPT = fileURLToPath(new URL('./wrk-report.lua', import.meta.url));
const MARKER = 'BENCH_JSON ';

/** What one wrk run measured. Latencies are in microseconds. */
export interface WrkResult {
  requests: number;
  durationS: number;
  requestsPerS: number;
  latencyUs: {
    min: number;
    mean: number;
    stdev: number;
    max: number;
    p50: number;
    p90: number;
    p99: number;
    p999: number;
  };
  errors: { connect: number; read: number; write: number; status: number; timeout: number; total: number };
}

/** How to run wrk. */
export interface WrkOptions {
  url: string;
  threads: number;
  connections: number;
  durationS: number;
  /** Extra request headers, `Name: value` each. */
  headers?: readonly string[];
  /** The core to pin wrk to with taskset; none when undefined. */
  cpu?: number | undefined;
}

/**
 * Runs wrk once against `url` and returns its figures. Throws when wrk
 * fails, prints no report, or overruns its duration by far (a hung target).
 */
export async function runWrk(children: ChildProcesses, o: WrkOptions): Promise<WrkResult> {
  const args = [
    '-t',
    String(o.threads),
    '-c',
    String(o.connections),
    '-d',
    `${o.durationS}s`,
    '--timeout',
    '2s',
    '-s',
    REPORT_SCRIPT,
    ...(o.headers ?? []).flatMap((h) => ['-H', h]),
    o.url,
  ];
  const child = children.spawn('wrk', ...pinned(o.cpu, 'wrk', args));
  let report: string | undefined;
  child.onLine((line) => {
    if (line.startsWith(MARKER)) report = line.slice(MARKER.length);
  });
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<'overrun'>((resolve) => {
    timer = setTimeout(() => resolve('overrun'), (o.durationS + 20) * 1000);
  });
  const how = await Promise.race([child.exited, overrun]);
  clearTimeout(timer);
  if (how === 'overrun') {
    await children.stop(child, 1_000);
    throw new Error(`wrk against ${o.url} did not finish within ${o.durationS + 20} s`);
  }
  if (how.code !== 0 || report === undefined) {
    throw new Error(`wrk against ${o.url} failed (it ${describeExit(how)}):\n  ${child.tail().join('\n  ')}`);
  }
  const raw = JSON.parse(report) as {
    requests: number;
    durationUs: number;
    errors: Omit<WrkResult['errors'], 'total'>;
    latencyUs: WrkResult['latencyUs'];
  };
  const durationS = raw.durationUs / 1e6;
  const e = raw.errors;
  return {
    requests: raw.requests,
    durationS,
    requestsPerS: durationS > 0 ? raw.requests / durationS : 0,
    latencyUs: raw.latencyUs,
    errors: { ...e, total: e.connect + e.read + e.write + e.status + e.timeout },
  };
}
