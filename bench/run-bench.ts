/**
 * `make bench`: Tether's proxy against HAProxy, against the Node proxies
 * users would otherwise pick, and against no proxy at all, in one run, on one
 * machine, under the same load (issue 12).
 *
 * Three `return 200` backends (one nginx process) keep the endpoints cheap,
 * so what differs between targets is the proxy in the middle. Each proxy is
 * pinned to one core (one Node process against one HAProxy thread) and wrk
 * runs on the other, as in issue 2 §6. Figures go to stdout as tables and
 * to `bench/results/latest.json`; `make bench-readme` renders the README's
 * tables from that file.
 *
 * Steps (BENCH_ONLY picks some, comma-separated; all by default):
 *   throughput  wrk, saturated: nginx direct, HAProxy `cookie insert`, Tether,
 *               the bare undici forwarder, and the Node peers of bench/peers/
 *               (fastify + reply-from, http-proxy-3, http-proxy), each new
 *               pin (no cookie) and pinned (a valid cookie);
 *   paced       vegeta at a fixed 50 % of HAProxy's saturated new-pin rate,
 *               new pins, against HAProxy, Tether and the peers: p50/p99;
 *   memory      VmRSS of a fresh Tether (and HAProxy) holding
 *               BENCH_IDLE_CONNECTIONS idle keep-alive client connections;
 *   workers     Tether with --workers 1 and 2 (when the flag exists), the
 *               proxy on cores 0-1 and wrk unpinned: the scaling factor.
 *
 * Environment (all optional):
 *   BENCH_ONLY (all): throughput,paced,memory,workers;
 *   BENCH_DURATION (8s), BENCH_WARMUP (2s; 0 for none), BENCH_CONNECTIONS (64),
 *   BENCH_THREADS (1): wrk's settings;
 *   BENCH_PACED_DURATION (8s): each vegeta run (after a 1 s paced warm-up);
 *   BENCH_PACED_RATE: a fixed rate, req/s, instead of 50 % of HAProxy's;
 *   BENCH_IDLE_CONNECTIONS (10000): the memory step's connections;
 *   BENCH_PROXY_CPU (0), BENCH_LOAD_CPU (1): the cores to pin to;
 *   BENCH_NICE: run every process the bench starts under `nice -n` this
 *     (e.g. -10, as root): on a shared machine, keeps other people's work
 *     out of the figures (at their expense); inherited by default;
 *   BENCH_RETRIES (1): measure a target again when other processes on the
 *     machine disturbed the run (the least disturbed run is kept); at most
 *     MAX_RETRIES_PER_RUN such repeats in a whole run, to keep it short;
 *   BENCH_TETHER_ENTRY: another tether-proxy entry script, to compare a build;
 *   BENCH_CPU_PROF=1: write a V8 CPU profile of the proxy to bench/results/;
 *   BENCH_ENFORCE_FLOOR=1: exit 1 when Tether/HAProxy is below the 0.5 floor
 *     (new pin or pinned), or was not measured.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Child, ChildProcesses, parseJsonLine, waitForLine } from '../tools/child-processes.ts';
import { freePort } from '../tools/free-port.ts';
import { httpGet, setCookieValue } from '../tools/http-get.ts';
import { startTetherProxy, type TetherProxy } from '../tools/tether-proxy-process.ts';
import { type BenchBackend, haproxyConfig, nginxConfig, poolYaml } from './configs.ts';
import {
  cpuSeconds,
  firstLineOf,
  haveCommand,
  pinned,
  pinPrefix,
  reapedChildrenCpuSeconds,
  rssBytes,
  setNiceness,
  TICKS_PER_S,
  treeCpuSeconds,
  waitFor,
} from './processes.ts';
import { fdsNeeded, hasWorkersFlag, parseNofileLimit } from './proxy-flags.ts';
import { belowFloor, computeRatios, describeRatio, FLOOR } from './ratios.ts';
import {
  type BenchResults,
  type MemoryRun,
  type PacedRun,
  PEERS,
  type PeerTarget,
  parseSteps,
  RESULTS_SCHEMA_VERSION,
  type Step,
  type ThroughputRun,
  type WorkersResult,
} from './results.ts';
import { ensureVegeta, runVegeta } from './vegeta.ts';
import { isBehind, pacedRate } from './vegeta-report.ts';
import { runWrk, type WrkResult } from './wrk.ts';

/** More errors than this share of requests makes a run's figures worthless. */
const MAX_ERROR_SHARE = 0.01;
/** Limit on one check request (is a target up, does it pin), ms. */
const CHECK_TIMEOUT_MS = 2_000;
/** CPU of processes the bench did not start, % of a core, above which a run counts as disturbed. */
const NOISY_OTHER_PCT = 15;
/** How long to wait for a quiet moment before each measurement, at most. */
const QUIET_WAIT_MS = 3_000;
/** Repeats of disturbed measurements in one whole run, at most: keeps `make bench` near 6 minutes. */
const MAX_RETRIES_PER_RUN = 4;
/** The paced rate, as a share of HAProxy's saturated new-pin requests/s (issue 12). */
const PACED_SHARE = 0.5;
/** The paced warm-up before each measured vegeta run, s: new connections and vegeta's workers settle. */
const PACED_WARMUP_S = 1;
/** Source addresses the idle connections are spread over (each has its own ephemeral ports). */
const IDLE_SOURCES = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
/** Workers step: the most workers measured (issue 12 reports 1 and 2 on this 2-core machine). */
const WORKERS_MAX = 2;

