/**
 * The native engine against the node:http path, end to end: the same raw
 * requests (hand-written and fast-check generated, valid and malformed) go
 * to two proxy processes, `--engine native` and `--engine node`, in front
 * of the same loopback backend. Status, body, the response headers a client
 * relies on and what the endpoint received must agree; every disagreement
 * must be one of the documented choices (README, "The native engine"):
 *
 * - `te-list`: `Transfer-Encoding: gzip, chunked` → 400 (the node path forwarded the body without its coding);
 * - `header-count`: more than 100 header fields → 431;
 * - `request-line`: extra spaces in the request line → 400;
 * - `method`: an upper-case method llhttp does not know is forwarded (node: 400).
 *
 * And one where the engine is right and the node path is not:
 * - `node-path-1xx`: after a `103 Early Hints` the node path's client gets no
 *   response at all; the engine drops the interim response and forwards the final one.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackend } from '../helpers/backends.ts';
import {
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';
import { type RawResponse, rawExchange } from '../helpers/raw-client.ts';

let backend: Backend;
let s: Scratch;
let native: ProxyProcess;
let node: ProxyProcess;

beforeAll(async () => {
  backend = await startBackend('diff', 0, (req, res) => {
    switch (req.url) {
      case '/chunked-answer': {
        // Node refuses trailers where it sends no chunked body (HEAD).
        const trailers = req.method !== 'HEAD';
        res.writeHead(200, { 'content-type': 'text/plain', ...(trailers ? { trailer: 'x-t' } : {}) });
        res.write('ab');
        res.write('cd');
        if (trailers) res.addTrailers({ 'x-t': '1' });
        res.end();
        return true;
      }
      case '/no-content':
        res.writeHead(204, { 'x-a': '1' });
        res.end();
        return true;
      case '/not-modified':
        res.writeHead(304, { etag: '"e"' });
        res.end();
        return true;
      case '/early-hints':
        res.writeEarlyHints({ link: '</a.css>; rel=preload' });
        res.end('after hints');
        return true;
      case '/hop':
        res.writeHead(200, { connection: 'x-internal', 'x-internal': 'secret', 'x-public': 'yes' });
        res.end('hop');
        return true;
      default:
        return false;
    }
  });
  s = scratch();
  const keys = s.write('keys', `${newCookieKey()}\n`);
  const file = s.write('pool.yaml', poolYaml([{ name: backend.id, port: backend.port }]));
  [native, node] = await Promise.all([
    startProxy(['--config', file, '--cookie-keys-file', keys, '--engine', 'native']),
    startProxy(['--config', file, '--cookie-keys-file', keys, '--engine', 'node']),
  ]);
});

afterAll(async () => {
  await Promise.all([native?.stop(), node?.stop()]);
  await backend?.kill();
  s?.cleanup();
});

/** Response headers that may differ by transport (framing, Node's own additions) or by proxy (its port, its cookie). */
const TRANSPORT_HEADERS = new Set([
  'date',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'set-cookie',
]);
/** Request headers the endpoint sees that legitimately differ between the two proxies. */
const HOP_HEADERS = new Set(['x-forwarded-port', 'connection', 'content-length', 'transfer-encoding']);

interface Seen {
  readonly status: number | undefined;
  readonly headers: Record<string, string[]>;
  readonly body: string;
}

function normalise(r: RawResponse | undefined): Seen {
  if (r === undefined) return { status: undefined, headers: {}, body: '' };
  const headers: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(r.headers))
    if (!TRANSPORT_HEADERS.has(k) && !k.startsWith('x-tether')) headers[k] = v;
  let body = r.body.toString('latin1');
  try {
    const echo = JSON.parse(body) as { headers?: Record<string, unknown> };
    if (echo.headers !== undefined) {
      for (const h of HOP_HEADERS) delete echo.headers[h];
      // Order is not meaning: undici puts a Host it adds first, the engine last.
      echo.headers = Object.fromEntries(Object.entries(echo.headers).sort(([a], [b]) => a.localeCompare(b)));
    }
    body = JSON.stringify(echo);
  } catch {
    // not an echo
  }
  // The proxies' own error bodies name the same code; only the status matters there.
  if (r.status >= 400 && r.headers['x-tether-error'] !== undefined) body = '';
  return { status: r.status, headers, body };
}

async function both(raw: string): Promise<{ native: Seen; node: Seen }> {
  const [a, b] = await Promise.all([
    rawExchange(native.port, raw, 3_000),
    rawExchange(node.port, raw, 3_000),
  ]);
  return { native: normalise(a.responses[0]), node: normalise(b.responses[0]) };
}

