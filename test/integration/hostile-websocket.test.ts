/**
 * The WebSocket path under attack and faults (issue 7, item 6): the same
 * header hygiene as plain HTTP, bounded connect and handshake times, an idle
 * tunnel timeout, and no HTTP bytes written into an established tunnel.
 * Raw sockets, since WebSocket clients hide the handshake's bytes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUnacceptingEndpoint, startWsEndpoint, type WsEndpoint } from '../helpers/hostile-endpoints.ts';
import { type ProxyProcess, poolYaml, type Scratch, scratch, startProxy } from '../helpers/proxy-process.ts';
import { parseResponses, RawConnection, rawExchange, upgradeRequest } from '../helpers/raw-client.ts';

let s: Scratch;
let ws: WsEndpoint;

beforeAll(async () => {
  s = scratch();
  ws = await startWsEndpoint();
});

afterAll(async () => {
  await ws.close();
  s.cleanup();
});

async function withProxy<T>(
  endpoints: { name: string; port: number }[],
  flags: string[],
  fn: (p: ProxyProcess) => Promise<T>,
): Promise<T> {
  const file = s.write(`pool-${Math.random().toString(36).slice(2)}.yaml`, poolYaml(endpoints));
  const p = await startProxy(['--config', file, ...flags]);
  try {
    return await fn(p);
  } finally {
    await p.stop();
  }
}

describe('WebSocket handshake headers', () => {
  it('hop-by-hop headers and a client’s forwarded claims never reach the endpoint', async () => {
    await withProxy([{ name: 'ws', port: ws.port }], [], async (p) => {
      ws.mode = 'answer';
      const before = ws.seen.length;
      const c = await RawConnection.open(p.port);
      c.write(
        [
          'GET /ws HTTP/1.1',
          'Host: shop.example',
          'Upgrade: websocket',
          'Connection: Upgrade, X-Hop',
          'X-Hop: 1',
          'TE: trailers',
          'Keep-Alive: timeout=5',
          'Proxy-Authorization: Basic dXNlcjpwYXNz',
          'X-Forwarded-Host: evil.example',
          'X-Forwarded-Proto: https',
          'X-Forwarded-Port: 1',
          'X-Forwarded-For: 6.6.6.6',
          'X-Real-IP: 6.6.6.6',
          'Forwarded: for=6.6.6.6',
          'True-Client-IP: 6.6.6.6',
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
          'Sec-WebSocket-Version: 13',
          '',
          '',
        ].join('\r\n'),
      );
      expect(await c.waitFor((x) => x.received.includes('hello'), 5_000)).toBe(true);
      c.destroy();
      expect(c.received.toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
      const h = ws.seen[before] ?? {};
      for (const gone of ['x-hop', 'te', 'keep-alive', 'proxy-authorization', 'forwarded', 'true-client-ip'])
        expect(h[gone], gone).toBeUndefined();
      expect(h).toMatchObject({
        host: 'shop.example',
        upgrade: 'websocket',
        connection: 'Upgrade',
        'x-forwarded-host': 'shop.example',
        'x-forwarded-proto': 'http',
        'x-forwarded-port': String(p.port),
        'x-forwarded-for': '6.6.6.6, 127.0.0.1',
        'x-real-ip': '127.0.0.1',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      });
    });
  });

  it('headers the endpoint’s 101 names in Connection never reach the client', async () => {
    await withProxy([{ name: 'ws', port: ws.port }], [], async (p) => {
      ws.mode = 'answer';
      ws.extra101 = ['Connection: X-Secret', 'X-Secret: internal', 'Keep-Alive: timeout=9'];
      try {
        const c = await RawConnection.open(p.port);
        c.write(upgradeRequest());
        expect(await c.waitFor((x) => x.received.includes('hello'), 5_000)).toBe(true);
        c.destroy();
        const [r] = parseResponses(c.received).responses;
        expect(r?.status).toBe(101);
        expect(r?.headers['x-secret']).toBeUndefined();
        expect(r?.headers['keep-alive']).toBeUndefined();
        expect(r?.headers.upgrade).toEqual(['websocket']);
        expect(r?.headers.connection).toEqual(['Upgrade']);
      } finally {
        ws.extra101 = [];
      }
    });
  });

  it('an endpoint refusing the upgrade in plain HTTP: its answer reaches the client without the headers it named in Connection', async () => {
    await withProxy([{ name: 'ws', port: ws.port }], [], async (p) => {
      ws.mode = 'refuse';
      try {
        const r = await rawExchange(p.port, upgradeRequest());
        expect(r.responses[0]?.status).toBe(403);
        expect(r.responses[0]?.body.toString()).toBe('refused');
        expect(r.responses[0]?.headers['x-secret']).toBeUndefined();
      } finally {
        ws.mode = 'answer';
      }
    });
  });

  it.each([
    { desc: 'a POST with Upgrade: websocket', req: upgradeRequest('/ws', [], 'POST'), want: 400 },
    {
      desc: 'an h2c upgrade',
      req: 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
      want: 400,
    },
  ])('$desc is refused with $want, and nothing reaches the endpoint', async ({ req, want }) => {
    await withProxy([{ name: 'ws', port: ws.port }], [], async (p) => {
      const before = ws.seen.length;
      const r = await rawExchange(p.port, req);
      expect(r.responses[0]?.status).toBe(want);
      expect(ws.seen.length).toBe(before);
    });
  });
});

describe('WebSocket timeouts', () => {
  it('an endpoint that accepts but never answers the handshake: 504 after --read-timeout, never a hang', async () => {
    await withProxy([{ name: 'ws', port: ws.port }], ['--read-timeout', '500ms'], async (p) => {
      ws.mode = 'silent';
      try {
        const r = await rawExchange(p.port, upgradeRequest(), 10_000);
        expect(r.ending).not.toBe('open');
        expect(r.responses[0]?.status).toBe(504);
      } finally {
        ws.mode = 'answer';
      }
    });
  });

  it('an endpoint whose connect never completes: 504 after --connect-timeout', async () => {
    const dead = await startUnacceptingEndpoint();
    try {
      await withProxy([{ name: 'dead', port: dead.port }], ['--connect-timeout', '300ms'], async (p) => {
        const r = await rawExchange(p.port, upgradeRequest(), 10_000);
        expect(r.ending).not.toBe('open');
        expect(r.responses[0]?.status).toBe(504);
      });
    } finally {
      dead.close();
    }
  });

  it('an idle tunnel is closed after --tunnel-timeout; a busy one is not', async () => {
    await withProxy([{ name: 'ws', port: ws.port }], ['--tunnel-timeout', '600ms'], async (p) => {
      ws.mode = 'answer';
      const idle = await RawConnection.open(p.port);
      const busy = await RawConnection.open(p.port);
      idle.write(upgradeRequest());
      busy.write(upgradeRequest());
      expect(await idle.waitFor((x) => x.received.includes('hello'), 5_000)).toBe(true);
      expect(await busy.waitFor((x) => x.received.includes('hello'), 5_000)).toBe(true);
      // The busy client sends a masked ping-sized frame every 150 ms (the endpoint ignores it).
      const ticker = setInterval(() => busy.write(Buffer.from([0x89, 0x80, 1, 2, 3, 4])), 150);
      try {
        expect(await idle.waitEnd(10_000)).toBe(true);
        expect(busy.ending).toBe('open');
      } finally {
        clearInterval(ticker);
        idle.destroy();
        busy.destroy();
      }
    });
  });
});

describe('WebSocket faults after the handshake', () => {
  it('an endpoint resetting an open tunnel: no HTTP status written into it, and the endpoint stays in rotation', async () => {
    // One endpoint that speaks both: the WebSocket endpoint answers plain HTTP too.
    await withProxy([{ name: 'ws', port: ws.port }], [], async (p) => {
      ws.mode = 'reset-after-upgrade';
      try {
        const c = await RawConnection.open(p.port);
        c.write(upgradeRequest());
        expect(await c.waitEnd(5_000)).toBe(true);
        const { responses, rest } = parseResponses(c.received);
        expect(responses.map((r) => r.status)).toEqual([101]);
        expect(rest.toString('latin1')).not.toMatch(/HTTP\/1\.1/);
        c.destroy();
      } finally {
        ws.mode = 'answer';
      }
      // maxFails 1 by default: had the reset counted, this would be a 503.
      const r = await rawExchange(p.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(r.responses[0]?.status).toBe(200);
    });
  });
});
