/**
 * The proxy under hostile clients (issue 7, item 7 and its siblings): clients
 * that trickle, pipeline, send odd framing or claim to be someone else, on
 * raw sockets so the bytes are exactly what a test says, against a real proxy
 * process and real loopback backends. Each framing case pins what Node's
 * parser and the proxy do together: refused before anything reaches an
 * endpoint.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackend } from '../helpers/backends.ts';
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
import { RawConnection, rawExchange } from '../helpers/raw-client.ts';

let backend: Backend;
let s: Scratch;
let p: ProxyProcess;

beforeAll(async () => {
  backend = await startBackend('hc', 0, (req, res) => {
    if (req.url === '/hop') {
      // An endpoint marking its own internal header hop-by-hop (RFC 9110 §7.6.1).
      res.writeHead(200, {
        connection: 'X-Internal-Trace',
        'x-internal-trace': 'db=10.0.0.5',
        'x-public': 'yes',
      });
      res.end('hop\n');
      return true;
    }
    return false;
  });
  s = scratch();
  const keys = s.write('keys', `${newCookieKey()}\n`);
  const file = s.write('pool.yaml', poolYaml([{ name: backend.id, port: backend.port }]));
  p = await startProxy(['--config', file, '--cookie-keys-file', keys, '--client-header-timeout', '500ms']);
});

afterAll(async () => {
  await p?.stop();
  await backend?.kill();
  s?.cleanup();
});

const seenCount = (): number => backend.seen.length;

describe('what a client claims about itself', () => {
  it('Forwarded, X-Real-IP, True-Client-IP, X-Forwarded-Port and kin from an untrusted client never reach the endpoint as sent', async () => {
    const r = await get(`${p.url}/claims`, {
      headers: {
        forwarded: 'for=6.6.6.6;proto=https;host=evil.example',
        'x-real-ip': '6.6.6.6',
        'true-client-ip': '6.6.6.6',
        'x-forwarded-port': '443',
        'x-client-ip': '6.6.6.6',
        'client-ip': '6.6.6.6',
        'x-forwarded-ssl': 'on',
        'x-forwarded-prefix': '/admin',
      },
    });
    expect(r.status).toBe(200);
    const h = backend.seen.at(-1)?.headers ?? {};
    for (const gone of [
      'forwarded',
      'true-client-ip',
      'x-client-ip',
      'client-ip',
      'x-forwarded-ssl',
      'x-forwarded-prefix',
    ])
      expect(h[gone], gone).toBeUndefined();
    expect(h['x-real-ip']).toBe('127.0.0.1');
    expect(h['x-forwarded-port']).toBe(String(p.port));
  });

  it('response headers the endpoint names in Connection never reach the client', async () => {
    const r = await get(`${p.url}/hop`);
    expect(r.status).toBe(200);
    expect(r.headers['x-internal-trace']).toBeUndefined();
    expect(r.headers['x-public']).toBe('yes');
  });

  it('only the first 4 affinity cookie values are considered: a valid one behind 4 bad ones is not honoured', async () => {
    const c = new Client();
    await c.get(`${p.url}/`);
    const valid = c.jar.get('route') as string;
    expect(valid).toBeDefined();
    // A valid cookie as the 4th value is a hit: no new cookie.
    const fourth = await get(`${p.url}/`, {
      headers: { cookie: `route=bad1; route=bad2; route=bad3; route=${valid}` },
    });
    expect(fourth.headers['set-cookie']).toBeUndefined();
    // Behind 4 bad ones (or 400) it is never looked at: a re-pin with a fresh cookie.
    const junk = Array.from({ length: 400 }, (_, i) => `route=AAAA${i}.forged`).join('; ');
    const buried = await get(`${p.url}/`, { headers: { cookie: `${junk}; route=${valid}` } });
    expect(buried.status).toBe(200);
    expect(String(buried.headers['set-cookie'])).toMatch(/^route=/);
  });
});

describe('pipelining and trickling', () => {
  it('three pipelined requests in one write get three responses, in order', async () => {
    const c = await RawConnection.open(p.port);
    c.write(
      'GET /slow?ms=200&n=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /a?n=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /b?n=3 HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    expect(await c.waitResponses(3)).toBe(true);
    c.destroy();
    expect(c.responses().map((r) => JSON.parse(r.body.toString()).path)).toEqual([
      '/slow?ms=200&n=1',
      '/a?n=2',
      '/b?n=3',
    ]);
  });

  it('a malformed request pipelined behind a valid one: the valid one gets its whole response first, then a 400, then the close', async () => {
    const c = await RawConnection.open(p.port);
    c.write('GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header Line\r\n\r\n');
    expect(await c.waitEnd(5_000)).toBe(true);
    c.destroy();
    const rs = c.responses();
    expect(rs.map((r) => r.status)).toEqual([200, 400]);
    expect(JSON.parse(rs[0]?.body.toString() ?? '{}').path).toBe('/slow?ms=300');
    expect(rs[1]?.headers.connection).toEqual(['close']);
    expect(c.ending).toBe('fin');
  });

  it('a request trickled one byte at a time, body included, arrives intact', async () => {
    const before = seenCount();
    const c = await RawConnection.open(p.port);
    await c.trickle('POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world', 1, 3);
    expect(await c.waitResponses(1)).toBe(true);
    c.destroy();
    expect(c.responses()[0]?.status).toBe(200);
    expect(backend.seen.slice(before).map((x) => x.body)).toEqual(['hello world']);
  });

  it('headers trickled slower than --client-header-timeout: 408, and the connection is closed', async () => {
    const before = seenCount();
    const c = await RawConnection.open(p.port);
    c.write('GET /slowloris HTTP/1.1\r\nHost: x\r\n');
    const ticker = setInterval(() => c.write('X-A: 1\r\n'), 100);
    try {
      expect(await c.waitEnd(10_000)).toBe(true);
    } finally {
      clearInterval(ticker);
      c.destroy();
    }
    expect(c.responses()[0]?.status).toBe(408);
    expect(seenCount()).toBe(before);
  });
});

describe('sizes', () => {
  it.each([
    {
      desc: 'a 20 KiB request line (over Node’s 16 KiB header limit)',
      req: `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      want: 414,
    },
    {
      desc: 'a 10 KiB request target (over nginx’s 8 KiB)',
      req: `GET /${'a'.repeat(10_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      want: 414,
    },
    {
      desc: 'a 20 KiB header',
      req: `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20_000)}\r\n\r\n`,
      want: 431,
    },
    {
      desc: '3000 tiny headers',
      req: `GET / HTTP/1.1\r\nHost: x\r\n${'a:\r\n'.repeat(3000)}\r\n`,
      want: 431,
    },
    {
      desc: '400 affinity cookies in 16 KiB',
      req: `GET / HTTP/1.1\r\nHost: x\r\nCookie: ${'route=x; '.repeat(2000)}\r\n\r\n`,
      want: 431,
    },
  ])('$desc → $want, nothing forwarded', async ({ req, want }) => {
    const before = seenCount();
    const r = await rawExchange(p.port, req);
    expect(r.responses[0]?.status).toBe(want);
    expect(r.responses[0]?.headers.connection).toEqual(['close']);
    expect(seenCount()).toBe(before);
  });
});

describe('odd framing is refused before it reaches an endpoint', () => {
  it.each([
    { desc: 'HTTP/1.1 without Host', req: 'GET / HTTP/1.1\r\n\r\n', want: 400 },
    {
      desc: 'Transfer-Encoding with Content-Length (request smuggling)',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG',
      want: 400,
    },
    {
      desc: 'two different Content-Lengths',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
      want: 400,
    },
    {
      desc: 'Transfer-Encoding that does not end in chunked',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc',
      want: 400,
    },
    {
      desc: 'Transfer-Encoding with a space before the colon',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
      want: 400,
    },
    {
      desc: 'a malformed chunk size in the middle of a body',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n',
      want: 400,
    },
    {
      desc: 'a signed Content-Length',
      req: 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc',
      want: 400,
    },
    {
      desc: 'obs-fold (a continued header line)',
      req: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n',
      want: 400,
    },
    { desc: 'bare LF line ends', req: 'GET / HTTP/1.1\nHost: x\n\n', want: 400 },
    { desc: 'a bare CR in a header value', req: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n', want: 400 },
    { desc: 'a NUL in a header value', req: 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\n\r\n', want: 400 },
    { desc: 'a lower-case method', req: 'get / HTTP/1.1\r\nHost: x\r\n\r\n', want: 400 },
    {
      desc: 'an absolute-form target',
      req: 'GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n',
      want: 400,
    },
    {
      desc: 'a CONNECT (authority-form target)',
      req: 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n',
      want: 400,
    },
    { desc: 'an asterisk-form target', req: 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', want: 400 },
    { desc: 'HTTP/2.0 in an HTTP/1 request line', req: 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', want: 505 },
    { desc: 'an HTTP/0.9 request', req: 'GET /\r\n\r\n', want: 505 },
  ])('$desc → $want', async ({ req, want }) => {
    const before = seenCount();
    const r = await rawExchange(p.port, req);
    expect(r.responses[0]?.status).toBe(want);
    expect(r.ending).toBe('fin');
    expect(seenCount()).toBe(before);
  });

  it('HTTP/1.0 is served, and the connection closed after the response', async () => {
    const r = await rawExchange(p.port, 'GET /ten HTTP/1.0\r\n\r\n');
    expect(r.responses[0]?.status).toBe(200);
    expect(r.ending).toBe('fin');
    expect(JSON.parse(r.responses[0]?.body.toString() ?? '{}').path).toBe('/ten');
  });

  it('a chunked body with chunk extensions and a trailer reaches the endpoint as its bytes', async () => {
    const before = seenCount();
    const r = await rawExchange(
      p.port,
      'POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n',
    );
    expect(r.responses[0]?.status).toBe(200);
    expect(backend.seen.slice(before).map((x) => x.body)).toEqual(['abcde']);
  });

  it('the proxy is still up and serving after all of the above', async () => {
    expect((await get(`${p.url}/`)).status).toBe(200);
    expect(p.child.exitCode).toBeNull();
  });
});
