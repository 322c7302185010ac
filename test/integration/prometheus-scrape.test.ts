import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { freePort } from '../../tools/free-port.ts';
import { type Backend, startBackends } from '../helpers/backends.ts';
import {
  Client,
  get,
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';

// A real Prometheus (Debian's, installed by `make test`) scrapes the proxy's
// /metrics: what a cluster user's ServiceMonitor will do.
const children = new ChildProcesses();
process.once('exit', () => children.killAllNow());

let backends: Backend[];
let s: Scratch;
let proxy: ProxyProcess;
let promUrl: string;

interface PromVector {
  status: string;
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

async function query(expr: string): Promise<PromVector['data']['result']> {
  const r = await get(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  expect(r.status).toBe(200);
  return (JSON.parse(r.text) as PromVector).data.result;
}

beforeAll(async () => {
  const version = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  if (version.status !== 0)
    throw new Error('prometheus is not installed: `make test` installs it (Debian package prometheus)');
  backends = await startBackends(2, 'prom');
  s = scratch();
  const keys = s.write('keys', `${newCookieKey()}\n`);
  proxy = await startProxy([
    '--config',
    s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port })))),
    '--cookie-keys-file',
    keys,
  ]);
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const config = s.write(
    'prometheus.yml',
    `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: tether-proxy\n    static_configs: [{ targets: ['127.0.0.1:${proxy.adminPort}'] }]\n`,
  );
  children.spawn('prometheus', 'prometheus', [
    `--config.file=${config}`,
    `--storage.tsdb.path=${s.dir}/tsdb`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
  ]);
  await waitFor(
    async () => (await get(`${promUrl}/-/ready`).catch(() => ({ status: 0 }))).status === 200,
    20_000,
    'Prometheus ready',
  );
}, 60_000);

afterAll(async () => {
  await children.stopAll();
  await proxy?.stop();
  await Promise.all((backends ?? []).map((b) => b.kill()));
  s?.cleanup();
});

describe('a real Prometheus scraping the proxy', () => {
  it('scrapes /metrics without errors and sees requests, decisions, latency and the table revision', async () => {
    for (let i = 0; i < 5; i++) {
      const c = new Client();
      for (let k = 0; k < 6; k++) expect((await c.get(`${proxy.url}/`)).status).toBe(200);
    }
    await waitFor(
      async () =>
        Number((await query('sum(tether_proxy_requests_total{pool="default/shop"})'))[0]?.value[1] ?? 0) >=
        30,
      20_000,
      'the requests to show up in Prometheus',
    );
    const targets = JSON.parse((await get(`${promUrl}/api/v1/targets`)).text) as {
      data: { activeTargets: Array<{ health: string; lastError: string }> };
    };
    expect(targets.data.activeTargets).toHaveLength(1);
    expect(targets.data.activeTargets[0]).toMatchObject({ health: 'up', lastError: '' });

    const decisions = await query(
      'sum by (outcome) (tether_proxy_affinity_decisions_total{pool="default/shop"})',
    );
    expect(Object.fromEntries(decisions.map((d) => [d.metric.outcome, Number(d.value[1])]))).toEqual({
      new: 5,
      hit: 25,
    });
    expect((await query('tether_proxy_routing_table_revision'))[0]?.value[1]).toBe('1');
    expect(
      Number((await query('sum(tether_proxy_upstream_duration_seconds_count)'))[0]?.value[1]),
    ).toBeGreaterThanOrEqual(30);
    expect((await query('tether_proxy_endpoint_healthy')).map((r) => r.metric.endpoint).sort()).toEqual([
      'prom-a',
      'prom-b',
    ]);
    expect((await query('tether_proxy_process_resident_memory_bytes')).length).toBe(1);
  });
});
