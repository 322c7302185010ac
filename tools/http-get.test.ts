import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, setCookiePairs, setCookieValue } from './http-get.ts';

describe('setCookiePairs and setCookieValue', () => {
  it('read name=value pairs and drop attributes', () => {
    expect(setCookiePairs(['route=abc; Path=/; HttpOnly', ' SRV = be-1 ;Max-Age=0', 'junk'])).toEqual([
      ['route', 'abc'],
      ['SRV', 'be-1'],
    ]);
    expect(setCookiePairs('a=b=c; Secure')).toEqual([['a', 'b=c']]);
    expect(setCookiePairs(undefined)).toEqual([]);
  });

  it('give the last value set for a name', () => {
    expect(setCookieValue(['route=1', 'other=x', 'route=2; Path=/'], 'route')).toBe('2');
    expect(setCookieValue(['other=x'], 'route')).toBeUndefined();
  });
});

describe('httpGet', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/silent') return; // never answers
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.end(
          JSON.stringify({
            method: req.method,
            body: Buffer.concat(chunks).toString('utf8'),
            from: req.socket.remoteAddress,
            hdr: req.headers['x-test'],
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('returns status, headers and body', async () => {
    const r = await httpGet(`${base}/x`, { headers: { 'x-test': 'yes' } });
    expect(r.status).toBe(200);
    expect(r.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(JSON.parse(r.body)).toMatchObject({ method: 'GET', body: '', from: '127.0.0.1', hdr: 'yes' });
  });

  it('sends a method and a body, from a given source address', async () => {
    const r = await httpGet(`${base}/x`, { method: 'PUT', body: 'ü'.repeat(3), localAddress: '127.0.0.2' });
    expect(JSON.parse(r.body)).toMatchObject({ method: 'PUT', body: 'üüü', from: '127.0.0.2' });
  });

  it('rejects on a refused connection and after a silent timeout', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(httpGet(`http://127.0.0.1:${port}/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(httpGet(`${base}/silent`, { timeoutMs: 200 })).rejects.toMatchObject({
      code: 'ETIMEDOUT',
      message: `GET ${base}/silent: no answer within 200 ms`,
    });
  });
});
