/**
 * `make bench`: Tether's proxy against HAProxy and against no proxy at all,
 * in one run, on one machine, under the same load.
 *
 * Three `return 200` backends (one nginx process) keep the endpoints cheap,
 * so what differs between targets is the proxy in the middle. Each proxy is
 * pinned to one core (one Node process against one HAProxy thread) and wrk
 * runs on the other, as in issue 2 §6. Figures go to stdout as a table and
 * to `bench/results/latest.json`.
 *
 * Environment (all optional):
 *   BENCH_DURATION (8s), BENCH_WARMUP (2s; 0 for none), BENCH_CONNECTIONS (64),
 *   BENCH_THREADS (1): wrk's settings;
 *   BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1): the cores to pin to;
 *   BENCH_RETRIES (1): measure a target again when other processes on the
 *     machine disturbed the run (the least disturbed run is kept);
 *   BENCH_TETHER_ENTRY: another tether-proxy entry script, to compare a build;
 *   BENCH_CPU_PROF=1: write a V8 CPU profile of the proxy to bench/results/;
 *   BENCH_ENFORCE_FLOOR=1: exit 1 when Tether/HAProxy is below the 0.3 floor.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Child, ChildProcesses, parseJsonLine } from '../tools/child-processes.ts';
import { freePort } from '../tools/free-port.ts';
import { httpGet, setCookieValue } from '../tools/http-get.ts';
import { startTetherProxy } from '../tools/tether-proxy-process.ts';
import { type BenchBackend, haproxyConfig, nginxConfig, poolYaml } from './configs.ts';
import {
  cpuSeconds,
  firstLineOf,
  haveCommand,
  pinned,
  pinPrefix,
  reapedChildrenCpuSeconds,
  TICKS_PER_S,
  waitFor,
} from './processes.ts';
import { runWrk, type WrkResult } from './wrk.ts';

/** Tether/HAProxy throughput: the floor issue 2 sets, and the aim. */
const FLOOR = 0.3;
const AIM = 0.5;
/** More errors than this share of requests makes a run's figures worthless. */
const MAX_ERROR_SHARE = 0.01;
/** Limit on one check request (is a target up, does it pin), ms. */
const CHECK_TIMEOUT_MS = 2_000;
/** CPU of processes the bench did not start, % of a core, above which a run counts as disturbed. */
const NOISY_OTHER_PCT = 15;
/** How long to wait for a quiet moment before each measurement, at most. */
const QUIET_WAIT_MS = 3_000;

const REPO = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = join(REPO, 'bench', 'results');

interface Settings {
  durationS: number;
  warmupS: number;
  connections: number;
  threads: number;
  /** Cores for the server under test and for the load (wrk, and nginx behind a proxy); undefined: no pinning. */
  pin: { server: number; load: number } | undefined;
  /** The proxy's entry script: the repo's, unless BENCH_TETHER_ENTRY names another build to compare. */
  tetherEntry: string;
  /** Extra measurements of a target when other processes disturbed one. */
  retries: number;
  cpuProfile: boolean;
  enforceFloor: boolean;
}

/** One measured target. */
interface RunRecord {
  id: string;
  label: string;
  note: string;
  url: string;
  headers: string[];
  result: WrkResult;
  /** CPU use during the measured part. */
  cpu: CpuWindow;
  errorShare: number;
  ok: boolean;
  /** Measurements taken; the least disturbed one is kept. */
  attempts: number;
}

/** CPU use over a time window, % of one core each. */
interface CpuWindow {
  proxy: number | undefined;
  nginx: number | undefined;
  wrk: number | undefined;
  /** Processes the bench did not start. */
  other: number | undefined;
  /** Busy share of each core, interrupts included. */
  cores: number[];
}

