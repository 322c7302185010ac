import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
} from '../helpers/proxy-process.ts';

let backends: Backend[];
let s: Scratch;
let proxy: ProxyProcess;
let permanent: ProxyProcess;

beforeAll(async () => {
  backends = await startBackends(3, 'shop');
  s = scratch();
  const eps = backends.map((b) => ({ name: b.id, port: b.port }));
  const keys = s.write('keys', `${newCookieKey()}\n`);
  const session = s.write(
    'session.yaml',
    poolYaml(eps, {
      affinity: { cookie: { idleTimeout: '30m' } },
      healthCheck: { passive: { maxFails: 0 } },
    }),
  );
  const perm = s.write(
    'permanent.yaml',
    poolYaml(
      eps,
      {
        affinity: {
          cookie: {
            name: 'SRV',
            lifetimeType: 'Permanent',
            absoluteTimeout: '2h',
            secure: 'Always',
            sameSite: 'Strict',
            httpOnly: false,
            domain: 'example.test',
            path: '/app',
          },
        },
      },
      'shop-permanent',
    ),
  );
  proxy = await startProxy(['--config', session, '--cookie-keys-file', keys]);
  permanent = await startProxy(['--config', perm, '--cookie-keys-file', keys]);
});

afterAll(async () => {
  await Promise.all([proxy?.stop(), permanent?.stop()]);
  await Promise.all(backends.map((b) => b.kill()));
  s.cleanup();
});

describe('Cookie affinity against real backends', () => {
  it('60 requests of one client stay on one endpoint; the cookie is set once', async () => {
    const c = new Client();
    const seen = new Set<string>();
    for (let i = 0; i < 60; i++) {
      const r = await c.get(`${proxy.url}/cart/${i}`);
      expect(r.status).toBe(200);
      seen.add(r.endpoint as string);
    }
    expect(seen.size).toBe(1);
    expect(c.setCookies).toHaveLength(1);
  });

  it('many clients spread over every endpoint', async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const r = await new Client().get(`${proxy.url}/`);
      counts.set(r.endpoint as string, (counts.get(r.endpoint as string) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual(backends.map((b) => b.id).sort());
    for (const n of counts.values()) expect(n).toBeGreaterThan(5);
  });

  it('Session lifetime: no Expires or Max-Age; HttpOnly, SameSite=Lax, Path=/, no Secure over plain http', async () => {
    const c = new Client();
    await c.get(`${proxy.url}/`);
    const line = c.setCookies[0] as string;
    expect(line).toMatch(/^route=[A-Za-z0-9_-]{62}; Path=\/; HttpOnly; SameSite=Lax$/);
    expect(line).not.toMatch(/Expires|Max-Age|Secure|Domain/i);
  });

  it('Permanent lifetime: Max-Age = absoluteTimeout, and every other attribute as configured', async () => {
    const c = new Client();
    await c.get(`${permanent.url}/app`);
    expect(c.setCookies[0]).toMatch(
      /^SRV=[A-Za-z0-9_-]{62}; Path=\/app; Domain=example.test; Max-Age=7200; Secure; SameSite=Strict$/,
    );
  });

  it('the cookie reveals no address or endpoint id', async () => {
    const c = new Client();
    await c.get(`${proxy.url}/`);
    const raw = Buffer.from(c.jar.get('route') as string, 'base64url').toString('latin1');
    for (const b of backends) {
      expect(raw).not.toContain(b.id);
      expect(raw).not.toContain(String(b.port));
    }
    expect(raw).not.toContain('127.0.0.1');
  });

  it.each([
    { desc: 'garbage', cookie: 'route=garbage' },
    { desc: 'empty', cookie: 'route=' },
    { desc: 'right length, bad signature', cookie: `route=${'A'.repeat(62)}` },
    { desc: 'binary junk', cookie: 'route=%00%ff%fe' },
    { desc: 'huge', cookie: `route=${'x'.repeat(6000)}` },
    { desc: 'unparseable header', cookie: ';;==;route' },
  ])('malformed cookie ($desc) is no cookie: 200, a fresh pin and a new Set-Cookie', async ({ cookie }) => {
    const r = await get(`${proxy.url}/`, { headers: { cookie } });
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toMatch(/^route=[A-Za-z0-9_-]{62};/);
  });

  it('a cookie from another pool (the other proxy, same keys) is foreign: re-pinned, not followed', async () => {
    const c = new Client();
    await c.get(`${permanent.url}/app`);
    const r = await get(`${proxy.url}/`, { headers: { cookie: `route=${c.jar.get('SRV')}` } });
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toBeDefined();
    const m = await get(`${proxy.adminUrl}/metrics`);
    expect(m.text).toMatch(
      /tether_proxy_affinity_decisions_total\{pool="default\/shop",outcome="repin",reason="invalid"\} [1-9]/,
    );
  });

  it('a tampered cookie is re-pinned', async () => {
    const c = new Client();
    await c.get(`${proxy.url}/`);
    const v = c.jar.get('route') as string;
    const flipped = `${v.slice(0, 20)}${v[20] === 'A' ? 'B' : 'A'}${v.slice(21)}`;
    const r = await get(`${proxy.url}/`, { headers: { cookie: `route=${flipped}` } });
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toBeDefined();
  });

  it('forwards X-Forwarded-For/-Proto/-Host, keeps Host, drops hop-by-hop headers', async () => {
    // node:http, not undici: undici refuses to send hop-by-hop headers at all.
    const text = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${proxy.url}/h`, {
        headers: {
          'x-forwarded-for': '198.51.100.7',
          connection: 'keep-alive, x-secret',
          'x-secret': 's',
          'keep-alive': 'timeout=5',
          'proxy-authorization': 'Basic eA==',
        },
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    const seen = JSON.parse(text).headers as Record<string, string>;
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('198.51.100.7, 127.0.0.1');
    expect(seen['x-forwarded-proto']).toBe('http');
    expect(seen['x-forwarded-host']).toBe(`127.0.0.1:${proxy.port}`);
    expect(seen.host).toBe(`127.0.0.1:${proxy.port}`);
    expect(seen['x-secret']).toBeUndefined();
    expect(seen['keep-alive']).toBeUndefined();
  });

  it('forwards request bodies and methods', async () => {
    const r = await get(`${proxy.url}/orders`, {
      method: 'POST',
      body: 'a=1&b=2',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).body).toBe('a=1&b=2');
  });

  it('metrics carry no client address or cookie value', async () => {
    const c = new Client();
    await c.get(`${proxy.url}/`);
    const m = await get(`${proxy.adminUrl}/metrics`);
    expect(m.text).toContain('tether_proxy_requests_total{pool="default/shop"');
    expect(m.text).toContain('tether_proxy_upstream_duration_seconds_bucket{le="0.0001"');
    expect(m.text).not.toContain(c.jar.get('route') as string);
    expect(m.text).not.toMatch(/127\.0\.0\.1/);
  });
});
