/**
 * Differential test of the native engine's request parsing (head parser +
 * body framing) against a node:http reference (llhttp, strict mode, on
 * loopback): a corpus of valid and malformed requests, hand-written and
 * random (fast-check), goes through both. Where both accept, method,
 * target, version, headers and body must agree; where they disagree, the
 * case must match one of the documented choices below (also in the README,
 * "The native engine"), or the test fails and prints it.
 *
 * Documented divergences (engine vs node:http); the first three are what
 * the corpus finds today, the others guard cases where llhttp may change:
 * - STRICTER `te-not-chunked`: any `Transfer-Encoding` other than exactly `chunked`
 *   (`gzip, chunked`) → 400 (llhttp accepts a list ending in `chunked`).
 * - STRICTER `header-count`: more than 100 header fields → 431 (node takes 2000).
 * - STRICTER `request-line`: anything but `METHOD SP target SP HTTP/1.x` (two spaces)
 *   → 400 (llhttp skips extra spaces).
 * - SAME AS THE NODE PATH: two `Host` headers and `Transfer-Encoding` on HTTP/1.0 pass
 *   llhttp but were refused by the node:http path after parsing (undici, refusalForRequest).
 * - guards: `duplicate-cl` (equal duplicates), `target-chars` (obs-text, DEL in the
 *   target), `value-chars` (DEL in a value), `cl-value` (over 15 digits): the engine
 *   refuses these; llhttp 24.x refuses them too.
 * - LENIENT `method`: any upper-case token method is forwarded (HAProxy and nginx do the same;
 *   llhttp knows a fixed list and refuses `FOO`).
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedDecoder } from './chunked.ts';
import { parseRequestHead } from './request-head.ts';

interface Parsed {
  readonly ok: true;
  readonly method: string;
  readonly url: string;
  readonly version: string;
  readonly headers: string[];
  readonly body: string;
}
type Outcome = Parsed | { readonly ok: false; readonly status: number };

let server: Server;
let port = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const out = JSON.stringify({
        ok: true,
        method: req.method,
        url: req.url,
        version: req.httpVersion,
        headers: req.rawHeaders,
        body: Buffer.concat(chunks).toString('latin1'),
      });
      // In a header, base64: a HEAD answer has no body.
      res.writeHead(200, {
        'x-parsed': Buffer.from(out).toString('base64'),
        'content-length': 0,
        connection: 'close',
      });
      res.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});

afterAll(() => {
  server.close();
});

/** The reference: what node:http made of the bytes (its 4xx, or the request it parsed). */
async function viaNode(raw: string): Promise<Outcome> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => {});
  s.write(Buffer.from(raw, 'latin1'));
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 1500))]);
  s.destroy();
  const text = Buffer.concat(chunks).toString('latin1');
  // Skip a 100 Continue Node may have sent first.
  const final = text.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, '');
  const m = /^HTTP\/1\.1 (\d{3})/.exec(final);
  if (m === null) return { ok: false, status: 0 };
  const status = Number(m[1]);
  if (status !== 200) return { ok: false, status };
  const parsed = /\r\nx-parsed: ([A-Za-z0-9+/=]+)\r\n/.exec(final);
  if (parsed === null) return { ok: false, status: 0 };
  return JSON.parse(Buffer.from(parsed[1] as string, 'base64').toString('utf8')) as Parsed;
}

/** The engine's codecs on the same bytes. */
function viaEngine(raw: string): Outcome {
  const buf = Buffer.from(raw, 'latin1');
  const r = parseRequestHead(buf);
  if (r.kind === 'refused') return { ok: false, status: r.refusal.status };
  if (r.kind === 'incomplete') return { ok: false, status: 0 };
  const h = r.head;
  // The proxy's own refusals that are not the parser's (origin form): node:http has the same in refusalForRequest.
  let body = '';
  const rest = buf.subarray(h.size);
  if (h.framing.kind === 'length') {
    if (rest.length < h.framing.length) return { ok: false, status: 0 };
    body = rest.toString('latin1', 0, h.framing.length);
  } else if (h.framing.kind === 'chunked') {
    const d = new ChunkedDecoder();
    const parts: string[] = [];
    try {
      d.feed(rest, 0, (c) => parts.push(c.toString('latin1')));
    } catch {
      return { ok: false, status: 400 };
    }
    if (!d.done) return { ok: false, status: 0 };
    body = parts.join('');
  }
  return { ok: true, method: h.method, url: h.target, version: h.version, headers: h.rawHeaders, body };
}

const LLHTTP_METHODS = new Set(
  'DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY'.split(
    ' ',
  ),
);

