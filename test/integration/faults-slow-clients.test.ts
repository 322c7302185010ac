/**
 * Fault suite: slow clients must not starve an endpoint (issue 7, item 5).
 * Trickled request bodies are buffered before an endpoint is chosen and cut
 * with 408 when too slow; requests waiting for a busy endpoint wait in a
 * bounded queue for a bounded time (503); a client that stops reading a
 * large answer is cut after the send timeout, freeing the connection.
 */
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { type FaultBackend, rawExchange, startFaultBackend } from '../helpers/fault-backend.ts';
import {
  get,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';

let backends: FaultBackend[] = [];
let proxy: ProxyProcess | undefined;
let s: Scratch | undefined;
let sockets: Socket[] = [];

afterEach(async () => {
  for (const so of sockets) so.destroy();
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.stop()));
  s?.cleanup();
  proxy = undefined;
  backends = [];
  sockets = [];
});

async function setup(b: FaultBackend, flags: string[]): Promise<ProxyProcess> {
  backends = [b];
  s = scratch();
  const config = s.write(
    'pool.yaml',
    poolYaml([{ name: 'slow-a', port: b.port }], {
      healthCheck: { passive: { maxFails: 1, failTimeout: '60s' } },
    }),
  );
  proxy = await startProxy(['--config', config, ...flags]);
  return proxy;
}

/** Opens a connection to the proxy and sends the head of a POST whose body then trickles, a byte every `everyMs`. */
function trickle(port: number, length: number, everyMs: number): Socket {
  const so = connect(port, '127.0.0.1');
  so.on('error', () => {});
  so.write(`POST /slow HTTP/1.1\r\nHost: shop\r\nContent-Length: ${length}\r\n\r\n`);
  let sent = 0;
  const t = setInterval(() => {
    if (so.destroyed || sent >= length) return void clearInterval(t);
    so.write('x');
    sent++;
  }, everyMs);
  so.once('close', () => clearInterval(t));
  sockets.push(so);
  return so;
}

async function healthy(p: ProxyProcess): Promise<number> {
  const m = (await get(`${p.adminUrl}/metrics`)).text;
  return m.split('\n').filter((l) => l.startsWith('tether_proxy_endpoint_healthy{') && l.endsWith(' 1'))
    .length;
}

describe('slow request bodies', () => {
  it('clients trickling bodies hold no endpoint connection: another client is served meanwhile', async () => {
    const b = await startFaultBackend('slow-a');
    const p = await setup(b, ['--connections-per-endpoint', '2']);
    // Five bodies of 20 bytes at a byte per 300 ms: 6 s each, far more than the 2 connections.
    for (let i = 0; i < 5; i++) trickle(p.port, 20, 300);
    await new Promise((r) => setTimeout(r, 500));
    const r = await request(`${p.url}/quick`, { headersTimeout: 4_000 });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    // Served before any trickled request reached the endpoint: they hold nothing.
    expect(b.requests.filter((q) => q.method === 'POST')).toHaveLength(0);
  });

  it('a body slower than --client-body-timeout gets 408 and never counts against the endpoint', async () => {
    const b = await startFaultBackend('slow-a');
    const p = await setup(b, ['--client-body-timeout', '1s']);
    const raw = await rawExchange(
      p.port,
      'POST /slow HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\nabc',
      {
        idleMs: 4_000,
      },
    );
    expect(raw).toMatch(/^HTTP\/1\.1 408 /);
    expect(raw.toLowerCase()).toContain('connection: close');
    expect(b.requests).toHaveLength(0);
    expect(await healthy(p)).toBe(1);
  });

  it('a streamed body too slow for --client-body-timeout, mid-request to the endpoint: 408, the endpoint is not blamed', async () => {
    const b = await startFaultBackend('slow-a');
    const p = await setup(b, [
      '--request-buffer-size',
      '1k',
      '--read-timeout',
      '1s',
      '--client-body-timeout',
      '2s',
    ]);
    // 2 KiB at once (over the buffer: the body streams to the endpoint), then a byte every 200 ms.
    const so = trickle(p.port, 4_000, 200);
    so.write('x'.repeat(2_048));
    const got: Buffer[] = [];
    so.on('data', (d: Buffer) => got.push(d));
    await new Promise((r) => setTimeout(r, 4_000));
    so.destroy();
    // The endpoint did get the request (the body was streaming to it) …
    expect(b.connections()).toBeGreaterThan(0);
    const raw = Buffer.concat(got).toString('latin1');
    expect(raw).toMatch(/^HTTP\/1\.1 408 /);
    expect(await healthy(p)).toBe(1);
  });

  it('a body over --request-buffer-size streams to the endpoint and arrives whole', async () => {
    const b = await startFaultBackend('slow-a');
    const p = await setup(b, ['--request-buffer-size', '1k']);
    const body = 'y'.repeat(300_000);
    const r = await get(`${p.url}/upload`, { method: 'POST', body });
    expect(r.status).toBe(200);
    expect(b.requests[0]?.body.length).toBe(300_000);
  });
});