const REPO = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = join(REPO, 'bench', 'results');

interface Settings {
  steps: Step[];
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
  pacedDurationS: number;
  /** BENCH_PACED_RATE, when set. */
  pacedRate: number | undefined;
  idleConnections: number;
  /** BENCH_NICE, when set. */
  nice: number | undefined;
  cpuProfile: boolean;
  enforceFloor: boolean;
}

/** One measured target, as kept in memory (the JSON form is {@link ThroughputRun}). */
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

function isDisturbed(cpu: CpuWindow): boolean {
  return (cpu.other ?? 0) > NOISY_OTHER_PCT;
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
  let steps: Step[];
  try {
    steps = parseSteps(process.env.BENCH_ONLY);
  } catch (err) {
    fail((err as Error).message);
  }
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
  const rateText = process.env.BENCH_PACED_RATE;
  const enforceFloor = process.env.BENCH_ENFORCE_FLOOR === '1';
  if (enforceFloor && !steps.includes('throughput'))
    fail('BENCH_ENFORCE_FLOOR=1 needs the throughput step (BENCH_ONLY leaves it out)');
  return {
    steps,
    durationS: seconds('BENCH_DURATION', '8s', 1),
    warmupS: seconds('BENCH_WARMUP', '2s', 0),
    connections,
    threads,
    pin,
    retries: integer('BENCH_RETRIES', 1, 0, 5),
    pacedDurationS: seconds('BENCH_PACED_DURATION', '8s', 1),
    pacedRate:
      rateText === undefined || rateText === '' ? undefined : integer('BENCH_PACED_RATE', 0, 1, 1_000_000),
    idleConnections: integer('BENCH_IDLE_CONNECTIONS', 10_000, 1, 50_000),
    nice:
      process.env.BENCH_NICE === undefined || process.env.BENCH_NICE === ''
        ? undefined
        : integer('BENCH_NICE', 0, -20, 19),
    tetherEntry: resolve(process.env.BENCH_TETHER_ENTRY || join(REPO, 'bin', 'tether-proxy.js')),
    cpuProfile: process.env.BENCH_CPU_PROF === '1',
    enforceFloor,
  };
}

/** Moves a running process (all its threads) to other cores (`0` or `0,1`). */
function repin(child: Child, cpus: number | string | undefined): void {
  if (cpus === undefined || child.proc.pid === undefined) return;
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpus), String(child.proc.pid)], {
    stdio: 'ignore',
  });
  if (r.status !== 0) throw new Error(`taskset could not move ${child.name} to core(s) ${cpus}`);
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

/**
 * Checks the affinity job of a target before it is measured: a request
 * without cookie gets cookie `name` back, and a request with it goes to the
 * same backend. Returns the `name=value` pair, for the pinned measurement.
 */
async function checkCookieJob(
  what: string,
  url: string,
  backends: readonly BenchBackend[],
  name: string,
): Promise<{ cookie: string; id: string; hitSetsCookie: boolean }> {
  const first = await expectBackendAnswer(what, url, backends);
  const cookie = cookieFrom(first.headers, name);
  if (cookie === undefined) throw new Error(`${what}: a request without cookie got no ${name} cookie back`);
  const hit = await expectBackendAnswer(`${what} (with cookie)`, url, backends, { cookie });
  if (hit.id !== first.id)
    throw new Error(`${what}: ${name} cookie pinned ${first.id} but the next request went to ${hit.id}`);
  return { cookie, id: first.id, hitSetsCookie: cookieFrom(hit.headers, name) !== undefined };
}

/** Soft `Max open files` of this process (children inherit it). */
function ownNofileLimit(): number {
  return parseNofileLimit(safeRead('/proc/self/limits'))?.soft ?? Number.POSITIVE_INFINITY;
}

class Bench {
  readonly children = new ChildProcesses();
  readonly dir = mkdtempSync(join(tmpdir(), 'tether-bench-'));
  readonly runs: RunRecord[] = [];
  readonly paced: PacedRun[] = [];
  readonly memory: MemoryRun[] = [];
  workers: WorkersResult = { status: 'skipped', reason: 'not selected (BENCH_ONLY)' };
  vegeta: string | undefined;
  private readonly s: Settings;
  private nginx: Child | undefined;
  private backends: BenchBackend[] = [];
  private retriesLeft = MAX_RETRIES_PER_RUN;
  /** The paced step's rate, once known (HAProxy's saturated new-pin rate × 0.5, or BENCH_PACED_RATE). */
  private rate: number | undefined;

