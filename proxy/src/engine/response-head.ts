/**
 * The response head parser of the native engine (RFC 9112 §4, §6.3), pure.
 * An endpoint's answer that breaks these rules is a protocol failure of the
 * endpoint (502, counted against its passive health, as undici's parse
 * errors were): errors carry an `HPE_`-style code so errors.ts classifies
 * them as `protocol`.
 */
import {
  findHeadEnd,
  type HeadError,
  headerValue,
  listHas,
  parseHeaderLines,
  readFraming,
} from './header-lines.ts';

/** Largest response head, bytes (undici's `maxHeaderSize` default is 16 KiB too). */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;

/** How the body of a response is delimited. */
export type ResponseFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** Read until the endpoint closes (no length, no chunked: RFC 9112 §6.3 rule 8). */
  | { readonly kind: 'close' };

export interface ResponseHead {
  readonly status: number;
  readonly reason: string;
  readonly version: '1.1' | '1.0';
  readonly rawHeaders: string[];
  readonly framing: ResponseFraming;
  /** The endpoint keeps the connection open after this response. */
  readonly keepAlive: boolean;
  /** Bytes the head took. */
  readonly size: number;
}

/** A malformed response, with an llhttp-like code (`HPE_*`) that classifyFailure reads as `protocol`. */
export class ResponseParseError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ResponseParseError';
    this.code = code;
  }
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?$/;

/**
 * Parses the response head at the start of `buf`.
 *
 * - The body's framing follows RFC 9112 §6.3: none for a HEAD request and
 *   for 1xx, 204 and 304; `chunked`; a `Content-Length`; else until close.
 * - Ambiguous framing (both headers, repeated or non-numeric
 *   `Content-Length`, a coding other than `chunked`) is refused, where the
 *   RFC would let a recipient pick one.
 * - A missing reason phrase after the status is accepted (`HTTP/1.1 200`),
 *   as llhttp does.
 *
 * @param requestMethod - the method of the request this answers (HEAD has no body).
 * @returns the head, or undefined while it is not all in `buf`.
 * @throws {ResponseParseError} on a malformed head or one over {@link MAX_RESPONSE_HEAD_BYTES}.
 */
export function parseResponseHead(buf: Buffer, requestMethod: string): ResponseHead | undefined {
  let end: number;
  try {
    end = findHeadEnd(buf);
  } catch (err) {
    throw new ResponseParseError('HPE_LF_EXPECTED', (err as Error).message);
  }
  if (end < 0) {
    if (buf.length > MAX_RESPONSE_HEAD_BYTES)
      throw new ResponseParseError('HPE_HEADER_OVERFLOW', 'response head too large');
    return undefined;
  }
  if (end > MAX_RESPONSE_HEAD_BYTES)
    throw new ResponseParseError('HPE_HEADER_OVERFLOW', 'response head too large');
  const text = buf.toString('latin1', 0, end - 2);
  const eol = text.indexOf('\r\n');
  const m = STATUS_LINE.exec(text.slice(0, eol));
  if (m === null) throw new ResponseParseError('HPE_INVALID_STATUS', 'malformed status line');
  const version = m[1] === '1' ? '1.1' : '1.0';
  const status = Number(m[2]);
  let rawHeaders: string[];
  try {
    rawHeaders = parseHeaderLines(text.slice(eol + 2));
  } catch (err) {
    throw new ResponseParseError('HPE_INVALID_HEADER_TOKEN', (err as HeadError).message);
  }
  const connection = headerValue(rawHeaders, 'connection');
  const keepAlive = version === '1.1' ? !listHas(connection, 'close') : listHas(connection, 'keep-alive');
  let framing: ResponseFraming;
  try {
    const f = readFraming(rawHeaders);
    if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304)
      framing = { kind: 'none' };
    else if (f.kind === 'none') framing = { kind: 'close' };
    else framing = f;
  } catch (err) {
    throw new ResponseParseError('HPE_UNEXPECTED_CONTENT_LENGTH', (err as Error).message);
  }
  return {
    status,
    reason: m[3] ?? '',
    version,
    rawHeaders,
    framing,
    keepAlive: keepAlive && framing.kind !== 'close',
    size: end,
  };
}