function isDisturbed(r: RunRecord): boolean {
  return (r.cpu.other ?? 0) > NOISY_OTHER_PCT;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function checkNode(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (!(major >= 24))
    fail(`needs Node.js 24 or newer, this is ${process.version} (run it with node_modules/.bin/node)`);
}

/** Seconds from `8`, `8s` or `1m`. */
function seconds(name: string, fallback: string, min: number): number {
  const text = process.env[name] || fallback;
  const m = /^(\d+)(s|m)?$/.exec(text.trim());
  if (m === null || Number(m[1]) < min) fail(`${name}=${text}: expected a duration like 8s or 1m`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

function integer(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) fail(`${name}=${text}: expected an integer ${min}..${max}`);
  return n;
}

function readSettings(): Settings {
  const threads = integer('BENCH_THREADS', 1, 1, 64);
  const connections = integer('BENCH_CONNECTIONS', 64, threads, 10_000);
  const cpus = availableParallelism();
  const server = integer('BENCH_PROXY_CPU', 0, 0, 1023);
  const load = integer('BENCH_LOAD_CPU', 1, 0, 1023);
  let pin: Settings['pin'];
  if (cpus < 2) process.stderr.write('bench: one CPU only: nothing pinned, figures are not comparable\n');
  else if (!haveCommand('taskset', ['-V']))
    process.stderr.write('bench: taskset missing (util-linux): nothing pinned\n');
  else if (server === load) fail('BENCH_PROXY_CPU and BENCH_LOAD_CPU must differ');
  else pin = { server, load };
  return {
    durationS: seconds('BENCH_DURATION', '8s', 1),
    warmupS: seconds('BENCH_WARMUP', '2s', 0),
    connections,
    threads,
    pin,
    retries: integer('BENCH_RETRIES', 1, 0, 5),
    tetherEntry: resolve(process.env.BENCH_TETHER_ENTRY || join(REPO, 'bin', 'tether-proxy.js')),
    cpuProfile: process.env.BENCH_CPU_PROF === '1',
    enforceFloor: process.env.BENCH_ENFORCE_FLOOR === '1',
  };
}

/** Moves a running process (all its threads) to another core. */
function repin(child: Child, cpu: number | undefined): void {
  if (cpu === undefined || child.proc.pid === undefined) return;
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(child.proc.pid)], {
    stdio: 'ignore',
  });
  if (r.status !== 0) throw new Error(`taskset could not move ${child.name} to core ${cpu}`);
}

/** Per core, from /proc/stat, in clock ticks: time in tasks, time busy at all, and total. */
interface CoreTimes {
  tasks: number;
  busy: number;
  total: number;
}

function coreTimes(): CoreTimes[] {
  try {
    return readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        // user nice system idle iowait irq softirq steal
        const v = l.split(/\s+/).slice(1, 9).map(Number);
        const total = v.reduce((a, b) => a + b, 0);
        const at = (i: number) => v[i] ?? 0;
        return { tasks: at(0) + at(1) + at(2), busy: total - at(3) - at(4), total };
      });
  } catch {
    return [];
  }
}

/** The `name=value` of a Set-Cookie header for cookie `name`, if the answer set it. */
function cookieFrom(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const value = setCookieValue(headers['set-cookie'], name);
  return value === undefined ? undefined : `${name}=${value}`;
}

/** Checks a target answers 200 with a backend's id; returns the answer. */
async function expectBackendAnswer(
  what: string,
  url: string,
  backends: readonly BenchBackend[],
  headers: Record<string, string> = {},
) {
  const res = await httpGet(url, { headers, timeoutMs: CHECK_TIMEOUT_MS });
  const id = res.body.trim();
  if (res.status !== 200 || !backends.some((b) => b.id === id))
    throw new Error(`${what}: GET ${url} answered ${res.status} ${JSON.stringify(res.body.slice(0, 200))}`);
  return { ...res, id };
}

class Bench {
  readonly children = new ChildProcesses();
  readonly dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  readonly runs: RunRecord[] = [];
  private readonly s: Settings;
  private nginx: Child | undefined;

  constructor(settings: Settings) {
    this.s = settings;
  }

