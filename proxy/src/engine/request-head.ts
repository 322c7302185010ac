/**
 * The request head parser of the native engine (RFC 9112 §3), pure and
 * strict: whatever a smuggling attack needs two parsers to disagree on is
 * refused here with a status, before any byte reaches an endpoint. Stricter
 * than Node's llhttp where the RFC leaves a choice; every difference is
 * listed in the README ("The native engine") and in request-head.diff.test.ts.
 */
import { MAX_REQUEST_TARGET_LENGTH } from '../client-errors.ts';
import {
  countHeader,
  type Framing,
  type FramingError,
  findHeadEnd,
  type HeadError,
  headerValue,
  listHas,
  parseHeaderLines,
  readFraming,
} from './header-lines.ts';

/**
 * Largest request head, bytes: Node's `--max-http-header-size` default
 * (16 KiB), the limit the node:http path had; nginx's
 * `large_client_header_buffers 4 8k` is in the same range.
 */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A parsed request head. */
export interface RequestHead {
  /** Upper-case method token. */
  readonly method: string;
  /** The request target as sent (origin form is checked by the caller with refusalForRequest). */
  readonly target: string;
  /** `1.1` or `1.0`. */
  readonly version: '1.1' | '1.0';
  /** `[name, value, …]` as sent (names keep their case). */
  readonly rawHeaders: string[];
  readonly framing: Framing;
  /** The connection stays open after the response (HTTP/1.1 unless `close`; 1.0 only with `keep-alive`). */
  readonly keepAlive: boolean;
  /** `Expect: 100-continue` was sent. */
  readonly expectContinue: boolean;
  /** An `Upgrade` the connection header names (a WebSocket handshake): handed to the node:http path. */
  readonly upgrade: boolean;
  /** Bytes the head took in the buffer. */
  readonly size: number;
}

/** A request the engine answers itself: status and the stable code of `X-Tether-Error`. */
export interface RequestRefusal {
  readonly status: number;
  readonly code: string;
  readonly reason: string;
}

export type RequestParse =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'ok'; readonly head: RequestHead }
  | { readonly kind: 'refused'; readonly refusal: RequestRefusal };

const REQUEST_LINE = /^([A-Z]{1,20}) ([\x21-\x7e]+) HTTP\/([0-9])\.([0-9])$/;
/** `GET /` with no version: HTTP/0.9, which has no headers to route on. */
const HTTP09_LINE = /^[A-Z]{1,20} [\x21-\x7e]+$/;

/**
 * Parses the request head at the start of `buf`.
 *
 * Refusals (the status a client gets; the connection is closed after it):
 * - 400 bare LF or CR, obs-fold, a bad header name or value, a bad request
 *   line (lower-case or non-token method, control characters or obs-text in
 *   the target), no `Host` or more than one on HTTP/1.1, any framing
 *   {@link readFraming} refuses, `Transfer-Encoding` on HTTP/1.0, `CONNECT`;
 * - 414 a request line over {@link MAX_REQUEST_TARGET_LENGTH};
 * - 431 a head over {@link MAX_HEAD_BYTES} or with more than 100 fields;
 * - 417 an `Expect` other than `100-continue`;
 * - 505 a version other than 1.0 and 1.1 (HTTP/0.9 included).
 *
 * Empty lines before the request line are skipped (RFC 9112 §2.2).
 *
 * @returns `incomplete` while the head is not all in `buf` and still within limits.
 */
