import { connect } from 'node:net';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackend, startBackends } from '../helpers/backends.ts';
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

let backends: Backend[];
let s: Scratch;
let keys: string;

beforeAll(async () => {
  backends = await startBackends(3, 'dp');
  s = scratch();
  keys = s.write('keys', `${newCookieKey()}\n`);
});

afterAll(async () => {
  await Promise.all(backends.map((b) => b.kill().catch(() => {})));
  s.cleanup();
});

const eps = () => backends.map((b) => ({ name: b.id, port: b.port }));

async function withProxy<T>(
  spec: Record<string, unknown>,
  fn: (p: ProxyProcess) => Promise<T>,
  flags: string[] = [],
  endpoints = eps(),
): Promise<T> {
  const file = s.write(`pool-${Math.random().toString(36).slice(2)}.yaml`, poolYaml(endpoints, spec));
  const p = await startProxy(['--config', file, '--cookie-keys-file', keys, ...flags]);
  try {
    return await fn(p);
  } finally {
    await p.stop();
  }
}

/** Opens a WebSocket through the proxy and resolves with the first message (the endpoint id). */
function wsFirstMessage(url: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    const timer = setTimeout(() => reject(new Error('no WebSocket message in 5 s')), 5_000);
    ws.addEventListener('message', (e) => {
      clearTimeout(timer);
      resolve(String(e.data));
      ws.close();
    });
    ws.addEventListener('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`WebSocket error: ${(e as { message?: string }).message ?? 'unknown'}`));
    });
  });
}

/** A WebSocket handshake by hand: the 101's Set-Cookie, and the first frame's text (the endpoint id). */
function rawUpgrade(port: number): Promise<{ status: number; setCookie: string | undefined; first: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no 101 and frame in 5 s: ${buf.toString('latin1')}`));
    }, 5_000);
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0 || buf.length < end + 6) return;
      const head = buf.subarray(0, end).toString('latin1');
      const frame = buf.subarray(end + 4);
      const len = (frame[1] as number) & 0x7f;
      if (frame.length < 2 + len) return;
      clearTimeout(timer);
      sock.destroy();
      resolve({
        status: Number(head.split(' ')[1]),
        setCookie: /^set-cookie: (.*)$/im.exec(head)?.[1],
        first: frame.subarray(2, 2 + len).toString('utf8'),
      });
    });
    sock.write(
      'GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
  });
}

describe('WebSocket upgrades', () => {
  it('follow the cookie pin of the page that set it', async () => {
    await withProxy({}, async (p) => {
      for (let i = 0; i < 6; i++) {
        const c = new Client();
        const page = await c.get(`${p.url}/`);
        const msg = await wsFirstMessage(`ws://127.0.0.1:${p.port}/live`, {
          cookie: `route=${c.jar.get('route')}`,
        });
        expect(msg).toBe(page.endpoint);
      }
    });
  });

  it('a first WebSocket without a cookie gets one on its 101, and reconnects land on the same endpoint', async () => {
    await withProxy({}, async (p) => {
      const { status, setCookie, first } = await rawUpgrade(p.port);
      expect(status).toBe(101);
      expect(setCookie).toMatch(/^route=[A-Za-z0-9_-]{62}; Path=\/; HttpOnly; SameSite=Lax$/);
      const cookie = (setCookie as string).split(';')[0] as string;
      for (let i = 0; i < 4; i++)
        expect(await wsFirstMessage(`ws://127.0.0.1:${p.port}/live`, { cookie })).toBe(first);
      // And a plain request with it too.
      expect((await get(`${p.url}/`, { headers: { cookie } })).endpoint).toBe(first);
    });
  });

  it('follow ClientIP affinity', async () => {
    await withProxy({ affinity: { type: 'ClientIP' } }, async (p) => {
      const page = await get(`${p.url}/`);
      for (let i = 0; i < 3; i++)
        expect(await wsFirstMessage(`ws://127.0.0.1:${p.port}/live`)).toBe(page.endpoint);
      await waitFor(
        async () =>
          /tether_proxy_open_websockets\{pool="default\/shop"\} 0/.test(
            (await get(`${p.adminUrl}/metrics`)).text,
          ),
        5_000,
        'WebSockets closed',
      );
    });
  });
});