  constructor(settings: Settings) {
    this.s = settings;
    this.rate = settings.pacedRate;
  }

  private has(step: Step): boolean {
    return this.s.steps.includes(step);
  }

  /** Starts the nginx backends and waits until each answers. */
  async startBackends(): Promise<void> {
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
    this.backends = backends;
  }

  /**
   * Starts watching CPU use; the function returned reports the use since, in
   * % of one core. `proxyPid` is the proxy under test (none for direct).
   * wrk counts once it has exited (reaped children's CPU time).
   */
  private watchCpu(proxyPid: number | undefined): () => CpuWindow {
    const snapshot = () => ({
      at: performance.now(),
      proxy: treeCpuSeconds(proxyPid),
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
   * Warms a target up, then measures it with wrk; measures again (up to
   * BENCH_RETRIES times, and {@link MAX_RETRIES_PER_RUN} in the whole run)
   * while other processes disturbed the run, and keeps the least disturbed
   * run. `server` is the process on the measured core (the proxy, or nginx
   * itself for the direct run). `wrkCpu`: where wrk runs (the load core by default).
   */
  async measure(
    id: string,
    label: string,
    note: string,
    url: string,
    headers: string[],
    server: Child | undefined,
    wrkCpu: number | undefined = this.s.pin?.load,
  ): Promise<RunRecord> {
    const wrk = { url, threads: this.s.threads, connections: this.s.connections, headers, cpu: wrkCpu };
    const proxyPid = server === this.nginx ? undefined : server?.proc.pid;
    process.stdout.write(`  ${label}: warm-up ${this.s.warmupS}s, measure ${this.s.durationS}s ... `);
    // Warm-up: JIT, connection pools and nginx's worker caches settle before anything counts.
    if (this.s.warmupS > 0) await runWrk(this.children, { ...wrk, durationS: this.s.warmupS });
    let best: RunRecord | undefined;
    for (let attempt = 1; ; attempt++) {
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
      if (!isDisturbed(record.cpu) || attempt > this.s.retries || this.retriesLeft <= 0) break;
      this.retriesLeft--;
      process.stdout.write(` (disturbed: other processes used ${fmtPct(cpu.other)} of a core), again ... `);
    }
    process.stdout.write('\n');
    const kept = best as RunRecord;
    this.runs.push(kept);
    return kept;
  }

  /**
   * vegeta at the paced rate against `url` (new pins: no cookie): a short
   * paced warm-up, then the measured run. Needs the rate (HAProxy first).
   */
  async measurePaced(id: string, label: string, url: string, server: Child): Promise<void> {
    const rate = this.rate;
    const bin = this.vegeta;
    if (rate === undefined || bin === undefined) {
      process.stdout.write(
        `  ${label}, paced: skipped (no rate: HAProxy's saturated rate was not measured)\n`,
      );
      return;
    }
    const cpu = this.s.pin?.load;
    process.stdout.write(`  ${label}, paced ${fmtInt(rate)} req/s for ${this.s.pacedDurationS}s ... `);
    await runVegeta(this.children, {
      bin,
      url,
      rate,
      durationS: PACED_WARMUP_S,
      cpu,
      dir: this.dir,
      name: `${id}-warmup`,
    });
    await this.quietMoment(server.proc.pid);
    const end = this.watchCpu(server.proc.pid);
    const v = await runVegeta(this.children, {
      bin,
      url,
      rate,
      durationS: this.s.pacedDurationS,
      cpu,
      dir: this.dir,
      name: id,
    });
    const cpuUse = end();
    const run: PacedRun = {
      id,
      label,
      rate,
      achievedRate: v.achievedRate,
      requests: v.requests,
      success: v.success,
      latencyUs: v.latencyUs,
      behind: isBehind(rate, v.achievedRate),
      disturbed: isDisturbed(cpuUse),
    };
    this.paced.push(run);
    process.stdout.write(
      `p50 ${fmtMs(v.latencyUs.p50)}, p99 ${fmtMs(v.latencyUs.p99)}, success ${(v.success * 100).toFixed(1)} %` +
        `${run.behind ? `, FELL BEHIND (sent ${fmtInt(v.achievedRate)} req/s)` : ''}` +
        `${v.errors.length > 0 ? `, errors: ${v.errors.join('; ')}` : ''}\n`,
    );
  }

  async direct(): Promise<void> {
    const b = this.backends[0] as BenchBackend;
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

  /** Starts tether-proxy on the measured core (or `launcher`), and waits until it is ready. */
  private async startTether(
    o: { launcher?: string[]; extraArgs?: string[]; profile?: boolean; name?: string } = {},
  ): Promise<TetherProxy> {
    const pool = join(this.dir, 'pool.yaml');
    const keys = join(this.dir, 'cookie-keys');
    writeFileSync(pool, poolYaml(this.backends));
    writeFileSync(keys, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const nodeArgs: string[] = [];
    if (o.profile === true) {
      mkdirSync(RESULTS_DIR, { recursive: true });
      nodeArgs.push('--cpu-prof', '--cpu-prof-dir', RESULTS_DIR);
    }
    const proxy = await startTetherProxy(this.children, {
      name: o.name,
      entry: this.s.tetherEntry,
      nodeArgs,
      launcher: o.launcher ?? pinPrefix(this.s.pin?.server),
      cwd: REPO,
      args: [
        '--config',
        pool,
        '--cookie-keys-file',
        keys,
        '--shutdown-timeout',
        '2s',
        ...(o.extraArgs ?? []),
      ],
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
    return proxy;
  }

  /** Stops a proxy gracefully and prints the warnings and errors it logged. */
  private async stopTether(proxy: TetherProxy): Promise<void> {
    await proxy.stop(5_000);
    const complaints = proxy.logs.filter((line) => {
      const level = parseJsonLine(line)?.level;
      return level === 'warn' || level === 'error';
    });
    if (complaints.length > 0) {
      process.stdout.write(`  tether-proxy logged ${complaints.length} warning/error line(s), first ones:\n`);
      for (const c of complaints.slice(0, 5)) process.stdout.write(`    ${c}\n`);
    }
  }

  async tether(): Promise<void> {
    const proxy = await this.startTether({ profile: this.s.cpuProfile });
    const url = `${proxy.url}/`;
    const job = await checkCookieJob('tether', url, this.backends, 'route');
    if (this.has('throughput')) {
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
        `wrk sends a valid route cookie (pinned to ${job.id}): the cookie is verified, no new pin` +
          (job.hitSetsCookie ? '; the answer still sets a cookie' : ', no Set-Cookie'),
        url,
        [`Cookie: ${job.cookie}`],
        proxy.child,
      );
    }
    if (this.has('paced')) await this.measurePaced('tether', 'tether', url, proxy.child);
    // A graceful stop: the proxy writes its CPU profile on exit.
    await this.stopTether(proxy);
    if (this.s.cpuProfile)
      process.stdout.write(`  CPU profile of tether-proxy: ${RESULTS_DIR}/CPU.*.cpuprofile (newest)\n`);
  }

  /** The floor: a bare undici forwarder (see bare-forwarder.ts), round robin, no affinity. */
  async bareForwarder(): Promise<void> {
    const port = await freePort();
    const [cmd, args] = pinned(this.s.pin?.server, process.execPath, [
      join(REPO, 'bench/bare-forwarder.ts'),
      String(port),
      ...this.backends.map((b) => String(b.port)),
    ]);
    const bare = this.children.spawn('bare-forwarder', cmd, args, { cwd: REPO });
    const url = `http://127.0.0.1:${port}/`;
    await waitFor(
      `bare forwarder on 127.0.0.1:${port}`,
      () => expectBackendAnswer('bare forwarder', url, this.backends),
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

  /** A Node peer of bench/peers/: the same route-cookie job, new pin and pinned, then paced. */
  async peer(peer: PeerTarget): Promise<void> {
    const port = await freePort();
    const [cmd, args] = pinned(this.s.pin?.server, process.execPath, [
      // http-proxy 1.18 warns about util._extend on every start: not what the bench is about.
      '--no-deprecation',
      join(REPO, peer.script),
      String(port),
      ...this.backends.map((b) => `${b.id}=${b.port}`),
    ]);
    const child = this.children.spawn(peer.id, cmd, args, { cwd: REPO });
    const url = `http://127.0.0.1:${port}/`;
    await waitForLine(child, 'it listened', 15_000, (line) =>
      line === `listening ${port}` ? true : undefined,
    );
    const job = await checkCookieJob(peer.label, url, this.backends, 'route');
    if (this.has('throughput')) {
      await this.measure(
        `${peer.id}-new`,
        `${peer.id}, new pin`,
        `${peer.label}: wrk sends no cookie, round robin and a plain Set-Cookie route=<endpoint> on every answer`,
        url,
        [],
        child,
      );
      await this.measure(
        `${peer.id}-pinned`,
        `${peer.id}, pinned`,
        `${peer.label}: wrk sends route=${job.id}, the cookie picks the endpoint, no Set-Cookie`,
        url,
        [`Cookie: ${job.cookie}`],
        child,
      );
    }
    if (this.has('paced')) await this.measurePaced(peer.id, peer.id, url, child);
    await this.children.stop(child);
  }

  /** Starts HAProxy with `cookie SRV insert` on the measured core; returns it and its URL. */
  private async startHaproxy(maxconn?: number): Promise<{ child: Child; url: string }> {
    const port = await freePort();
    const cfg = join(this.dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(port, this.backends, maxconn));
    // -db: stay in the foreground, no daemon, no master-worker; the bench owns the process.
    const [cmd, args] = pinned(this.s.pin?.server, 'haproxy', ['-db', '-f', cfg]);
    const child = this.children.spawn('haproxy', cmd, args);
    const url = `http://127.0.0.1:${port}/`;
    await waitFor(
      `HAProxy on 127.0.0.1:${port}`,
      () => expectBackendAnswer('haproxy', url, this.backends),
      10_000,
      child,
    );
    return { child, url };
  }

  /**
   * HAProxy first: its saturated new-pin rate sets the paced rate. Measured
   * new pin even when only the paced step runs, for that rate.
   */
  async haproxy(): Promise<void> {
    const { child, url } = await this.startHaproxy();
    const job = await checkCookieJob('haproxy', url, this.backends, 'SRV');
    if (this.has('throughput') || (this.has('paced') && this.rate === undefined)) {
      const run = await this.measure(
        'haproxy-new',
        'haproxy, new pin',
        'wrk sends no cookie: round robin, and every answer carries Set-Cookie SRV (cookie insert indirect nocache)',
        url,
        [],
        child,
      );
      if (this.rate === undefined && run.ok) this.rate = pacedRate(run.result.requestsPerS, PACED_SHARE);
    }
    if (this.has('throughput'))
      await this.measure(
        'haproxy-pinned',
        'haproxy, pinned',
        `wrk sends ${job.cookie}: the cookie picks the server, no Set-Cookie`,
        url,
        [`Cookie: ${job.cookie}`],
        child,
      );
    if (this.has('paced')) await this.measurePaced('haproxy', 'haproxy', url, child);
    await this.children.stop(child);
  }

  /**
   * Opens the idle connections to `url`'s port, reads `pid`'s VmRSS with
   * them open, then closes them. The client runs on the load core.
   */
  private async holdIdle(
    id: string,
    label: string,
    port: number,
    pid: number | undefined,
    count: number,
    rssStart: number | undefined,
  ): Promise<MemoryRun | undefined> {
    process.stdout.write(`  ${label}: ${fmtInt(count)} idle keep-alive connections ... `);
    await new Promise((r) => setTimeout(r, 500));
    const before = rssBytes(pid);
    const [cmd, args] = pinned(this.s.pin?.load, process.execPath, [
      join(REPO, 'bench/idle-clients.ts'),
      '127.0.0.1',
      String(port),
      String(count),
      IDLE_SOURCES.join(','),
    ]);
    const client = this.children.spawn(`${id}-idle-clients`, cmd, args, { cwd: REPO, stdin: 'pipe' });
    try {
      const ready = await waitForLine(client, 'its connections were open', 60_000, (line) => {
        const rec = parseJsonLine(line);
        return rec?.event === 'ready' ? rec : undefined;
      });
      const rss = rssBytes(pid);
      const counted = waitForLine(client, 'the open count', 10_000, (line) => {
        const rec = parseJsonLine(line);
        return rec?.event === 'count' ? Number(rec.open) : undefined;
      });
      client.proc.stdin?.write('count\n');
      const openAtSample = Math.min(Number(ready.open), await counted);
      if (before === undefined || rss === undefined)
        throw new Error(`${label}: no VmRSS in /proc/${pid}/status`);
      const run: MemoryRun = {
        id,
        label,
        connections: { wanted: count, answered: Number(ready.answered), openAtSample },
        rssStartBytes: rssStart ?? null,
        rssBeforeBytes: before,
        rssBytes: rss,
        perConnectionBytes: openAtSample > 0 ? (rss - before) / openAtSample : null,
      };
      const errs =
        Array.isArray(ready.errors) && ready.errors.length > 0 ? `; errors: ${ready.errors.join(', ')}` : '';
      const closed = Number(ready.answered) - openAtSample;
      const lost =
        closed > 0
          ? `; ${fmtInt(closed)} answered connections were closed by the proxy before the reading ` +
            '(its idle keep-alive timeout ran out while the rest were answered): the figure does not count for the goal'
          : '';
      process.stdout.write(
        `connected in ${ready.connectMs} ms, answered in ${ready.ms} ms, ${fmtInt(openAtSample)} open: ` +
          `RSS ${rssStart === undefined ? '' : `${fmtMb(rssStart)} at start, `}${fmtMb(before)} after warm-up → ${fmtMb(rss)}` +
          `${run.perConnectionBytes === null ? '' : ` (${(run.perConnectionBytes / 1024).toFixed(1)} KiB per connection)`}${errs}${lost}\n`,
      );
      return run;
    } finally {
      client.proc.stdin?.end();
      await this.children.stop(client, 5_000);
    }
  }

  /**
   * The memory step: a fresh Tether, warmed up by a short wrk run (so its
   * pools and JIT are as after real traffic), then the idle connections;
   * HAProxy the same way, with as many as its descriptor limit allows (it
   * reserves two per connection).
   */
  async memoryStep(): Promise<void> {
    const count = this.s.idleConnections;
    const limit = ownNofileLimit();
    const warm = async (url: string) => {
      if (this.s.warmupS > 0)
        await runWrk(this.children, {
          url,
          threads: this.s.threads,
          connections: this.s.connections,
          durationS: this.s.warmupS,
          cpu: this.s.pin?.load,
        });
    };
    if (limit < fdsNeeded(count)) {
      process.stdout.write(
        `  memory: skipped: open-file limit ${limit} is below the ${fdsNeeded(count)} needed ` +
          `(raise it with \`ulimit -n\`, or lower BENCH_IDLE_CONNECTIONS)\n`,
      );
      return;
    }
    const proxy = await this.startTether({ name: 'tether-proxy (memory)' });
    try {
      const start = rssBytes(proxy.child.proc.pid);
      await warm(`${proxy.url}/`);
      const run = await this.holdIdle(
        'tether',
        'tether-proxy',
        proxy.port,
        proxy.child.proc.pid,
        count,
        start,
      );
      if (run !== undefined) this.memory.push(run);
    } finally {
      await this.stopTether(proxy);
    }
    // HAProxy sizes its descriptors as 2 × maxconn + a few; stay under the limit.
    const haproxyCount = Math.min(count, Math.floor((limit - 200) / 2) - 100);
    if (haproxyCount < 100) return;
    const { child, url } = await this.startHaproxy(haproxyCount + 50);
    try {
      const start = rssBytes(child.proc.pid);
      await warm(url);
      const port = Number(new URL(url).port);
      const run = await this.holdIdle('haproxy', 'haproxy', port, child.proc.pid, haproxyCount, start);
      if (run !== undefined) this.memory.push(run);
    } finally {
      await this.children.stop(child);
    }
  }

  /**
   * The workers step: when tether-proxy has `--workers`, requests/s with 1
   * and {@link WORKERS_MAX} workers, the proxy pinned to cores 0..N-1 and
   * wrk unpinned (on 2 cores the load competes with the proxy: a rough figure).
   */
  async workersStep(): Promise<void> {
    const help = spawnSync(process.execPath, [this.s.tetherEntry, '--help'], { encoding: 'utf8' });
    if (!hasWorkersFlag(`${help.stdout ?? ''}${help.stderr ?? ''}`)) {
      this.workers = { status: 'skipped', reason: 'tether-proxy has no --workers' };
      process.stdout.write('  workers: skipped (tether-proxy has no --workers)\n');
      return;
    }
    const cores = availableParallelism();
    if (cores < WORKERS_MAX) {
      this.workers = { status: 'skipped', reason: `${cores} CPU: nothing to scale to` };
      process.stdout.write(`  workers: skipped (${cores} CPU)\n`);
      return;
    }
    const cpuList = Array.from({ length: WORKERS_MAX }, (_, i) => i).join(',');
    const note = `tether-proxy pinned to cores ${cpuList}, wrk and nginx on any core, new pins; rough on a 2-core machine`;
    process.stdout.write(`  workers: ${note}\n`);
    const nginx = this.nginx as Child;
    repin(nginx, cpuList);
    const runs: Array<{ workers: number; requestsPerS: number; valid: boolean }> = [];
    try {
      for (const n of [1, WORKERS_MAX]) {
        // Explicit ports: workers sharing a port must all be told the same one.
        const listen = `127.0.0.1:${await freePort()}`;
        const admin = `127.0.0.1:${await freePort()}`;
        const proxy = await this.startTether({
          name: `tether-proxy --workers ${n}`,
          launcher: pinPrefix(cpuList),
          extraArgs: ['--workers', String(n), '--listen', listen, '--admin-listen', admin],
        });
        try {
          const run = await this.measure(
            `tether-workers-${n}`,
            `tether --workers ${n}, new pin`,
            note,
            `${proxy.url}/`,
            [],
            proxy.child,
            undefined,
          );
          // Not a per-core figure: kept out of the throughput table and its ratios.
          this.runs.pop();
          runs.push({ workers: n, requestsPerS: run.result.requestsPerS, valid: run.ok });
        } finally {
          await this.stopTether(proxy);
        }
      }
    } finally {
      repin(nginx, this.s.pin?.load);
    }
    const one = runs.find((r) => r.workers === 1);
    const most = runs.find((r) => r.workers === WORKERS_MAX);
    const scaling =
      one?.valid === true && most?.valid === true && one.requestsPerS > 0
        ? most.requestsPerS / one.requestsPerS
        : null;
    this.workers = { status: 'measured', note, runs, scaling, maxWorkers: WORKERS_MAX };
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

function fmtMb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
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

/** The JSON form of a kept wrk run. */
function toThroughputRun(r: RunRecord): ThroughputRun {
  const orNull = (n: number | undefined) => n ?? null;
  return {
    id: r.id,
    label: r.label,
    note: r.note,
    headers: r.headers.map((h) => h.replace(/=.*/, '=…')),
    requestsPerS: Math.round(r.result.requestsPerS),
    requests: r.result.requests,
    durationS: r.result.durationS,
    latencyUs: r.result.latencyUs,
    errors: r.result.errors,
    cpuPercent: {
      proxy: orNull(r.cpu.proxy),
      nginx: orNull(r.cpu.nginx),
      wrk: orNull(r.cpu.wrk),
      other: orNull(r.cpu.other),
      cores: r.cpu.cores,
    },
    attempts: r.attempts,
    valid: r.ok,
    disturbed: isDisturbed(r.cpu),
  };
}

function printThroughput(runs: RunRecord[]): void {
  if (runs.length === 0) return;
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
  const noisy = runs.filter((r) => isDisturbed(r.cpu));
  if (noisy.length > 0)
    process.stdout.write(
      `  WARNING: other processes used more than ${NOISY_OTHER_PCT}% of a core during ` +
        `${noisy.map((r) => r.label).join(', ')}: those figures are disturbed; run again on a quiet machine\n\n`,
    );
  for (const r of runs) {
    const tries = r.attempts > 1 ? ` [measured ${r.attempts} times, the least disturbed run kept]` : '';
    process.stdout.write(`  ${r.label}: ${r.note}${tries}\n`);
  }
}

function printPaced(paced: PacedRun[]): void {
  if (paced.length === 0) return;
  const rows = [
    ['paced target', 'rate', 'sent', 'success', 'p50', 'p90', 'p99', 'max'],
    ...paced.map((p) => [
      p.label + (p.behind ? ' (fell behind)' : '') + (p.disturbed ? ' (disturbed)' : ''),
      fmtInt(p.rate),
      fmtInt(p.achievedRate),
      `${(p.success * 100).toFixed(1)}%`,
      fmtMs(p.latencyUs.p50),
      fmtMs(p.latencyUs.p90),
      fmtMs(p.latencyUs.p99),
      fmtMs(p.latencyUs.max),
    ]),
  ];
  process.stdout.write(
    `\n${table(rows)}\n  (vegeta, open loop at a fixed rate: ${Math.round(PACED_SHARE * 100)}% of HAProxy's ` +
      'saturated new-pin requests/s, new pins; req/s)\n',
  );
}

function printMemory(memory: MemoryRun[]): void {
  if (memory.length === 0) return;
  const rows = [
    ['memory', 'wanted', 'open at reading', 'RSS at start', 'after warm-up', 'with them', 'per connection'],
    ...memory.map((m) => [
      m.label,
      fmtInt(m.connections.wanted),
      fmtInt(m.connections.openAtSample),
      m.rssStartBytes === null ? '-' : fmtMb(m.rssStartBytes),
      fmtMb(m.rssBeforeBytes),
      fmtMb(m.rssBytes),
      m.perConnectionBytes === null ? '-' : `${(m.perConnectionBytes / 1024).toFixed(1)} KiB`,
    ]),
  ];
  process.stdout.write(
    `\n${table(rows)}\n  (VmRSS from /proc/<pid>/status; idle keep-alive connections, one request each)\n`,
  );
}

async function main(): Promise<number> {
  checkNode();
  const s = readSettings();
  setNiceness(s.nice);
  for (const [cmd, args] of [
    ['wrk', ['-v']],
    ['nginx', ['-v']],
    ['haproxy', ['-v']],
  ] as const) {
    if (!haveCommand(cmd, args))
      fail(`${cmd} not found: run \`make bench\` (it installs wrk, haproxy, nginx)`);
  }
  const bench = new Bench(s);
  if (s.steps.includes('paced')) {
    try {
      bench.vegeta = ensureVegeta();
    } catch (err) {
      fail(`${(err as Error).message}: the paced step needs vegeta (or leave it out with BENCH_ONLY)`);
    }
  }
  const versions = {
    node: process.version,
    nginx: firstLineOf('nginx', ['-v']),
    haproxy: firstLineOf('haproxy', ['-v']),
    wrk: firstLineOf('wrk', ['-v']),
    vegeta:
      bench.vegeta === undefined
        ? null
        : (/Version: (\S+)/.exec(firstLineOf(bench.vegeta, ['-version']))?.[1] ?? 'unknown'),
  };
  const cpuModel = /model name\s*:\s*(.*)/.exec(safeRead('/proc/cpuinfo'))?.[1] ?? 'unknown';

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
  // Whatever happens, no nginx, HAProxy, proxy, wrk or vegeta outlives the bench.
  process.once('exit', () => {
    bench.children.killAllNow();
    rmSync(bench.dir, { recursive: true, force: true });
  });
  // Each wrk target: a warm-up, a measurement after a wait for quiet, start-up
  // and checks; plus the run's capped retries, the paced runs, memory, workers.
  const wrkTargetS = s.warmupS + s.durationS + QUIET_WAIT_MS / 1000 + 2;
  const wrkTargets = s.steps.includes('throughput') ? 6 + 2 * PEERS.length : 1;
  const budgetS =
    60 +
    wrkTargets * wrkTargetS +
    MAX_RETRIES_PER_RUN * (s.durationS + QUIET_WAIT_MS / 1000) +
    (s.steps.includes('paced') ? (2 + PEERS.length) * (PACED_WARMUP_S + s.pacedDurationS + 10) : 0) +
    (s.steps.includes('memory') ? 2 * (s.warmupS + 70) : 0) +
    (s.steps.includes('workers') ? 2 * (wrkTargetS + 15) : 0);
  setTimeout(() => bail(1, `the run took longer than its ${budgetS} s budget`), budgetS * 1000).unref();

  const pinText =
    s.pin === undefined
      ? 'not pinned'
      : `proxy (or nginx, direct) on core ${s.pin.server}; wrk, vegeta and, behind a proxy, nginx on core ${s.pin.load}` +
        (s.nice === undefined ? '' : `; all under nice -n ${s.nice}`);
  process.stdout.write(
    `Tether bench (${s.steps.join(', ')}): wrk -t${s.threads} -c${s.connections} -d${s.durationS}s ` +
      `(warm-up ${s.warmupS}s), ${availableParallelism()} CPUs (${cpuModel})\n  ${pinText}\n` +
      `  ${versions.node}, ${versions.nginx}, ${versions.haproxy}, ${versions.wrk}` +
      `${versions.vegeta === null ? '' : `, vegeta ${versions.vegeta}`}\n\n`,
  );

  const started = Date.now();
  try {
    await bench.startBackends();
    if (s.steps.includes('throughput')) await bench.direct();
    if (s.steps.includes('throughput') || s.steps.includes('paced')) {
      await bench.haproxy();
      await bench.tether();
      if (s.steps.includes('throughput')) await bench.bareForwarder();
      for (const peer of PEERS) await bench.peer(peer);
    }
    if (s.steps.includes('memory')) await bench.memoryStep();
    if (s.steps.includes('workers')) await bench.workersStep();
  } catch (err) {
    // After a signal, the failures are the processes we stopped ourselves: not worth printing.
    if (!stopping) process.stderr.write(`\nbench: ${(err as Error).message}\n`);
    await close();
    return 1;
  }
  await close();

  printThroughput(bench.runs);
  printPaced(bench.paced);
  printMemory(bench.memory);
  const w = bench.workers;
  process.stdout.write(
    w.status === 'skipped'
      ? `\n  workers: skipped (${w.reason})\n`
      : `\n  workers (${w.note}): ${w.runs.map((r) => `${r.workers}: ${fmtInt(r.requestsPerS)} req/s`).join(', ')}\n`,
  );

  const results: BenchResults = {
    schemaVersion: RESULTS_SCHEMA_VERSION,
    finishedAt: new Date().toISOString(),
    machine: { cpus: availableParallelism(), cpuModel, ...versions },
    settings: {
      wrk: `wrk -t${s.threads} -c${s.connections} -d${s.durationS}s --timeout 2s`,
      warmupS: s.warmupS,
      pinning: s.pin ?? null,
      nice: s.nice ?? null,
      steps: s.steps,
      pacedDurationS: s.pacedDurationS,
      idleConnections: s.idleConnections,
    },
    floor: FLOOR,
    runs: bench.runs.map(toThroughputRun),
    paced: bench.paced,
    memory: bench.memory,
    workers: bench.workers,
    ratios: [],
  };
  results.ratios = computeRatios(results);
  process.stdout.write(`\n  ratios (same run; goals from issue 12, Tether/HAProxy floor ${FLOOR}):\n`);
  const nameWidth = Math.max(...results.ratios.map((r) => r.name.length));
  for (const r of results.ratios)
    process.stdout.write(`    ${r.name.padEnd(nameWidth)}  ${describeRatio(r)}\n`);
  const bad = bench.runs.filter((r) => !r.ok);
  for (const r of bad)
    process.stdout.write(
      `\n  ${r.label}: ${errorText(r.result)} errors in ${r.result.requests} requests: its figures are not valid`,
    );

  mkdirSync(RESULTS_DIR, { recursive: true });
  const out = join(RESULTS_DIR, 'latest.json');
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(
    `\n  results: ${out} (${Math.round((Date.now() - started) / 1000)} s); \`make bench-readme\` puts them in README.md\n`,
  );
  if (bad.length > 0) return 1;
  const below = belowFloor(results.ratios);
  if (s.enforceFloor && below.length > 0) {
    process.stderr.write(
      `bench: Tether/HAProxy below the ${FLOOR} floor (BENCH_ENFORCE_FLOOR=1): ` +
        `${below.map((r) => `${r.name} ${r.value === null ? 'not measured' : r.value.toFixed(2)}`).join(', ')}\n`,
    );
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