export function parseRequestHead(buf: Buffer): RequestParse {
  let start = 0;
  while (start + 1 < buf.length && buf[start] === 13 && buf[start + 1] === 10) start += 2;
  let end: number;
  try {
    end = findHeadEnd(buf, start);
  } catch (err) {
    return refuse(400, 'TETHER_BAD_REQUEST', (err as Error).message);
  }
  if (end < 0) {
    if (buf.length - start <= MAX_HEAD_BYTES) {
      // A request line already longer than allowed is a 414 without waiting for the rest.
      const eol = buf.indexOf(13, start);
      if ((eol < 0 ? buf.length : eol) - start > MAX_REQUEST_TARGET_LENGTH + 32)
        return refuse(414, 'TETHER_URI_TOO_LONG', 'request line too long');
      return { kind: 'incomplete' };
    }
    const eol = buf.indexOf(13, start);
    if (eol < 0 || eol - start > MAX_REQUEST_TARGET_LENGTH)
      return refuse(414, 'TETHER_URI_TOO_LONG', 'request line too long');
    return refuse(431, 'TETHER_HEADERS_TOO_LARGE', 'request head too large');
  }
  const text = buf.toString('latin1', start, end - 2);
  const eol = text.indexOf('\r\n');
  const line = text.slice(0, eol);
  if (line.length > MAX_REQUEST_TARGET_LENGTH + 32)
    return refuse(414, 'TETHER_URI_TOO_LONG', 'request line too long');
  if (end - start > MAX_HEAD_BYTES) return refuse(431, 'TETHER_HEADERS_TOO_LARGE', 'request head too large');
  const m = REQUEST_LINE.exec(line);
  if (m === null) {
    if (HTTP09_LINE.test(line)) return refuse(505, 'TETHER_HTTP_VERSION', 'HTTP/0.9 request');
    return refuse(400, 'TETHER_BAD_REQUEST', 'malformed request line');
  }
  const [, method, target, major, minor] = m as unknown as [string, string, string, string, string];
  if (major !== '1' || (minor !== '1' && minor !== '0'))
    return refuse(505, 'TETHER_HTTP_VERSION', `HTTP/${major}.${minor}`);
  const version = minor === '1' ? '1.1' : '1.0';
  if (target.length > MAX_REQUEST_TARGET_LENGTH)
    return refuse(414, 'TETHER_URI_TOO_LONG', 'request target too long');
  let rawHeaders: string[];
  try {
    rawHeaders = parseHeaderLines(text.slice(eol + 2));
  } catch (err) {
    const e = err as HeadError;
    if (e.problem === 'too-many-headers') return refuse(431, 'TETHER_HEADERS_TOO_LARGE', e.message);
    return refuse(400, 'TETHER_BAD_REQUEST', e.message);
  }
  if (method === 'CONNECT') return refuse(400, 'TETHER_BAD_REQUEST_TARGET', 'CONNECT is for forward proxies');
  const hosts = countHeader(rawHeaders, 'host');
  if (hosts > 1 || (hosts === 0 && version === '1.1'))
    return refuse(400, 'TETHER_BAD_REQUEST', hosts > 1 ? 'more than one Host' : 'no Host');
  let framing: Framing;
  try {
    framing = readFraming(rawHeaders);
  } catch (err) {
    return refuse(400, 'TETHER_BAD_FRAMING', (err as FramingError).message);
  }
  if (framing.kind === 'chunked' && version === '1.0')
    return refuse(400, 'TETHER_BAD_FRAMING', 'Transfer-Encoding in an HTTP/1.0 request');
  const expect = headerValue(rawHeaders, 'expect');
  let expectContinue = false;
  if (expect !== undefined) {
    if (expect.toLowerCase() !== '100-continue')
      return refuse(417, 'TETHER_EXPECTATION_FAILED', `Expect: ${expect}`);
    expectContinue = true;
  }
  const connection = headerValue(rawHeaders, 'connection');
  const keepAlive = version === '1.1' ? !listHas(connection, 'close') : listHas(connection, 'keep-alive');
  const upgrade = headerValue(rawHeaders, 'upgrade') !== undefined && listHas(connection, 'upgrade');
  return {
    kind: 'ok',
    head: {
      method,
      target,
      version,
      rawHeaders,
      framing,
      keepAlive,
      expectContinue,
      upgrade,
      size: end,
    },
  };
}

function refuse(status: number, code: string, reason: string): RequestParse {
  return { kind: 'refused', refusal: { status, code, reason } };
}
