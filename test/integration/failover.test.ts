import { afterEach, describe, expect, it } from 'vitest';
import { type Backend, startBackends } from '../helpers/backends.ts';
import {
  Client,
  get,
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  servedRevision,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';

let backends: Backend[] = [];
let proxies: ProxyProcess[] = [];
let s: Scratch | undefined;

afterEach(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all(backends.map((b) => b.kill().catch(() => {})));
  s?.cleanup();
  proxies = [];
  backends = [];
});

async function setup(spec: Record<string, unknown> = {}, n = 3, copies = 1) {
  backends = await startBackends(n, 'pod');
  s = scratch();
  const keys = s.write('keys', `${newCookieKey()}\n`);
  const eps = backends.map((b) => ({ name: b.id, port: b.port }));
  const config = s.write('pool.yaml', poolYaml(eps, spec));
  for (let i = 0; i < copies; i++)
    proxies.push(await startProxy(['--config', config, '--cookie-keys-file', keys]));
  return { keys, config, eps, proxy: proxies[0] as ProxyProcess };
}

/** 30 clients, each pinned by a first request; returns client → endpoint. */
async function pinClients(url: string, n = 30): Promise<Array<{ client: Client; endpoint: string }>> {
  const out: Array<{ client: Client; endpoint: string }> = [];
  for (let i = 0; i < n; i++) {
    const client = new Client();
    const r = await client.get(`${url}/`);
    expect(r.status).toBe(200);
    out.push({ client, endpoint: r.endpoint as string });
  }
  return out;
}

describe('failover and redispatch', () => {
  it('a killed endpoint: only its clients move, with no error (redispatch), and get a new cookie', async () => {
    const { proxy } = await setup();
    const clients = await pinClients(proxy.url);
    const victim = backends[1] as Backend;
    await victim.kill();
    for (const c of clients) {
      const before = c.client.setCookies.length;
      const r = await c.client.get(`${proxy.url}/after`);
      expect(r.status).toBe(200);
      if (c.endpoint === victim.id) {
        expect(r.endpoint).not.toBe(victim.id);
        expect(c.client.setCookies.length).toBe(before + 1);
      } else {
        expect(r.endpoint).toBe(c.endpoint);
        expect(c.client.setCookies.length).toBe(before);
      }
      // The new pin sticks.
      expect((await c.client.get(`${proxy.url}/again`)).endpoint).toBe(r.endpoint);
    }
    const m = (await get(`${proxy.adminUrl}/metrics`)).text;
    expect(m).toMatch(/tether_proxy_redispatches_total\{pool="default\/shop"\} [1-9]/);
    expect(m).toMatch(/tether_proxy_endpoint_healthy\{pool="default\/shop",endpoint="pod-b"\} 0/);
  });

  it('a POST whose connection is refused is redispatched too: nothing reached the dead endpoint', async () => {
    const { proxy } = await setup();
    const clients = await pinClients(proxy.url, 20);
    const victim = backends[0] as Backend;
    const onVictim = clients.find((c) => c.endpoint === victim.id);
    expect(onVictim).toBeDefined();
    await victim.kill();
    const cookie = `route=${onVictim!.client.jar.get('route')}`;
    const r = await get(`${proxy.url}/orders`, {
      method: 'POST',
      body: 'qty=1',
      headers: { cookie, 'content-type': 'text/plain' },
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).body).toBe('qty=1');
  });

  it('onEndpointFailure Reject answers 503 to clients of a dead endpoint (nginx no_fallback)', async () => {
    const { proxy } = await setup({
      onEndpointFailure: 'Reject',
      healthCheck: { passive: { maxFails: 1, failTimeout: '30s' } },
    });
    const clients = await pinClients(proxy.url);
    const victim = backends[2] as Backend;
    await victim.kill();
    for (const c of clients) {
      // The first request finds the refused connection (502, no redispatch under
      // Reject); later ones see the endpoint marked down (503).
      const first = await c.client.get(`${proxy.url}/`);
      const r = await c.client.get(`${proxy.url}/`);
      if (c.endpoint === victim.id) {
        expect([502, 503]).toContain(first.status);
        expect(r.status).toBe(503);
        expect(r.headers['x-tether-error']).toBe('TETHER_NO_ENDPOINT');
      } else expect(r.status).toBe(200);
    }
  });

  it('active health checks take a failing endpoint out and bring it back', async () => {
    let sick = false;
    backends = await startBackends(2, 'hc', (req, res) => {
      if (req.url === '/healthz' && sick) {
        res.statusCode = 500;
        res.end('sick');
        return true;
      }
      return false;
    });
    s = scratch();
    const config = s.write(
      'pool.yaml',
      poolYaml(
        backends.map((b) => ({ name: b.id, port: b.port })),
        {
          healthCheck: {
            active: {
              path: '/healthz',
              interval: '200ms',
              timeout: '100ms',
              healthyThreshold: 1,
              unhealthyThreshold: 1,
            },
          },
        },
      ),
    );
    const proxy = await startProxy(['--config', config]);
    proxies.push(proxy);
    const metric = async (ep: string) =>
      (await get(`${proxy.adminUrl}/metrics`)).text.includes(
        `tether_proxy_endpoint_healthy{pool="default/shop",endpoint="${ep}"} 1`,
      );
    await waitFor(async () => (await metric('hc-a')) && (await metric('hc-b')), 5_000, 'both healthy');
    sick = true;
    // Each endpoint's checks run on their own timer: wait for both, not just the first.
    await waitFor(
      async () => !(await metric('hc-a')) && !(await metric('hc-b')),
      5_000,
      'endpoints marked down',
    );
    // Both down: nothing healthy to route to.
    expect((await get(`${proxy.url}/`)).status).toBe(503);
    sick = false;
    await waitFor(async () => (await get(`${proxy.url}/`)).status === 200, 5_000, 'recovery');
    expect((await get(`${proxy.adminUrl}/metrics`)).text).toMatch(
      /tether_proxy_health_checks_total\{pool="default\/shop",endpoint="hc-a",result="failure"\} [1-9]/,
    );
  });
});

