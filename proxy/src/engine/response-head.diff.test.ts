/**
 * Differential test of the native engine's response parsing (head parser +
 * body framing) against node:http's client (llhttp) on the same endpoint
 * bytes: a raw loopback endpoint answers with each corpus entry. Where both
 * accept, status, headers and body must agree; a disagreement must be one
 * of the documented choices:
 *
 * - STRICTER `duplicate-cl`: `Content-Length` twice, even with equal values → refused (502).
 * - STRICTER `te-not-chunked`: a `Transfer-Encoding` other than exactly `chunked` → refused
 *   (llhttp reads `gzip` as close-delimited, `gzip, chunked` as chunked).
 * - STRICTER `value-chars`: DEL in a header value → refused.
 */
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedDecoder } from './chunked.ts';
import { parseResponseHead } from './response-head.ts';

type Outcome =
  | { readonly ok: true; readonly status: number; readonly headers: string[]; readonly body: string }
  | { readonly ok: false };

let server: Server;
let port = 0;
let answer = '';

beforeAll(async () => {
  server = createServer((s: Socket) => {
    s.on('error', () => {});
    s.once('data', () => s.end(Buffer.from(answer, 'latin1')));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as { port: number }).port;
});

afterAll(() => {
  server.close();
});

async function viaNode(raw: string, method: string): Promise<Outcome> {
  answer = raw;
  return new Promise<Outcome>((resolve) => {
    const req = request({ host: '127.0.0.1', port, method, path: '/', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          ok: true,
          status: res.statusCode ?? 0,
          headers: res.rawHeaders,
          body: Buffer.concat(chunks).toString('latin1'),
        }),
      );
      res.on('error', () => resolve({ ok: false }));
      res.on('aborted', () => resolve({ ok: false }));
    });
    req.on('error', () => resolve({ ok: false }));
    req.end();
  });
}

function viaEngine(raw: string, method: string): Outcome {
  let buf = Buffer.from(raw, 'latin1');
  try {
    let h = parseResponseHead(buf, method);
    // 1xx interim heads are dropped, as UpstreamConnection does.
    while (h !== undefined && h.status < 200 && h.status !== 101) {
      buf = buf.subarray(h.size);
      h = parseResponseHead(buf, method);
    }
    if (h === undefined) return { ok: false };
    const rest = buf.subarray(h.size);
    let body = '';
    if (h.framing.kind === 'length') {
      if (rest.length < h.framing.length) return { ok: false };
      body = rest.toString('latin1', 0, h.framing.length);
    } else if (h.framing.kind === 'chunked') {
      const d = new ChunkedDecoder();
      const parts: string[] = [];
      d.feed(rest, 0, (c) => parts.push(c.toString('latin1')));
      if (!d.done) return { ok: false };
      body = parts.join('');
    } else if (h.framing.kind === 'close') body = rest.toString('latin1');
    return { ok: true, status: h.status, headers: h.rawHeaders, body };
  } catch {
    return { ok: false };
  }
}

function explain(raw: string, engine: Outcome, node: Outcome): string | undefined {
  const head = raw.slice(0, Math.max(0, raw.indexOf('\r\n\r\n')));
  const lines = head.split('\r\n').slice(1);
  const names = lines.map((l) => l.slice(0, Math.max(0, l.indexOf(':'))).toLowerCase());
  const values = lines.map((l) => l.slice(l.indexOf(':') + 1).trim());
  if (!engine.ok && node.ok) {
    if (names.filter((n) => n === 'content-length').length > 1) return 'duplicate-cl';
    const te = names.indexOf('transfer-encoding');
    if (te >= 0 && values[te]?.toLowerCase() !== 'chunked') return 'te-not-chunked';
    if (values.some((v) => v.includes('\x7f'))) return 'value-chars';
  }
  return undefined;
}

async function compare(raw: string, method = 'GET') {
  const engine = viaEngine(raw, method);
  const node = await viaNode(raw, method);
  if (engine.ok && node.ok)
    return engine.status === node.status &&
      engine.body === node.body &&
      JSON.stringify(engine.headers) === JSON.stringify(node.headers)
      ? undefined
      : { raw, engine, node };
  if (!engine.ok && !node.ok) return undefined;
  return explain(raw, engine, node) === undefined ? { raw, method, engine, node } : undefined;
}

const HAND_WRITTEN: [string, string][] = [
  ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', 'GET'],
  ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n', 'GET'],
  ['HTTP/1.1 200 OK\r\n\r\nuntil close', 'GET'],
  ['HTTP/1.0 200 OK\r\n\r\nuntil close', 'GET'],
  ['HTTP/1.1 204 No Content\r\n\r\n', 'GET'],
  ['HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', 'GET'],
  ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 'HEAD'],
  ['HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n', 'GET'],
  ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'GET'],
  ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw', 'GET'],
  ['HTTP/1.1 200 OK\nContent-Length: 2\n\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/2 200 OK\r\nContent-Length: 2\r\n\r\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok', 'GET'],
  ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\nhello\r\n0\r\n\r\n', 'GET'],
];

describe('response parsing: native engine vs node:http', () => {
  it('hand-written corpus: every divergence is a documented choice', async () => {
    const bugs = [];
    for (const [raw, method] of HAND_WRITTEN) {
      const d = await compare(raw, method);
      if (d !== undefined) bugs.push(d);
    }
    expect(bugs).toEqual([]);
  });

  it('random responses: every divergence is a documented choice', async () => {
    const body = fc.stringMatching(/^[a-z]{0,16}$/);
    const response = fc.record({
      status: fc.constantFrom(
        '200 OK',
        '201 Created',
        '204 No Content',
        '304 Not Modified',
        '404 Not Found',
        '200',
        '99 X',
      ),
      version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
      method: fc.constantFrom('GET', 'GET', 'HEAD'),
      extra: fc.array(
        fc.tuple(
          fc.constantFrom('X-A', 'set-cookie', 'X A', 'Server'),
          fc.oneof(fc.stringMatching(/^[ -~]{0,10}$/), fc.constantFrom('caf\xe9', 'x\x7fy', ' t ')),
        ),
        { maxLength: 3 },
      ),
      framing: fc.oneof(
        body.map((b) => ({ headers: [`Content-Length: ${b.length}`], body: b })),
        fc.array(fc.stringMatching(/^[a-z]{1,8}$/), { maxLength: 3 }).map((parts) => ({
          headers: ['Transfer-Encoding: chunked'],
          body: `${parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`,
        })),
      ),
    });
    await fc.assert(
      fc.asyncProperty(response, async (r) => {
        const bodyless = r.method === 'HEAD' || /^(204|304)/.test(r.status);
        const lines = [
          `${r.version} ${r.status}`,
          ...r.extra.map(([n, v]) => `${n}: ${v}`),
          ...(bodyless ? [] : r.framing.headers),
        ];
        const raw = `${lines.join('\r\n')}\r\n\r\n${bodyless ? '' : r.framing.body}`;
        const d = await compare(raw, r.method);
        if (d !== undefined) throw new Error(`divergence: ${JSON.stringify(d)}`);
      }),
      { numRuns: 150 },
    );
  }, 120_000);
});
