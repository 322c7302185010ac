/**
 * `make faults-bench`: failed idempotent requests through the proxy when
 * an endpoint fails under load (issue 7, item 4). Not part of `make test`:
 * a run is ~100k requests. Two scenarios, each run `FAULTS_RUNS` times:
 *
 * - `sigkill`: 3 endpoint processes, `FAULTS_CLIENTS` keep-alive clients
 *   (cookie-sticky), one endpoint SIGKILLed at 30 % of the run;
 * - `stale-keepalive`: 3 raw-socket endpoints that close a reused
 *   keep-alive connection with no answer (FIN) for 1 in
 *   `FAULTS_STALE_EVERY` requests arriving on one: the keep-alive race of
 *   RFC 9112 §9.6, made frequent.
 *
 * Prints one line per run, `failed/total`, and a JSON summary at the end.
 * Environment (optional): FAULTS_RUNS (3), FAULTS_REQUESTS (100000),
 * FAULTS_CLIENTS (64), FAULTS_STALE_EVERY (50), FAULTS_SCENARIOS
 * ("sigkill,stale-keepalive").
 */
import {
  type ChildEndpoint,
  type FaultBackend,
  startBackendProcess,
  startFaultBackend,
} from '../test/helpers/fault-backend.ts';
import { drive } from '../test/helpers/load-driver.ts';
import { newCookieKey, poolYaml, scratch, startProxy } from '../test/helpers/proxy-process.ts';

const RUNS = Number(process.env.FAULTS_RUNS ?? 3);
const REQUESTS = Number(process.env.FAULTS_REQUESTS ?? 100_000);
const CLIENTS = Number(process.env.FAULTS_CLIENTS ?? 64);
const STALE_EVERY = Number(process.env.FAULTS_STALE_EVERY ?? 50);
const SCENARIOS = (process.env.FAULTS_SCENARIOS ?? 'sigkill,stale-keepalive').split(',');

interface RunResult {
  scenario: string;
  run: number;
  failed: number;
  total: number;
  failures: Record<string, number>;
  retries: number;
  redispatches: number;
  elapsedMs: number;
}

async function metric(adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const m = new RegExp(`^${name}\\{[^}]*\\} (\\d+)`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
}

async function runOnce(scenario: string, run: number): Promise<RunResult> {
  const s = scratch();
  const procs: ChildEndpoint[] = [];
  const raws: FaultBackend[] = [];
  try {
    let ports: number[];
    if (scenario === 'sigkill') {
      procs.push(...(await Promise.all([0, 1, 2].map((i) => startBackendProcess(`ep-${i}`)))));
      ports = procs.map((p) => p.port);
    } else {
      let reused = 0;
      for (let i = 0; i < 3; i++) {
        const id = `ep-${i}`;
        raws.push(
          await startFaultBackend(id, (req) =>
            req.indexOnConnection > 0 && ++reused % STALE_EVERY === 0
              ? { kind: 'close' }
              : { kind: 'respond', body: { endpoint: id } },
          ),
        );
      }
      ports = raws.map((b) => b.port);
    }
    const config = s.write('pool.yaml', poolYaml(ports.map((port, i) => ({ name: `ep-${i}`, port }))));
    const keys = s.write('keys', `${newCookieKey()}\n`);
    const proxy = await startProxy(['--config', config, '--cookie-keys-file', keys]);
    try {
      let killed = false;
      const r = await drive({
        url: proxy.url,
        clients: CLIENTS,
        total: REQUESTS,
        deadlineMs: 600_000,
        onProgress: (sent) => {
          if (scenario === 'sigkill' && !killed && sent >= REQUESTS * 0.3) {
            killed = true;
            void procs[1]?.kill('SIGKILL');
          }
        },
      });
      const failed = r.sent - r.ok;
      return {
        scenario,
        run,
        failed,
        total: r.sent,
        failures: r.failures,
        retries: await metric(proxy.adminUrl, 'tether_proxy_retries_total'),
        redispatches: await metric(proxy.adminUrl, 'tether_proxy_redispatches_total'),
        elapsedMs: r.elapsedMs,
      };
    } finally {
      await proxy.stop();
    }
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
    await Promise.all(raws.map((b) => b.stop()));
    s.cleanup();
  }
}

const results: RunResult[] = [];
for (const scenario of SCENARIOS) {
  for (let run = 1; run <= RUNS; run++) {
    const r = await runOnce(scenario, run);
    results.push(r);
    process.stdout.write(
      `${scenario.padEnd(16)} run ${run}: failed ${r.failed}/${r.total}` +
        `  (retries ${r.retries}, redispatches ${r.redispatches}, ${(r.elapsedMs / 1000).toFixed(1)} s)` +
        `${r.failed > 0 ? ` ${JSON.stringify(r.failures)}` : ''}\n`,
    );
  }
}
process.stdout.write(`${JSON.stringify({ clients: CLIENTS, requests: REQUESTS, results }, null, 2)}\n`);
process.exit(results.some((r) => r.failed > 0) ? 1 : 0);