describe('two proxy processes with the same table and keys', () => {
  it('follow the same cookies and re-pin every client of a dead endpoint to the same endpoint', async () => {
    await setup({}, 4, 2);
    const [p1, p2] = proxies as [ProxyProcess, ProxyProcess];
    const clients = await pinClients(p1.url, 40);
    for (const c of clients)
      expect(
        (await get(`${p2.url}/`, { headers: { cookie: `route=${c.client.jar.get('route')}` } })).endpoint,
      ).toBe(c.endpoint);
    const victim = backends[3] as Backend;
    await victim.kill();
    let moved = 0;
    for (const c of clients) {
      const cookie = { cookie: `route=${c.client.jar.get('route')}` };
      const a = await get(`${p1.url}/`, { headers: cookie });
      const b = await get(`${p2.url}/`, { headers: cookie });
      expect(a.status).toBe(200);
      expect(b.endpoint).toBe(a.endpoint);
      if (c.endpoint === victim.id) moved++;
      else expect(a.endpoint).toBe(c.endpoint);
    }
    expect(moved).toBeGreaterThan(0);
  });

  it('ClientIP: each source address lands on the same endpoint through either proxy', async () => {
    await setup({ affinity: { type: 'ClientIP', clientIP: { ipv4PrefixLength: 32 } } }, 3, 2);
    const [p1, p2] = proxies as [ProxyProcess, ProxyProcess];
    const seen = new Set<string>();
    for (let i = 2; i < 20; i++) {
      const from = `127.0.0.${i}`;
      const a = await get(`${p1.url}/`, { from });
      for (let k = 0; k < 5; k++) expect((await get(`${p1.url}/`, { from })).endpoint).toBe(a.endpoint);
      expect((await get(`${p2.url}/`, { from })).endpoint).toBe(a.endpoint);
      seen.add(a.endpoint as string);
    }
    expect(seen.size).toBe(3);
  });
});

describe('draining', () => {
  it('a draining endpoint keeps its pinned clients and gets no new ones; after the timeout they move', async () => {
    const { config, eps, proxy } = await setup({ draining: { timeout: '2s' } });
    const clients = await pinClients(proxy.url);
    const target = eps[0]!.name;
    const rev = await servedRevision(proxy);
    s!.write(
      'pool.yaml',
      poolYaml(
        eps.map((e) => ({ ...e, draining: e.name === target })),
        { draining: { timeout: '2s' } },
      ),
    );
    expect(config).toContain('pool.yaml');
    await waitFor(async () => (await servedRevision(proxy)) === (rev as number) + 1, 5_000, 'the reload');
    for (const c of clients) expect((await c.client.get(`${proxy.url}/`)).endpoint).toBe(c.endpoint);
    for (let i = 0; i < 40; i++) expect((await new Client().get(`${proxy.url}/`)).endpoint).not.toBe(target);
    await new Promise((r) => setTimeout(r, 2_100));
    for (const c of clients) {
      const r = await c.client.get(`${proxy.url}/`);
      expect(r.status).toBe(200);
      expect(r.endpoint).not.toBe(target);
    }
    expect((await get(`${proxy.adminUrl}/metrics`)).text).toMatch(
      /outcome="repin",reason="draining"\} [1-9]/,
    );
  });
});
