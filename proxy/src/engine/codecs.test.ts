import { describe, expect, it } from 'vitest';
import { ChunkedDecoder, ChunkedError } from './chunked.ts';
import { parseRequestHead } from './request-head.ts';
import { parseResponseHead, ResponseParseError } from './response-head.ts';

const req = (s: string) => parseRequestHead(Buffer.from(s, 'latin1'));
const status = (s: string) => {
  const r = req(s);
  return r.kind === 'refused' ? r.refusal.status : r.kind;
};

describe('parseRequestHead', () => {
  it('parses a plain GET with keep-alive, headers as sent', () => {
    const r = req('GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\n\r\nrest');
    expect(r.kind).toBe('ok');
    if (r.kind !== 'ok') return;
    expect(r.head).toMatchObject({
      method: 'GET',
      target: '/a?b=1',
      version: '1.1',
      keepAlive: true,
      size: 42,
    });
    expect(r.head.rawHeaders).toEqual(['Host', 'x', 'X-A', '1']);
    expect(r.head.framing).toEqual({ kind: 'none' });
  });
  it('waits for more bytes', () => {
    expect(status('GET / HTTP/1.1\r\nHost: x\r\n')).toBe('incomplete');
    expect(status('GET / HT')).toBe('incomplete');
  });
  it('skips empty lines before the request line', () => {
    expect(status('\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n')).toBe('ok');
  });
  it.each([
    ['bare LF', 'GET / HTTP/1.1\nHost: x\n\n', 400],
    ['bare LF inside', 'GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n', 400],
    ['bare CR', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r2\r\n\r\n', 400],
    ['NUL', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\n\r\n', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n', 400],
    ['space before colon', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n', 400],
    [
      'CL and TE',
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n',
      400,
    ],
    ['two equal CL', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n', 400],
    ['CL list', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n', 400],
    ['signed CL', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n', 400],
    ['TE gzip', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n', 400],
    ['TE chunked not last', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 400],
    [
      'TE twice',
      'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      400,
    ],
    ['TE on 1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
    ['no Host', 'GET / HTTP/1.1\r\n\r\n', 400],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['lower-case method', 'get / HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['CONNECT', 'CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n', 400],
    ['bad name char', 'GET / HTTP/1.1\r\nHost: x\r\nX(A): 1\r\n\r\n', 400],
    ['obs-text in target', 'GET /\xe9 HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', 505],
    ['HTTP/0.9', 'GET /\r\n\r\n', 505],
    ['Expect other', 'GET / HTTP/1.1\r\nHost: x\r\nExpect: fancy\r\n\r\n', 417],
    ['101 headers', `GET / HTTP/1.1\r\nHost: x\r\n${'a:\r\n'.repeat(101)}\r\n`, 431],
    ['20 KiB header', `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20000)}\r\n\r\n`, 431],
    ['20 KiB header, incomplete', `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20000)}`, 431],
    ['10 KiB target', `GET /${'a'.repeat(10000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
    ['10 KiB target, incomplete', `GET /${'a'.repeat(10000)}`, 414],
  ])('%s → %s', (_d, text, want) => {
    expect(status(text)).toBe(want);
  });
  it('reads framing, Connection, Expect and Upgrade', () => {
    const r = req(
      'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\nExpect: 100-Continue\r\n\r\n',
    );
    expect(r.kind === 'ok' && r.head).toMatchObject({
      framing: { kind: 'length', length: 12 },
      keepAlive: false,
      expectContinue: true,
    });
    const t = req('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n');
    expect(t.kind === 'ok' && t.head.framing).toEqual({ kind: 'chunked' });
    const ten = req('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect(ten.kind === 'ok' && ten.head.keepAlive).toBe(true);
    const ws = req('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    expect(ws.kind === 'ok' && ws.head.upgrade).toBe(true);
  });
});

describe('parseResponseHead', () => {
  const res = (s: string, m = 'GET') => parseResponseHead(Buffer.from(s, 'latin1'), m);
  it('frames by length, chunked, close, and none for HEAD/204/304', () => {
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n')?.framing).toEqual({
      kind: 'length',
      length: 5,
    });
    expect(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')?.framing).toEqual({
      kind: 'chunked',
    });
    const close = res('HTTP/1.1 200 OK\r\n\r\n');
    expect(close?.framing).toEqual({ kind: 'close' });
    expect(close?.keepAlive).toBe(false);
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', 'HEAD')?.framing).toEqual({ kind: 'none' });
    expect(res('HTTP/1.1 204 No Content\r\n\r\n')?.framing).toEqual({ kind: 'none' });
    expect(res('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n')?.framing).toEqual({ kind: 'none' });
    expect(res('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')?.reason).toBe('');
    expect(res('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n')?.keepAlive).toBe(false);
    expect(res('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n')).toBeUndefined();
  });
  it.each([
    'HTTP/1.1 200 OK\nContent-Length: 0\n\n',
    'HTTP/1.1 20 OK\r\n\r\n',
    'HTTP/2 200 OK\r\n\r\n',
    'garbage\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n',
  ])('refuses %j', (s) => {
    expect(() => res(s)).toThrow(ResponseParseError);
  });
});

describe('ChunkedDecoder', () => {
  const decode = (parts: string[]) => {
    const d = new ChunkedDecoder();
    const out: string[] = [];
    let rest = '';
    for (const p of parts) {
      const b = Buffer.from(p, 'latin1');
      const used = d.feed(b, 0, (c) => out.push(c.toString('latin1')));
      rest += b.toString('latin1', used);
    }
    return { body: out.join(''), done: d.done, rest };
  };
  it('decodes, with extensions and trailers, in any split', () => {
    const text = '3;ext=1\r\nabc\r\n2;a="b c"\r\nde\r\n0\r\nX-Trailer: t\r\n\r\nNEXT';
    for (let i = 0; i <= text.length; i++) {
      for (const j of [i, Math.min(text.length, i + 3)]) {
        expect(decode([text.slice(0, i), text.slice(i, j), text.slice(j)])).toEqual({
          body: 'abcde',
          done: true,
          rest: 'NEXT',
        });
      }
    }
  });
  it('ends at the empty trailer section', () => {
    expect(decode(['0\r\n\r\nX'])).toEqual({ body: '', done: true, rest: 'X' });
  });
  it.each([
    'ZZ\r\n',
    '-1\r\n',
    ' 3\r\nabc\r\n',
    '3\nabc\r\n',
    '3\r\nabcX\r\n',
    '1234567890abc\r\n',
    '0\r\nX: 1\n\r\n',
    '0\r\nbad line\r\n\r\n',
  ])('refuses %j', (s) => {
    expect(() => decode([s])).toThrow(ChunkedError);
  });
});