  /** Starts the nginx backends and waits until each answers. */
  async startBackends(): Promise<BenchBackend[]> {
    const backends: BenchBackend[] = [];
    for (let i = 1; i <= 3; i++) backends.push({ id: `be-${i}`, port: await freePort() });
    const conf = join(this.dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(this.dir, backends));
    // -e: nginx opens its default error log before reading the config; keep even that in our dir.
    const [cmd, args] = pinned(this.s.pin?.load, 'nginx', [
      '-p',
      this.dir,
      '-c',
      conf,
      '-e',
      join(this.dir, 'nginx-error.log'),
    ]);
    this.nginx = this.children.spawn('nginx', cmd, args);
    for (const b of backends) {
      await waitFor(
        `nginx on 127.0.0.1:${b.port}`,
        async () => {
          const r = await httpGet(`http://127.0.0.1:${b.port}/`, { timeoutMs: CHECK_TIMEOUT_MS });
          return r.status === 200 && r.body === `${b.id}\n` ? true : undefined;
        },
        10_000,
        this.nginx,
      );
    }
    return backends;
  }

  /**
   * Starts watching CPU use; the function returned reports the use since, in
   * % of one core. `proxyPid` is the proxy under test (none for direct).
   * wrk counts once it has exited (reaped children's CPU time).
   */
  private watchCpu(proxyPid: number | undefined): () => CpuWindow {
    const snapshot = () => ({
      at: performance.now(),
      proxy: cpuSeconds(proxyPid),
      nginx: cpuSeconds(this.nginx?.proc.pid),
      wrk: reapedChildrenCpuSeconds(),
      self: process.cpuUsage(),
      cores: coreTimes(),
    });
    const before = snapshot();
    return () => {
      const after = snapshot();
      const wallS = (after.at - before.at) / 1000;
      const used = (k: 'proxy' | 'nginx' | 'wrk'): number | undefined => {
        const x = before[k];
        const y = after[k];
        return x === undefined || y === undefined ? undefined : y - x;
      };
      const pct = (sec: number | undefined): number | undefined =>
        sec === undefined ? undefined : (sec / wallS) * 100;
      // CPU that ran in tasks on this machine but not in ours: other people's
      // work competing with the measurement (interrupt time is left out).
      const taskS =
        after.cores.reduce((sum, c, i) => sum + c.tasks - (before.cores[i]?.tasks ?? c.tasks), 0) /
        TICKS_PER_S;
      const selfUs = process.cpuUsage(before.self);
      const ours =
        (used('proxy') ?? 0) +
        (used('nginx') ?? 0) +
        (used('wrk') ?? 0) +
        (selfUs.user + selfUs.system) / 1e6;
      return {
        proxy: pct(used('proxy')),
        nginx: pct(used('nginx')),
        wrk: pct(used('wrk')),
        other: after.cores.length > 0 ? pct(Math.max(0, taskS - ours)) : undefined,
        cores: after.cores.map((c, i) => {
          const b = before.cores[i];
          return b === undefined || c.total === b.total ? 0 : ((c.busy - b.busy) / (c.total - b.total)) * 100;
        }),
      };
    };
  }

  /**
   * Waits, up to {@link QUIET_WAIT_MS}, for half a second in which processes
   * the bench did not start leave the CPUs alone: other people's builds and
   * tests on a shared machine would otherwise land in the figures.
   */
  private async quietMoment(proxyPid: number | undefined): Promise<void> {
    const deadline = Date.now() + QUIET_WAIT_MS;
    for (;;) {
      const end = this.watchCpu(proxyPid);
      await new Promise((r) => setTimeout(r, 500));
      if ((end().other ?? 0) <= NOISY_OTHER_PCT || Date.now() > deadline) return;
    }
  }