/** The documented reason two answers may differ, or undefined. */
function explain(raw: string, r: { native: Seen; node: Seen }): string | undefined {
  const head = raw.slice(0, Math.max(0, raw.indexOf('\r\n\r\n')));
  const lines = head.split('\r\n');
  if (/^transfer-encoding: *[^\r]*,/im.test(head) && r.native.status === 400) return 'te-list';
  if (lines.length - 1 > 100 && r.native.status === 431) return 'header-count';
  if (/^[A-Za-z]+ {2,}| {2}HTTP\//.test(lines[0] ?? '') && r.native.status === 400) return 'request-line';
  // The engine forwards the method; here the endpoint (node:http itself) refuses it.
  if (/^[A-Z]+ /.test(lines[0] ?? '') && r.node.status === 400 && r.native.status !== undefined)
    return 'method';
  // The node path loses the response after a 103 Early Hints (undici hands the 1xx to
  // writeHead); the engine drops the interim response and answers the final one.
  if (raw.startsWith('GET /early-hints ') && r.node.status === undefined && r.native.status === 200)
    return 'node-path-1xx';
  return undefined;
}

async function check(raw: string): Promise<string | undefined> {
  const r = await both(raw);
  if (JSON.stringify(r.native) === JSON.stringify(r.node)) return undefined;
  if (explain(raw, r) !== undefined) return undefined;
  return JSON.stringify({ raw, ...r });
}

const CORPUS = [
  'GET /a?b=1 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'HEAD /head HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /chunked-answer HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /chunked-answer HTTP/1.0\r\n\r\n',
  'HEAD /chunked-answer HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /no-content HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /not-modified HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /early-hints HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET /hop HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: shop\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi',
  'POST /p HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: shop\r\nX-A: 1\r\n 2\r\n\r\n',
  'GET / HTTP/1.1\nHost: shop\n\n',
  'GET http://evil/ HTTP/1.1\r\nHost: shop\r\n\r\n',
  'FOO / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: shop\r\nConnection: close, x-debug\r\nX-Debug: 1\r\nForwarded: for=1.2.3.4\r\n\r\n',
  `GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n${'X-N: 1\r\n'.repeat(120)}\r\n`,
  'GET / HTTP/1.0\r\n\r\n',
  'GET / HTTP/2.0\r\nHost: shop\r\n\r\n',
];

describe('native engine vs node:http path, end to end', () => {
  it('a hand-written corpus: same answers and same endpoint requests, or a documented choice', async () => {
    const bugs: string[] = [];
    for (const raw of CORPUS) {
      const d = await check(raw);
      if (d !== undefined) bugs.push(d);
    }
    expect(bugs).toEqual([]);
  });

  it('generated requests: same answers and same endpoint requests, or a documented choice', async () => {
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'get'),
      // (HEAD /chunked-answer is in the mix: the backend must not throw on it.)
      path: fc.constantFrom('/', '/x?y=z', '/chunked-answer', '/no-content', '/hop'),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
      extra: fc.array(
        fc.tuple(
          fc.constantFrom('X-A', 'Cookie', 'X-Forwarded-For', 'X-Real-IP', 'Accept', 'Te'),
          fc.stringMatching(/^[ -~]{0,10}$/),
        ),
        { maxLength: 3 },
      ),
      body: fc.oneof(
        fc.constant(undefined),
        fc.stringMatching(/^[a-z]{0,12}$/).map((b) => ({ cl: true, b })),
        fc.stringMatching(/^[a-z]{1,12}$/).map((b) => ({ cl: false, b })),
      ),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const lines = [`${r.method} ${r.path} ${r.version}`, 'Host: shop', 'Connection: close'];
        for (const [n, v] of r.extra) lines.push(`${n}: ${v}`);
        let body = '';
        if (r.body !== undefined) {
          if (r.body.cl) {
            lines.push(`Content-Length: ${r.body.b.length}`);
            body = r.body.b;
          } else if (r.version === 'HTTP/1.1') {
            lines.push('Transfer-Encoding: chunked');
            body = `${r.body.b.length.toString(16)}\r\n${r.body.b}\r\n0\r\n\r\n`;
          }
        }
        const d = await check(`${lines.join('\r\n')}\r\n\r\n${body}`);
        if (d !== undefined) throw new Error(`divergence: ${d}`);
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