/** Which documented divergence explains a disagreement, or undefined (a bug). */
function explain(raw: string, engine: Outcome, node: Outcome): string | undefined {
  const head = raw.slice(0, Math.max(0, raw.indexOf('\r\n\r\n')));
  const lines = head.split('\r\n');
  const names = lines.slice(1).map((l) => l.slice(0, Math.max(0, l.indexOf(':'))).toLowerCase());
  const values = lines.slice(1).map((l) => l.slice(l.indexOf(':') + 1).trim());
  const method = raw.slice(0, raw.indexOf(' '));
  const target = lines[0]?.split(' ')[1] ?? '';
  if (!engine.ok && node.ok) {
    // Refused after parsing by the node:http path too (refusalForRequest, undici): the same answer as before.
    if (names.filter((n) => n === 'host').length > 1) return 'same-as-node-path:two-hosts';
    if (raw.includes(' HTTP/1.0\r\n') && names.includes('transfer-encoding'))
      return 'same-as-node-path:te-on-1.0';
    if (!/^[A-Z]+ [\x21-\x7e]+ HTTP\/1\.[01]$/.test(lines[0] ?? '')) return 'request-line';
    if (names.filter((n) => n === 'content-length').length > 1) return 'duplicate-cl';
    const te = names.indexOf('transfer-encoding');
    if (te >= 0 && values[te]?.toLowerCase() !== 'chunked') return 'te-not-chunked';
    if (names.filter((n) => n === 'transfer-encoding').length > 1) return 'te-not-chunked';
    if (names.length > 100) return 'header-count';
    if (/[\x7f-\xff]/.test(target)) return 'target-chars';
    if (values.some((v) => v.includes('\x7f'))) return 'value-chars';
    const cl = names.indexOf('content-length');
    if (cl >= 0 && !/^[0-9]{1,15}$/.test(values[cl] ?? '')) return 'cl-value';
  }
  if (engine.ok && !node.ok && !LLHTTP_METHODS.has(method)) return 'method';
  return undefined;
}

async function compare(
  raw: string,
): Promise<{ raw: string; engine: Outcome; node: Outcome; why?: string } | undefined> {
  const engine = viaEngine(raw);
  const node = await viaNode(raw);
  if (engine.ok && node.ok) {
    const same =
      engine.method === node.method &&
      engine.url === node.url &&
      engine.version === node.version &&
      engine.body === node.body &&
      JSON.stringify(engine.headers) === JSON.stringify(node.headers);
    return same ? undefined : { raw, engine, node };
  }
  if (!engine.ok && !node.ok) return undefined;
  const why = explain(raw, engine, node);
  return why === undefined ? { raw, engine, node } : undefined;
}

const HAND_WRITTEN: string[] = [
  'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /a?b=c&d=%20 HTTP/1.1\r\nHost: x\r\nX-A:  spaced value  \r\nCookie: a=1\r\nCookie: b=2\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n12',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n',
  'GET / HTTP/1.1\nHost: x\n\n',
  'GET / HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\n X-A: b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX-A: \x7f\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nX-A: caf\xe9\r\n\r\n',
  'GET / HTTP/1.1\r\n\r\n',
  'GET / HTTP/1.0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
  'get / HTTP/1.1\r\nHost: x\r\n\r\n',
  'FOO / HTTP/1.1\r\nHost: x\r\n\r\n',
  'PURGE / HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET  / HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET / HTTP/1.1 \r\nHost: x\r\n\r\n',
  'GET /\xe9 HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET / HTTP/1.2\r\nHost: x\r\n\r\n',
  'GET / http/1.1\r\nHost: x\r\n\r\n',
  '\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi',
  `GET / HTTP/1.1\r\nHost: x\r\n${'X-N: 1\r\n'.repeat(150)}\r\n`,
];

describe('request parsing: native engine vs node:http', () => {
  it('hand-written corpus: every divergence is a documented choice', async () => {
    const bugs = [];
    for (const raw of HAND_WRITTEN) {
      const d = await compare(raw);
      if (d !== undefined) bugs.push(d);
    }
    expect(bugs).toEqual([]);
  });

  it('random requests from valid and malformed parts: every divergence is a documented choice', async () => {
    const token = fc.constantFrom('X-A', 'x-b', 'Accept', 'X_Y', 'X A', 'X-A ', 'X:A', 'Ünï');
    const value = fc.oneof(
      fc.stringMatching(/^[ -~]{0,12}$/),
      fc.constantFrom('a\tb', ' lead', 'trail ', 'caf\xe9', 'x\x00y', 'x\ry', 'x\x7fy', ''),
    );
    const framing = fc.oneof(
      fc.constant({ headers: [] as string[], body: '' }),
      fc.stringMatching(/^[a-z]{0,20}$/).map((b) => ({ headers: [`Content-Length: ${b.length}`], body: b })),
      fc.array(fc.stringMatching(/^[a-z]{1,9}$/), { maxLength: 4 }).map((parts) => ({
        headers: ['Transfer-Encoding: chunked'],
        body: `${parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`,
      })),
      fc.constantFrom(
        { headers: ['Content-Length: 3', 'Transfer-Encoding: chunked'], body: '0\r\n\r\n' },
        { headers: ['Content-Length: 3', 'Content-Length: 3'], body: 'abc' },
        { headers: ['Content-Length: +3'], body: 'abc' },
        { headers: ['Transfer-Encoding: gzip, chunked'], body: '0\r\n\r\n' },
      ),
    );
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'get', 'FOO'),
      target: fc.constantFrom('/', '/a/b?c=d', '/%41', '/a#f', '/\xe9', '*', 'http://h/'),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2'),
      host: fc.constantFrom(['Host: x'], ['Host: x'], [], ['Host: a', 'Host: b']),
      extra: fc.array(fc.tuple(token, value), { maxLength: 4 }),
      framing,
      eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n'),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const lines = [
          `${r.method} ${r.target} ${r.version}`,
          ...r.host,
          ...r.extra.map(([n, v]) => `${n}: ${v}`),
          ...r.framing.headers,
        ];
        const raw = `${lines.join(r.eol)}${r.eol}${r.eol}${r.framing.body}`;
        const d = await compare(raw);
        if (d !== undefined) throw new Error(`divergence: ${JSON.stringify(d)}`);
      }),
      { numRuns: 250 },
    );
  }, 120_000);
});
