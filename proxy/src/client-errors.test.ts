import { describe, expect, it } from 'vitest';
import {
  formatRefusal,
  MAX_REQUEST_TARGET_LENGTH,
  refusalForClientError,
  refusalForRequest,
} from './client-errors.ts';

describe('refusalForClientError', () => {
  const longLine = Buffer.from(`GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const longHeader = Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20_000)}\r\n\r\n`);
  it.each([
    { desc: 'a reset: nothing to answer', code: 'ECONNRESET', raw: undefined, want: undefined },
    {
      desc: 'header overflow in the request line → 414',
      code: 'HPE_HEADER_OVERFLOW',
      raw: longLine,
      want: 414,
    },
    { desc: 'header overflow in a header → 431', code: 'HPE_HEADER_OVERFLOW', raw: longHeader, want: 431 },
    { desc: 'header overflow, chunk unknown → 431', code: 'HPE_HEADER_OVERFLOW', raw: undefined, want: 431 },
    {
      desc: 'header overflow in a chunk in the middle of a URI → 431 (cannot tell)',
      code: 'HPE_HEADER_OVERFLOW',
      raw: Buffer.from('aaaa'),
      want: 431,
    },
    { desc: 'request timeout → 408', code: 'ERR_HTTP_REQUEST_TIMEOUT', raw: undefined, want: 408 },
    {
      desc: 'chunk extensions too large → 413',
      code: 'HPE_CHUNK_EXTENSIONS_OVERFLOW',
      raw: undefined,
      want: 413,
    },
    { desc: 'TE with CL → 400', code: 'HPE_INVALID_TRANSFER_ENCODING', raw: undefined, want: 400 },
    { desc: 'no code at all → 400', code: undefined, raw: undefined, want: 400 },
  ])('$desc', ({ code, raw, want }) => {
    expect(refusalForClientError(code, raw)?.status).toBe(want);
  });
});

describe('refusalForRequest', () => {
  it.each([
    { desc: 'HTTP/1.1 origin form', version: '1.1', url: '/a?b', want: undefined },
    { desc: 'HTTP/1.0', version: '1.0', url: '/', want: undefined },
    { desc: 'HTTP/0.9', version: '0.9', url: '/', want: 505 },
    { desc: 'HTTP/2.0 in a request line', version: '2.0', url: '/', want: 505 },
    { desc: 'absolute form', version: '1.1', url: 'http://evil/', want: 400 },
    { desc: 'asterisk form', version: '1.1', url: '*', want: 400 },
    { desc: 'no target', version: '1.1', url: undefined, want: 400 },
    {
      desc: 'target at the limit',
      version: '1.1',
      url: `/${'a'.repeat(MAX_REQUEST_TARGET_LENGTH - 1)}`,
      want: undefined,
    },
    {
      desc: 'target over the limit',
      version: '1.1',
      url: `/${'a'.repeat(MAX_REQUEST_TARGET_LENGTH)}`,
      want: 414,
    },
  ])('$desc → $want', ({ version, url, want }) => {
    expect(refusalForRequest(version, url)?.status).toBe(want);
  });

  it.each([
    { desc: 'chunked', version: '1.1', te: 'chunked', want: undefined },
    { desc: 'gzip, chunked', version: '1.1', te: 'gzip, Chunked ', want: undefined },
    { desc: 'gzip alone', version: '1.1', te: 'gzip', want: 400 },
    { desc: 'chunked, gzip', version: '1.1', te: 'chunked, gzip', want: 400 },
    { desc: 'empty', version: '1.1', te: '', want: 400 },
    { desc: 'chunked in HTTP/1.0', version: '1.0', te: 'chunked', want: 400 },
  ])('Transfer-Encoding: $desc → $want', ({ version, te, want }) => {
    expect(refusalForRequest(version, '/', te)?.status).toBe(want);
  });
});

describe('formatRefusal', () => {
  it('is a complete response that closes the connection, with a body of the length it says', () => {
    const text = formatRefusal({ status: 431, code: 'TETHER_HEADERS_TOO_LARGE' });
    const [head, body] = text.split('\r\n\r\n') as [string, string];
    expect(head).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(head).toMatch(/\r\nConnection: close(\r\n|$)/);
    expect(head).toMatch(/\r\nX-Tether-Error: TETHER_HEADERS_TOO_LARGE(\r\n|$)/);
    expect(Number(/Content-Length: (\d+)/.exec(head)?.[1])).toBe(Buffer.byteLength(body));
  });
});
