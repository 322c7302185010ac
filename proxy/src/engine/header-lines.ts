/**
 * The header section shared by requests and responses (RFC 9112 §5), parsed
 * strictly: `CRLF` line ends only (a bare LF or CR is an error), no obs-fold,
 * a field name is a token directly followed by `:`, a field value holds only
 * VCHAR, obs-text, SP and HTAB. Pure: latin1 strings in, a flat
 * `[name, value, name, value, …]` list out (the shape of Node's
 * `rawHeaders`, which the header rewriting in routing/forwarded-headers.ts takes).
 */

/** Why a head was refused; each maps to one status in the request parser. */
export type HeadProblem =
  | 'bad-line-end'
  | 'obs-fold'
  | 'bad-header-name'
  | 'bad-header-value'
  | 'too-many-headers'
  | 'head-too-large'
  | 'bad-start-line'
  | 'uri-too-long'
  | 'http-version';

/** A malformed head: the problem and a short reason for logs and tests. */
export class HeadError extends Error {
  readonly problem: HeadProblem;
  constructor(problem: HeadProblem, message: string) {
    super(message);
    this.name = 'HeadError';
    this.problem = problem;
  }
}

/** RFC 9110 §5.6.2 `token`. */
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Anything outside RFC 9110 §5.5 `field-value` characters (VCHAR, obs-text, SP, HTAB). */
const BAD_VALUE_CHAR = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Most header fields in one head: HAProxy's `tune.http.maxhdr` default
 * (101). Node allows 2000; a request over this gets 431.
 */
export const MAX_HEADER_COUNT = 100;

/**
 * Where the head in `buf` ends: the index just past its `CRLF CRLF`, or -1
 * when more bytes are needed.
 *
 * @throws {HeadError} `bad-line-end` when a bare LF shows up before the end
 *   (no need to wait for more bytes to refuse it).
 */
export function findHeadEnd(buf: Buffer, from = 0): number {
  const end = buf.indexOf('\r\n\r\n', from, 'latin1');
  const scanTo = end < 0 ? buf.length : end + 2;
  // Every LF before the end must follow a CR: `\n\n` or `x\ny` is a bare LF.
  let lf = buf.indexOf(10, from);
  while (lf >= 0 && lf < scanTo) {
    if (lf === 0 || buf[lf - 1] !== 13) throw new HeadError('bad-line-end', 'bare LF in the head');
    lf = buf.indexOf(10, lf + 1);
  }
  return end < 0 ? -1 : end + 4;
}

/**
 * Parses the header lines of a head (after the start line).
 *
 * @param text - the head as latin1, from the first header line to just
 *   before the final empty line; each line ends in CRLF.
 * @returns the flat `[name, value, …]` list, names as sent, values trimmed of OWS.
 * @throws {HeadError} on a bare CR, obs-fold, a bad name or value, or more than {@link MAX_HEADER_COUNT} fields.
 */
export function parseHeaderLines(text: string): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    const eol = text.indexOf('\r\n', at);
    if (eol < 0) throw new HeadError('bad-line-end', 'header line without CRLF');
    const first = text.charCodeAt(at);
    if (first === 32 || first === 9) throw new HeadError('obs-fold', 'obs-fold (continued header line)');
    const colon = text.indexOf(':', at);
    if (colon < 0 || colon > eol) throw new HeadError('bad-header-name', 'header line without a colon');
    const name = text.slice(at, colon);
    if (!TOKEN.test(name)) throw new HeadError('bad-header-name', `bad header name ${JSON.stringify(name)}`);
    let vs = colon + 1;
    let ve = eol;
    while (vs < ve && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
    const value = text.slice(vs, ve);
    // A bare CR, NUL or other control character (the line itself ends at the first CRLF).
    if (BAD_VALUE_CHAR.test(value)) throw new HeadError('bad-header-value', `bad value of header ${name}`);
    if (out.length >= MAX_HEADER_COUNT * 2) throw new HeadError('too-many-headers', 'too many header fields');
    out.push(name, value);
    at = eol + 2;
  }
  return out;
}

/**
 * The framing a head's `Content-Length` and `Transfer-Encoding` give, read
 * strictly (RFC 9112 §6.1–6.3); anything ambiguous is an error, never a guess:
 *
 * - both present → error (the classic smuggling pair);
 * - `Content-Length` more than once, even with equal values, or a list, or
 *   anything but digits (no sign, no spaces) → error;
 * - `Transfer-Encoding` other than exactly `chunked` (one coding, once) →
 *   error: `gzip, chunked` would need its coding passed on and no endpoint
 *   seen in practice sends it, `chunked, chunked` or `chunked` not last is
 *   ambiguous.
 */
export type Framing =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' };

/** The reason a framing was refused. */
export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

/**
 * Reads the framing headers of a parsed head.
 * @throws {FramingError} as {@link Framing} lists.
 */
export function readFraming(raw: readonly string[]): Framing {
  let cl: string | undefined;
  let te: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === 14 && n.toLowerCase() === 'content-length') {
      if (cl !== undefined) throw new FramingError('Content-Length more than once');
      cl = raw[i + 1] as string;
    } else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') {
      if (te !== undefined) throw new FramingError('Transfer-Encoding more than once');
      te = raw[i + 1] as string;
    }
  }
  if (te !== undefined) {
    if (cl !== undefined) throw new FramingError('both Content-Length and Transfer-Encoding');
    if (te.toLowerCase() !== 'chunked')
      throw new FramingError(`Transfer-Encoding ${te} (only chunked is served)`);
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    if (!/^[0-9]{1,15}$/.test(cl)) throw new FramingError(`Content-Length ${JSON.stringify(cl)}`);
    return { kind: 'length', length: Number(cl) };
  }
  return { kind: 'none' };
}

/** The value of the first header `lower` (a lower-case name), or undefined. */
export function headerValue(raw: readonly string[], lower: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === lower.length && n.toLowerCase() === lower) return raw[i + 1];
  }
  return undefined;
}

/** Every value of header `lower` joined with `sep` (Node's `req.headers` style), or undefined. */
export function joinedHeader(raw: readonly string[], lower: string, sep = ', '): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === lower.length && n.toLowerCase() === lower)
      out = out === undefined ? (raw[i + 1] as string) : `${out}${sep}${raw[i + 1]}`;
  }
  return out;
}

/** How many times header `lower` occurs. */
export function countHeader(raw: readonly string[], lower: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const h = raw[i] as string;
    if (h.length === lower.length && h.toLowerCase() === lower) n++;
  }
  return n;
}

/** Whether a comma-separated header value (e.g. `Connection`) lists `token` (lower case). */
export function listHas(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (v === token) return true;
  for (const t of v.split(',')) if (t.trim() === token) return true;
  return false;
}
