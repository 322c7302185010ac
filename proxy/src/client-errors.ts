/**
 * What the proxy answers, by itself, to a request it will not forward: a
 * parse error of Node's HTTP parser (`clientError`), a request-line it does
 * not serve, a refused WebSocket handshake. Pure: status choice and the raw
 * bytes of the answer; the listener in proxy-server.ts writes them.
 */

/** A refusal: the status and a stable code for the `X-Tether-Error` header and logs. */
export interface Refusal {
  readonly status: number;
  readonly code: string;
}

/**
 * Longest request target served, in bytes: nginx's default
 * `large_client_header_buffers 4 8k` answers 414 above 8 KiB. Node's parser
 * would take up to its 16 KiB header limit, so the check is ours.
 */
export const MAX_REQUEST_TARGET_LENGTH = 8 * 1024;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/**
 * The refusal for an error Node's HTTP server reports on a client
 * connection, or undefined when the connection is simply gone (nothing to
 * answer).
 *
 * - `HPE_HEADER_OVERFLOW` (over `--max-http-header-size`, 16 KiB): 414 when
 *   the request line alone is what overflowed (nginx answers 414 there), else
 *   431 (RFC 6585 §5).
 * - `ERR_HTTP_REQUEST_TIMEOUT` (headers or request not received in time): 408.
 * - `HPE_CHUNK_EXTENSIONS_OVERFLOW`: 413, as Node itself answers.
 * - anything else the parser refused (bad framing, `Transfer-Encoding` with
 *   `Content-Length`, bare CR/LF, obs-fold, …): 400.
 *
 * @param rawPacket - the chunk the parser failed on (Node's `err.rawPacket`), to tell 414 from 431.
 */
export function refusalForClientError(code: string | undefined, rawPacket?: Buffer): Refusal | undefined {
  switch (code) {
    case 'ECONNRESET':
    case 'EPIPE':
    case 'ERR_STREAM_DESTROYED':
      return undefined;
    case 'HPE_HEADER_OVERFLOW':
      return requestLineOverflowed(rawPacket)
        ? { status: 414, code: 'TETHER_URI_TOO_LONG' }
        : { status: 431, code: 'TETHER_HEADERS_TOO_LARGE' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'TETHER_REQUEST_TIMEOUT' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, code: 'TETHER_CHUNK_EXTENSIONS_TOO_LARGE' };
    default:
      return { status: 400, code: 'TETHER_BAD_REQUEST' };
  }
}

/** Whether a header overflow happened in the request line: the chunk starts with a method and its first line is longer than {@link MAX_REQUEST_TARGET_LENGTH}. */
function requestLineOverflowed(raw: Buffer | undefined): boolean {
  if (raw === undefined || !/^[A-Z]{3,10} /.test(raw.subarray(0, 11).toString('latin1'))) return false;
  const eol = raw.indexOf('\n');
  return eol < 0 || eol > MAX_REQUEST_TARGET_LENGTH;
}

/**
 * The refusal for a parsed request the proxy will not forward, or undefined.
 *
 * - HTTP/0.9 and HTTP/2+ on an HTTP/1 listener: 505 (nginx answers 505 to
 *   `HTTP/2.0` in a request line; an 0.9 request has no headers to route on).
 * - A target longer than {@link MAX_REQUEST_TARGET_LENGTH}: 414.
 * - A target not in origin form (`http://host/…` or `*`): 400. Absolute
 *   form is for forward proxies; a reverse proxy that accepted it would have
 *   two hosts to choose from.
 * - A `Transfer-Encoding` whose last coding is not `chunked`, or any in an
 *   HTTP/1.0 request: 400, as RFC 9112 §6.3 requires (the body's length
 *   cannot be known). Node's parser refuses these too, but only after it
 *   has handed the request over, which would forward its head.
 *
 * @param transferEncoding - the request's `Transfer-Encoding` value, if any.
 */
export function refusalForRequest(
  httpVersion: string,
  url: string | undefined,
  transferEncoding?: string,
): Refusal | undefined {
  if (httpVersion !== '1.1' && httpVersion !== '1.0') return { status: 505, code: 'TETHER_HTTP_VERSION' };
  const target = url ?? '';
  if (target.length > MAX_REQUEST_TARGET_LENGTH) return { status: 414, code: 'TETHER_URI_TOO_LONG' };
  if (!target.startsWith('/')) return { status: 400, code: 'TETHER_BAD_REQUEST_TARGET' };
  if (transferEncoding !== undefined) {
    const last = transferEncoding.split(',').at(-1)?.trim().toLowerCase();
    if (httpVersion === '1.0' || last !== 'chunked') return { status: 400, code: 'TETHER_BAD_FRAMING' };
  }
  return undefined;
}

/**
 * The raw bytes of a refusal written straight to a socket: status line,
 * `Connection: close`, a short text body (nginx's style).
 */
export function formatRefusal(r: Refusal): string {
  const reason = REASONS[r.status] ?? 'Error';
  const body = `${r.status} ${reason}\n`;
  return (
    `HTTP/1.1 ${r.status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${body.length}\r\nX-Tether-Error: ${r.code}\r\n\r\n${body}`
  );
}