  /**
   * Warms a target up, then measures it; measures again (up to
   * BENCH_RETRIES times) while other processes disturbed the run, and keeps
   * the least disturbed run. `server` is the process on the measured core
   * (the proxy, or nginx itself for the direct run).
   */
  async measure(
    id: string,
    label: string,
    note: string,
    url: string,
    headers: string[],
    server: Child | undefined,
  ): Promise<RunRecord> {
    const wrk = {
      url,
      threads: this.s.threads,
      connections: this.s.connections,
      headers,
      cpu: this.s.pin?.load,
    };
    const proxyPid = server === this.nginx ? undefined : server?.proc.pid;
    process.stdout.write(`  ${label}: warm-up ${this.s.warmupS}s, measure ${this.s.durationS}s ... `);
    // Warm-up: JIT, connection pools and nginx's worker caches settle before anything counts.
    if (this.s.warmupS > 0) await runWrk(this.children, { ...wrk, durationS: this.s.warmupS });
    let best: RunRecord | undefined;
    for (let attempt = 1; attempt <= 1 + this.s.retries; attempt++) {
      await this.quietMoment(proxyPid);
      const end = this.watchCpu(proxyPid);
      const result = await runWrk(this.children, { ...wrk, durationS: this.s.durationS });
      const cpu = end();
      const errorShare = result.requests > 0 ? result.errors.total / result.requests : 1;
      const record: RunRecord = {
        id,
        label,
        note,
        url,
        headers,
        result,
        cpu,
        errorShare,
        ok: result.requests > 0 && errorShare <= MAX_ERROR_SHARE,
        attempts: attempt,
      };
      if (best === undefined || (cpu.other ?? 0) < (best.cpu.other ?? 0)) best = { ...record };
      best.attempts = attempt;
      const errs = result.errors.total > 0 ? `, errors ${errorText(result)}` : '';
      process.stdout.write(`${fmtInt(result.requestsPerS)} req/s${errs}`);
      if (!isDisturbed(record) || attempt > this.s.retries) break;
      process.stdout.write(` (disturbed: other processes used ${fmtPct(cpu.other)} of a core), again ... `);
    }
    process.stdout.write('\n');
    const kept = best as RunRecord;
    this.runs.push(kept);
    return kept;
  }

  async direct(backends: BenchBackend[]): Promise<void> {
    const b = backends[0] as BenchBackend;
    const nginx = this.nginx as Child;
    // Direct, nginx is the server under test: give it the measured core, as the proxies get.
    repin(nginx, this.s.pin?.server);
    try {
      await this.measure(
        'direct',
        'direct (nginx be-1)',
        'no proxy: wrk straight to one nginx backend',
        `http://127.0.0.1:${b.port}/`,
        [],
        nginx,
      );
    } finally {
      repin(nginx, this.s.pin?.load);
    }
  }