describe('the queue for a busy endpoint', () => {
  it('waits at most --queue-timeout (503 + Retry-After), holds at most --queue-size (503 at once), and blames no endpoint', async () => {
    const b = await startFaultBackend('slow-a', (req) =>
      req.url.startsWith('/stall') ? { kind: 'stall' } : { kind: 'respond', body: { endpoint: 'slow-a' } },
    );
    const p = await setup(b, [
      '--connections-per-endpoint',
      '2',
      '--queue-size',
      '2',
      '--queue-timeout',
      '800ms',
      '--read-timeout',
      '30s',
    ]);
    const hold = [0, 1].map((i) =>
      request(`${p.url}/stall${i}`, { headersTimeout: 20_000 }).catch(() => undefined),
    );
    await new Promise((r) => setTimeout(r, 300));
    const queued = [0, 1].map(() => get(`${p.url}/queued`));
    await new Promise((r) => setTimeout(r, 100));
    const full = await get(`${p.url}/one-too-many`);
    expect(full.status).toBe(503);
    expect(full.headers['x-tether-error']).toBe('TETHER_QUEUE_FULL');
    for (const q of await Promise.all(queued)) {
      expect(q.status).toBe(503);
      expect(q.headers['x-tether-error']).toBe('TETHER_QUEUE_TIMEOUT');
      expect(q.headers['retry-after']).toBe('1');
    }
    expect(await healthy(p)).toBe(1);
    // The queued requests were never sent, even once connections free up.
    await b.stop();
    await Promise.all(hold);
    expect(b.requests.filter((q) => q.url === '/queued')).toHaveLength(0);
  });
});

describe('slow readers', () => {
  it('a client that stops reading a large answer is cut after --send-timeout, freeing the endpoint connection', async () => {
    const big = 'z'.repeat(32 * 1024 * 1024);
    const b = await startFaultBackend('slow-a', (req) =>
      req.url === '/big' ? { kind: 'respond', body: big } : { kind: 'respond', body: { endpoint: 'slow-a' } },
    );
    const p = await setup(b, [
      '--connections-per-endpoint',
      '1',
      '--send-timeout',
      '1s',
      '--response-buffer-size',
      '64k',
    ]);
    const reader = connect(p.port, '127.0.0.1');
    reader.on('error', () => {});
    sockets.push(reader);
    reader.write('GET /big HTTP/1.1\r\nHost: shop\r\n\r\n');
    reader.pause(); // reads nothing more
    const closed = new Promise<void>((r) => reader.once('close', () => r()));
    await new Promise((r) => setTimeout(r, 300));
    // The one connection to the endpoint is busy with /big until the slow reader is cut.
    const r = await request(`${p.url}/small`, { headersTimeout: 10_000 });
    expect(r.statusCode).toBe(200);
    await r.body.text();
    reader.resume();
    await closed;
    expect(await healthy(p)).toBe(1);
  });
});
