import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackends } from '../helpers/backends.ts';
import { metricsComplaints, promtool } from '../helpers/promtool.ts';
import {
  Client,
  get,
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';

// `promtool check metrics` (Debian's prometheus package, installed by `make
// test`) lints a real proxy's /metrics the way Prometheus' own tooling does:
// names, units, _total suffixes, HELP text. The chart's PodMonitor scrapes
// exactly this page.
let backends: Backend[];
let s: Scratch;
let proxy: ProxyProcess;

beforeAll(async () => {
  backends = await startBackends(2, 'lint');
  s = scratch();
  proxy = await startProxy([
    '--config',
    s.write(
      'pool.yaml',
      poolYaml(
        backends.map((b) => ({ name: b.id, port: b.port })),
        { healthCheck: { active: { path: '/', interval: '1s', timeout: '500ms' } } },
      ),
    ),
    '--cookie-keys-file',
    s.write('keys', `${newCookieKey()}\n`),
  ]);
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await Promise.all((backends ?? []).map((b) => b.kill()));
  s?.cleanup();
});

describe('promtool check metrics', () => {
  it('accepts the proxy /metrics after traffic (every labelled series present)', async () => {
    const c = new Client();
    for (let i = 0; i < 5; i++) expect((await c.get(`${proxy.url}/`)).status).toBe(200);
    const page = (await get(`${proxy.adminUrl}/metrics`)).text;
    for (const name of ['tether_proxy_requests_total', 'tether_proxy_upstream_duration_seconds_bucket'])
      expect(page).toContain(name);
    expect(metricsComplaints(page)).toEqual([]);
  });

  it('is a real check: it refuses a page with a badly named counter', () => {
    const bad =
      '# HELP tether_bad_requests A counter without _total.\n# TYPE tether_bad_requests counter\ntether_bad_requests 1\n';
    const r = promtool(['check', 'metrics'], bad);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/_total/);
  });
});