  async tether(backends: BenchBackend[]): Promise<void> {
    const pool = join(this.dir, 'pool.yaml');
    const keys = join(this.dir, 'cookie-keys');
    writeFileSync(pool, poolYaml(backends));
    writeFileSync(keys, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const nodeArgs: string[] = [];
    if (this.s.cpuProfile) {
      mkdirSync(RESULTS_DIR, { recursive: true });
      nodeArgs.push('--cpu-prof', '--cpu-prof-dir', RESULTS_DIR);
    }
    const proxy = await startTetherProxy(this.children, {
      entry: this.s.tetherEntry,
      nodeArgs,
      launcher: pinPrefix(this.s.pin?.server),
      cwd: REPO,
      args: ['--config', pool, '--cookie-keys-file', keys, '--shutdown-timeout', '2s'],
    });
    await waitFor(
      `GET ${proxy.adminUrl}/readyz → 200`,
      async () =>
        (await httpGet(`${proxy.adminUrl}/readyz`, { timeoutMs: CHECK_TIMEOUT_MS })).status === 200
          ? true
          : undefined,
      10_000,
      proxy.child,
    );
    const url = `${proxy.url}/`;
    const first = await expectBackendAnswer('tether', url, backends);
    const cookie = cookieFrom(first.headers, 'route');
    if (cookie === undefined) throw new Error(`tether: a request without cookie got no route cookie back`);
    const hit = await expectBackendAnswer('tether (with cookie)', url, backends, { cookie });
    if (hit.id !== first.id)
      throw new Error(`tether: the route cookie pinned ${first.id} but the next request went to ${hit.id}`);
    const hitSetsCookie = cookieFrom(hit.headers, 'route') !== undefined;

    await this.measure(
      'tether-new',
      'tether, new pin',
      'wrk sends no cookie: every request is a new pin and every answer carries a signed Set-Cookie',
      url,
      [],
      proxy.child,
    );
    await this.measure(
      'tether-pinned',
      'tether, pinned',
      `wrk sends a valid route cookie (pinned to ${first.id}): the cookie is verified, no new pin` +
        (hitSetsCookie ? '; the answer still sets a cookie' : ', no Set-Cookie'),
      url,
      [`Cookie: ${cookie}`],
      proxy.child,
    );
    // A graceful stop: the proxy writes its CPU profile on exit.
    await proxy.stop(5_000);
    const complaints = proxy.logs.filter((line) => {
      const level = parseJsonLine(line)?.level;
      return level === 'warn' || level === 'error';
    });
    if (this.s.cpuProfile)
      process.stdout.write(`  CPU profile of tether-proxy: ${RESULTS_DIR}/CPU.*.cpuprofile (newest)\n`);
    if (complaints.length > 0) {
      process.stdout.write(`  tether-proxy logged ${complaints.length} warning/error line(s), first ones:\n`);
      for (const c of complaints.slice(0, 5)) process.stdout.write(`    ${c}\n`);
    }
  }

  /** The floor: a bare undici forwarder (see bare-forwarder.ts), round robin, no affinity. */
  async bareForwarder(backends: BenchBackend[]): Promise<void> {
    const port = await freePort();
    const [cmd, args] = pinned(this.s.pin?.server, process.execPath, [
      join(REPO, 'bench/bare-forwarder.ts'),
      String(port),
      ...backends.map((b) => String(b.port)),
    ]);
    const bare = this.children.spawn('bare-forwarder', cmd, args, { cwd: REPO });
    const url = `http://127.0.0.1:${port}/`;
    await waitFor(
      `bare forwarder on 127.0.0.1:${port}`,
      () => expectBackendAnswer('bare forwarder', url, backends),
      10_000,
      bare,
    );
    await this.measure(
      'bare-forwarder',
      'undici forwarder, bare',
      'node:http + undici Pool.dispatch, round robin: no affinity, cookie, metrics or health (the floor under Tether)',
      url,
      [],
      bare,
    );
    await this.children.stop(bare);
  }

  async haproxy(backends: BenchBackend[]): Promise<void> {
    const port = await freePort();
    const cfg = join(this.dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(port, backends));
    // -db: stay in the foreground, no daemon, no master-worker; the bench owns the process.
    const [cmd, args] = pinned(this.s.pin?.server, 'haproxy', ['-db', '-f', cfg]);
    const proxy = this.children.spawn('haproxy', cmd, args);
    const url = `http://127.0.0.1:${port}/`;
    const first = await waitFor(
      `HAProxy on 127.0.0.1:${port}`,
      () => expectBackendAnswer('haproxy', url, backends),
      10_000,
      proxy,
    );
    const cookie = cookieFrom(first.headers, 'SRV');
    if (cookie === undefined) throw new Error('haproxy: a request without cookie got no SRV cookie back');
    const hit = await expectBackendAnswer('haproxy (with cookie)', url, backends, { cookie });
    if (hit.id !== first.id)
      throw new Error(`haproxy: ${cookie} pinned ${first.id} but the next request went to ${hit.id}`);

    await this.measure(
      'haproxy-new',
      'haproxy, new pin',
      'wrk sends no cookie: round robin, and every answer carries Set-Cookie SRV (cookie insert indirect nocache)',
      url,
      [],
      proxy,
    );
    await this.measure(
      'haproxy-pinned',
      'haproxy, pinned',
      `wrk sends ${cookie}: the cookie picks the server, no Set-Cookie`,
      url,
      [`Cookie: ${cookie}`],
      proxy,
    );
    await this.children.stop(proxy);
  }

  /** Stops every child and removes the temp dir. Safe to call more than once. */
  async close(): Promise<void> {
    await this.children.stopAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function fmtMs(us: number): string {
  return `${(us / 1000).toFixed(2)} ms`;
}

function fmtPct(n: number | undefined): string {
  return n === undefined ? '-' : `${Math.round(n)}%`;
}

function errorText(r: WrkResult): string {
  const e = r.errors;
  if (e.total === 0) return '0';
  const parts = (['status', 'connect', 'read', 'write', 'timeout'] as const)
    .filter((k) => e[k] > 0)
    .map((k) => `${k === 'status' ? 'non-2xx/3xx' : k} ${e[k]}`);
  return `${e.total} (${parts.join(', ')})`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r, ri) => {
      const cells = r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)));
      const line = `  ${cells.join('  ')}`;
      return ri === 0 ? `${line}\n  ${widths.map((w) => '-'.repeat(w)).join('  ')}` : line;
    })
    .join('\n');
}