describe('weights', () => {
  it('new pins follow endpoint weights 1:1:4 (300 new clients, each share within 0.1)', async () => {
    const weighted = eps().map((e, i) => ({ ...e, weight: i === 2 ? 4 : 1 }));
    await withProxy(
      {},
      async (p) => {
        const counts = new Map<string, number>();
        for (let i = 0; i < 300; i++) {
          const r = await get(`${p.url}/`);
          counts.set(r.endpoint as string, (counts.get(r.endpoint as string) ?? 0) + 1);
        }
        const share = (id: string) => (counts.get(id) ?? 0) / 300;
        expect(Math.abs(share(backends[0]!.id) - 1 / 6)).toBeLessThan(0.1);
        expect(Math.abs(share(backends[1]!.id) - 1 / 6)).toBeLessThan(0.1);
        expect(Math.abs(share(backends[2]!.id) - 4 / 6)).toBeLessThan(0.1);
      },
      [],
      weighted,
    );
  });
});

describe('ClientIP affinity', () => {
  it('/24 by default (nginx ip_hash): every 127.0.0.x lands on one endpoint', async () => {
    await withProxy({ affinity: { type: 'ClientIP' } }, async (p) => {
      const seen = new Set<string>();
      for (let i = 2; i < 12; i++)
        seen.add((await get(`${p.url}/`, { from: `127.0.0.${i}` })).endpoint as string);
      expect(seen.size).toBe(1);
    });
  });

  it('X-Forwarded-For is ignored from untrusted peers and believed from trusted ones; malformed falls back to the peer', async () => {
    const spec = (trusted: string[]) => ({
      affinity: { type: 'ClientIP', clientIP: { ipv4PrefixLength: 32, trustedProxies: trusted } },
    });
    await withProxy(spec([]), async (p) => {
      const base = (await get(`${p.url}/`)).endpoint;
      for (let i = 1; i < 30; i++)
        expect((await get(`${p.url}/`, { headers: { 'x-forwarded-for': `198.51.100.${i}` } })).endpoint).toBe(
          base,
        );
    });
    await withProxy(spec(['127.0.0.1/32']), async (p) => {
      const seen = new Set<string>();
      for (let i = 1; i < 30; i++) {
        const xff = `198.51.100.${i}`;
        const a = await get(`${p.url}/`, { headers: { 'x-forwarded-for': xff } });
        expect((await get(`${p.url}/`, { headers: { 'x-forwarded-for': xff } })).endpoint).toBe(a.endpoint);
        seen.add(a.endpoint as string);
      }
      expect(seen.size).toBe(3);
      const peer = (await get(`${p.url}/`)).endpoint;
      for (const bad of ['banana', '1.2.3.4.5, 10.0.0.1', ',,,', '999.1.1.1', 'x'.repeat(3000)]) {
        const r = await get(`${p.url}/`, { headers: { 'x-forwarded-for': bad } });
        expect(r.status).toBe(200);
        expect(r.endpoint).toBe(peer);
      }
    });
  });
});

describe('Header affinity', () => {
  it('pins on the header value; a missing or malformed header gets a fresh pin, never an error', async () => {
    await withProxy({ affinity: { type: 'Header', header: { name: 'X-Session-Id' } } }, async (p) => {
      const seen = new Set<string>();
      for (let u = 0; u < 30; u++) {
        const h = { 'x-session-id': `user-${u}` };
        const a = await get(`${p.url}/`, { headers: h });
        for (let k = 0; k < 3; k++)
          expect((await get(`${p.url}/`, { headers: h })).endpoint).toBe(a.endpoint);
        seen.add(a.endpoint as string);
      }
      expect(seen.size).toBe(3);
      expect((await get(`${p.url}/`)).status).toBe(200);
      expect((await get(`${p.url}/`, { headers: { 'x-session-id': 'x'.repeat(5000) } })).status).toBe(200);
      const m = (await get(`${p.adminUrl}/metrics`)).text;
      expect(m).toMatch(/outcome="new",reason="missing"\} 1/);
      expect(m).toMatch(/outcome="new",reason="invalid"\} 1/);
    });
  });
});

