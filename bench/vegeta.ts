/**
 * Runs vegeta (built by ensure-vegeta.sh) at a fixed request rate and reads
 * its JSON report: the paced-latency step of `make bench`. wrk cannot pace
 * (it sends the next request when an answer comes, so a slow proxy gets less
 * load); vegeta sends on a clock, whatever the answers do.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChildProcesses, describeExit } from '../tools/child-processes.ts';
import { pinned } from './processes.ts';
import { parseVegetaReport, type VegetaFigures } from './vegeta-report.ts';

const ENSURE_SCRIPT = fileURLToPath(new URL('./ensure-vegeta.sh', import.meta.url));

/** vegeta's workers at most: bounds its goroutines and connections when a target falls behind. */
const MAX_WORKERS = 1024;

/**
 * The vegeta binary's path, built and cached by ensure-vegeta.sh on first use
 * (about 30 s cold; its build log goes to our stderr).
 *
 * @throws {Error} when the script fails (no Go, no module proxy).
 */
export function ensureVegeta(): string {
  const r = spawnSync('bash', [ENSURE_SCRIPT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const path = r.stdout?.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || path === '') throw new Error(`bench/ensure-vegeta.sh failed (exit ${r.status})`);
  return path;
}

/** How to run one paced measurement. */
export interface VegetaOptions {
  readonly bin: string;
  readonly url: string;
  /** Extra request headers, `Name: value` each. */
  readonly headers?: readonly string[];
  /** Requests per second. */
  readonly rate: number;
  readonly durationS: number;
  /** The core to pin vegeta to with taskset; none when undefined. */
  readonly cpu?: number | undefined;
  /** A directory for the targets and results files. */
  readonly dir: string;
  /** Names the files, so runs do not overwrite each other's. */
  readonly name: string;
}

/**
 * One vegeta attack, then its report. Keep-alive connections, a 2 s timeout
 * per request (as wrk's), at most {@link MAX_WORKERS} workers.
 *
 * @throws {Error} when vegeta fails or overruns its duration by far.
 */
export async function runVegeta(children: ChildProcesses, o: VegetaOptions): Promise<VegetaFigures> {
  const targets = join(o.dir, `${o.name}.targets`);
  const results = join(o.dir, `${o.name}.bin`);
  writeFileSync(targets, `GET ${o.url}\n${(o.headers ?? []).map((h) => `${h}\n`).join('')}`);
  const args = [
    'attack',
    '-targets',
    targets,
    '-rate',
    `${o.rate}/1s`,
    '-duration',
    `${o.durationS}s`,
    '-timeout',
    '2s',
    '-max-workers',
    String(MAX_WORKERS),
    // Bodies are not looked at: keeping none spares vegeta's CPU, which shares a core with nginx.
    '-max-body',
    '0',
    '-output',
    results,
  ];
  const child = children.spawn('vegeta', ...pinned(o.cpu, o.bin, args));
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<'overrun'>((resolve) => {
    timer = setTimeout(() => resolve('overrun'), (o.durationS + 20) * 1000);
  });
  const how = await Promise.race([child.exited, overrun]);
  clearTimeout(timer);
  if (how === 'overrun') {
    await children.stop(child, 1_000);
    throw new Error(`vegeta against ${o.url} did not finish within ${o.durationS + 20} s`);
  }
  if (how.code !== 0)
    throw new Error(
      `vegeta against ${o.url} failed (it ${describeExit(how)}):\n  ${child.tail().join('\n  ')}`,
    );
  const report = spawnSync(o.bin, ['report', '-type', 'json', results], { encoding: 'utf8' });
  if (report.status !== 0) throw new Error(`vegeta report failed: ${report.stderr}`);
  return parseVegetaReport(report.stdout);
}