interface Ratio {
  name: string;
  value: number | undefined;
  /** Only the Tether/HAProxy ratios are held to the floor and the aim. */
  floorMet?: boolean;
  aimMet?: boolean;
}

function ratios(runs: RunRecord[]): Ratio[] {
  const rps = (id: string) => runs.find((r) => r.id === id)?.result.requestsPerS;
  const div = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b;
  const vsHaproxy = (name: string, value: number | undefined): Ratio => ({
    name,
    value,
    floorMet: value !== undefined && value >= FLOOR,
    aimMet: value !== undefined && value >= AIM,
  });
  return [
    { name: 'tether/direct, new pin', value: div(rps('tether-new'), rps('direct')) },
    { name: 'tether/direct, pinned', value: div(rps('tether-pinned'), rps('direct')) },
    { name: 'haproxy/direct, new pin', value: div(rps('haproxy-new'), rps('direct')) },
    { name: 'tether/bare forwarder, new pin', value: div(rps('tether-new'), rps('bare-forwarder')) },
    { name: 'tether/bare forwarder, pinned', value: div(rps('tether-pinned'), rps('bare-forwarder')) },
    { name: 'bare forwarder/haproxy', value: div(rps('bare-forwarder'), rps('haproxy-new')) },
    vsHaproxy('tether/haproxy, new pin', div(rps('tether-new'), rps('haproxy-new'))),
    vsHaproxy('tether/haproxy, pinned', div(rps('tether-pinned'), rps('haproxy-pinned'))),
  ];
}