describe('errors are mapped in one place, and the proxy survives them', () => {
  it('upstream timeout → 504', async () => {
    await withProxy(
      {},
      async (p) => {
        const r = await get(`${p.url}/slow?ms=3000`);
        expect(r.status).toBe(504);
        expect(r.headers['x-tether-error']).toBe('TETHER_UPSTREAM_TIMEOUT');
      },
      ['--read-timeout', '300ms'],
    );
  });

  it('connection reset by the endpoint → 502; the next request is fine', async () => {
    await withProxy(
      { healthCheck: { passive: { maxFails: 0 } } },
      async (p) => {
        const r = await get(`${p.url}/reset`, { method: 'POST', body: 'x' });
        expect(r.status).toBe(502);
        expect(r.headers['x-tether-error']).toBe('TETHER_UPSTREAM_RESET');
        expect((await get(`${p.url}/`)).status).toBe(200);
      },
      [],
      [eps()[0]!],
    );
  });

  it('no endpoint left → 503 with Retry-After', async () => {
    const lone = await startBackend('lone');
    await lone.kill();
    await withProxy(
      {},
      async (p) => {
        const first = await get(`${p.url}/`);
        expect(first.status).toBe(502);
        const r = await get(`${p.url}/`);
        expect(r.status).toBe(503);
        expect(r.headers['retry-after']).toBe('1');
        expect(r.text).not.toMatch(/at .*\.ts/);
      },
      [],
      [{ name: 'lone', port: lone.port }],
    );
  });

  it('clients that abort mid-request or send garbage do not crash it', async () => {
    await withProxy({}, async (p) => {
      for (let i = 0; i < 20; i++) {
        const ac = new AbortController();
        const pending = get(`${p.url}/slow?ms=500`).catch(() => undefined);
        void pending;
        const sock = connect(p.port, '127.0.0.1');
        sock.on('error', () => {});
        sock.write(i % 2 === 0 ? 'GET /slow?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n' : 'NOT HTTP AT ALL\r\n\r\n');
        await new Promise((r) => setTimeout(r, 20));
        sock.destroy();
        ac.abort();
      }
      const raw = await new Promise<string>((resolve) => {
        const sock = connect(p.port, '127.0.0.1');
        let out = '';
        sock.on('data', (d) => {
          out += d.toString();
        });
        sock.on('close', () => resolve(out));
        sock.on('error', () => resolve(out));
        sock.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n');
      });
      expect(raw).toMatch(/^HTTP\/1\.1 400/);
      expect((await get(`${p.url}/`)).status).toBe(200);
      expect(p.child.exitCode).toBeNull();
    });
  });

  it('a streaming upload and a large response pass through intact', async () => {
    await withProxy({}, async (p) => {
      const body = 'z'.repeat(2 * 1024 * 1024);
      const r = await get(`${p.url}/upload`, { method: 'PUT', body });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.text).body.length).toBe(body.length);
    });
  });
});

describe('SIGTERM', () => {
  it('stops accepting, finishes requests in flight, exits 0', async () => {
    const file = s.write('term.yaml', poolYaml(eps()));
    const p = await startProxy(['--config', file, '--shutdown-timeout', '5s']);
    const inflight = get(`${p.url}/slow?ms=800`);
    await new Promise((r) => setTimeout(r, 200));
    p.child.kill('SIGTERM');
    const r = await inflight;
    expect(r.status).toBe(200);
    expect(await p.exited).toBe(0);
    await expect(get(`${p.url}/`)).rejects.toThrow();
  });

  it('cuts what is left after the shutdown timeout, still exiting 0', async () => {
    const file = s.write('term2.yaml', poolYaml(eps()));
    const p = await startProxy(['--config', file, '--shutdown-timeout', '300ms']);
    const inflight = get(`${p.url}/slow?ms=5000`).then(
      (r) => r.status,
      () => 'cut',
    );
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(4_000);
    expect(await inflight).toBe('cut');
  });
});