async function main(): Promise<number> {
  checkNode();
  const s = readSettings();
  for (const [cmd, args] of [
    ['wrk', ['-v']],
    ['nginx', ['-v']],
    ['haproxy', ['-v']],
  ] as const) {
    if (!haveCommand(cmd, args))
      fail(`${cmd} not found: run \`make bench\` (it installs wrk, haproxy, nginx)`);
  }
  const versions = {
    node: process.version,
    nginx: firstLineOf('nginx', ['-v']),
    haproxy: firstLineOf('haproxy', ['-v']),
    wrk: firstLineOf('wrk', ['-v']),
  };
  const cpuModel = /model name\s*:\s*(.*)/.exec(safeRead('/proc/cpuinfo'))?.[1] ?? 'unknown';

  const bench = new Bench(s);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= bench.close();
    return closing;
  };
  let stopping = false;
  const bail = (code: number, why: string) => {
    stopping = true;
    process.stderr.write(`\nbench: ${why}; stopping every process it started\n`);
    void close().finally(() => process.exit(code));
  };
  process.once('SIGINT', () => bail(130, 'interrupted'));
  process.once('SIGTERM', () => bail(143, 'terminated'));
  // Whatever happens, no nginx, HAProxy, proxy or wrk outlives the bench.
  process.once('exit', () => {
    bench.children.killAllNow();
    rmSync(bench.dir, { recursive: true, force: true });
  });
  // Six targets, each a warm-up and up to 1 + retries measurements after a
  // wait for quiet, plus start-up and checks.
  const budgetS = 6 * (s.warmupS + (1 + s.retries) * (s.durationS + QUIET_WAIT_MS / 1000 + 1)) + 45;
  setTimeout(() => bail(1, `the run took longer than its ${budgetS} s budget`), budgetS * 1000).unref();

  const pinText =
    s.pin === undefined
      ? 'not pinned'
      : `proxy (or nginx, direct) on core ${s.pin.server}; wrk and, behind a proxy, nginx on core ${s.pin.load}`;
  process.stdout.write(
    `Tether bench: wrk -t${s.threads} -c${s.connections} -d${s.durationS}s (warm-up ${s.warmupS}s), ` +
      `${availableParallelism()} CPUs (${cpuModel})\n  ${pinText}\n` +
      `  ${versions.node}, ${versions.nginx}, ${versions.haproxy}, ${versions.wrk}\n\n`,
  );

  try {
    const backends = await bench.startBackends();
    await bench.direct(backends);
    await bench.bareForwarder(backends);
    await bench.tether(backends);
    await bench.haproxy(backends);
  } catch (err) {
    // After a signal, the failures are the processes we stopped ourselves: not worth printing.
    if (!stopping) process.stderr.write(`\nbench: ${(err as Error).message}\n`);
    await close();
    return 1;
  }
  await close();

  const runs = bench.runs;
  const rows = [
    ['target', 'req/s', 'p50', 'p99', 'errors', 'proxy', 'nginx', 'wrk', 'other', 'cores busy'],
    ...runs.map((r) => [
      r.label,
      fmtInt(r.result.requestsPerS),
      fmtMs(r.result.latencyUs.p50),
      fmtMs(r.result.latencyUs.p99),
      errorText(r.result),
      fmtPct(r.cpu.proxy),
      fmtPct(r.cpu.nginx),
      fmtPct(r.cpu.wrk),
      fmtPct(r.cpu.other),
      r.cpu.cores.map((c) => fmtPct(c)).join('/'),
    ]),
  ];
  process.stdout.write(
    `\n${table(rows)}\n  (proxy, nginx, wrk, other: CPU in % of one core during the measured run;` +
      ` other: processes the bench did not start. cores busy: per core, interrupts included)\n\n`,
  );
  const noisy = runs.filter(isDisturbed);
  if (noisy.length > 0)
    process.stdout.write(
      `  WARNING: other processes used more than ${NOISY_OTHER_PCT}% of a core during ` +
        `${noisy.map((r) => r.label).join(', ')}: those figures are disturbed; run again on a quiet machine\n\n`,
    );
  for (const r of runs) {
    const tries = r.attempts > 1 ? ` [measured ${r.attempts} times, the least disturbed run kept]` : '';
    process.stdout.write(`  ${r.label}: ${r.note}${tries}\n`);
  }
  const rs = ratios(runs);
  process.stdout.write(`\n  ratios (requests/s; Tether/HAProxy floor ${FLOOR}, aim ${AIM}):\n`);
  for (const r of rs) {
    const v = r.value === undefined ? '-' : r.value.toFixed(2);
    const verdict =
      r.floorMet === undefined
        ? ''
        : `  floor ${FLOOR}: ${r.floorMet ? 'met' : 'NOT met'}, aim ${AIM}: ${r.aimMet ? 'met' : 'not met'}`;
    process.stdout.write(`    ${r.name.padEnd(30)} ${v.padStart(5)}${verdict}\n`);
  }
  const bad = runs.filter((r) => !r.ok);
  for (const r of bad)
    process.stdout.write(
      `\n  ${r.label}: ${errorText(r.result)} errors in ${r.result.requests} requests: its figures are not valid`,
    );

  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, 'latest.json');
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        finishedAt: new Date().toISOString(),
        machine: { cpus: availableParallelism(), cpuModel, ...versions },
        settings: {
          wrk: `wrk -t${s.threads} -c${s.connections} -d${s.durationS}s --timeout 2s`,
          warmupS: s.warmupS,
          pinning: s.pin ?? null,
        },
        floor: FLOOR,
        aim: AIM,
        runs: runs.map((r) => ({
          id: r.id,
          label: r.label,
          note: r.note,
          headers: r.headers.map((h) => h.replace(/=.*/, '=…')),
          requestsPerS: Math.round(r.result.requestsPerS),
          requests: r.result.requests,
          durationS: r.result.durationS,
          latencyUs: r.result.latencyUs,
          errors: r.result.errors,
          cpuPercent: r.cpu,
          attempts: r.attempts,
          valid: r.ok,
          disturbed: isDisturbed(r),
        })),
        ratios: rs,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`\n  results: ${out}\n`);
  if (bad.length > 0) return 1;
  const below = rs.filter((r) => r.floorMet === false);
  if (s.enforceFloor && below.length > 0) {
    process.stderr.write(`bench: Tether/HAProxy below the ${FLOOR} floor (BENCH_ENFORCE_FLOOR=1)\n`);
    return 1;
  }
  return 0;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// exit() rather than exitCode: a stray handle must not keep a finished bench alive.
process.exit(await main());
