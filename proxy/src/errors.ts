/**
 * Errors of the proxy, in the style of undici: one base class with a stable
 * `code`, the cause kept in `{ cause }`. The HTTP status of every error the
 * data plane can answer with is decided in {@link statusForError}, and only there.
 */

export type TetherErrorCode =
  | 'TETHER_BAD_REQUEST'
  | 'TETHER_BODY_TIMEOUT'
  | 'TETHER_QUEUE_FULL'
  | 'TETHER_QUEUE_TIMEOUT'
  | 'TETHER_CLIENT_GONE'
  | 'TETHER_SEND_TIMEOUT'
  | 'TETHER_NO_ENDPOINT'
  | 'TETHER_UPSTREAM_TIMEOUT'
  | 'TETHER_UPSTREAM_REFUSED'
  | 'TETHER_UPSTREAM_RESET'
  | 'TETHER_UPSTREAM_PROTOCOL'
  | 'TETHER_NO_TABLE'
  | 'TETHER_INVALID_CONFIG'
  | 'TETHER_STALE_REVISION'
  /** `--workers`: a worker did not take a table (exited, or no answer in time), so none did. */
  | 'TETHER_WORKERS_UNAVAILABLE';

export class TetherError extends Error {
  readonly code: TetherErrorCode;
  constructor(code: TetherErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TetherError';
    this.code = code;
  }
}

/** Codes of errors raised while connecting, before any byte of the request left: safe to redispatch. */
const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET_CONNECT',
]);
const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ECONNABORTED']);
/** undici refused the request as given, before any byte left: the client's request is at fault. */
const REQUEST_CODES = new Set([
  'UND_ERR_INVALID_ARG',
  'UND_ERR_NOT_SUPPORTED',
  'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
]);
/** The proxy's own dispatcher was closed (a table swap removed the endpoint): nothing was sent. */
const UNSENT_CODES = new Set(['UND_ERR_CLOSED', 'UND_ERR_DESTROYED']);
/** The endpoint's answer broke HTTP. */
const PROTOCOL_CODES = new Set([
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_INFO',
]);

/**
 * What went wrong with one attempt to forward a request, as the request
 * path and passive health need it:
 *
 * | kind       | meaning                                              | counts against the endpoint |
 * |------------|------------------------------------------------------|-----------------------------|
 * | `connect`  | connect refused / timed out: nothing was sent        | yes                         |
 * | `unsent`   | the proxy's own pool was closed: nothing was sent    | no                          |
 * | `request`  | undici refused the request as given (client's fault) | no → 400                    |
 * | `reset`    | the connection broke before/while answering          | see {@link connectionWasUsed} |
 * | `timeout`  | no response headers / body chunk in time             | yes                         |
 * | `protocol` | a malformed response                                 | yes                         |
 * | `aborted`  | the proxy gave up (client left, its own timeouts)    | no                          |
 * | `other`    | anything else (a proxy bug, not the endpoint's)      | no                          |
 *
 * nginx counts `error`, `timeout` and `invalid_header` of its
 * `proxy_next_upstream` against `max_fails`; a request nginx itself refuses
 * never reaches that point, and neither may ours.
 */
export type FailureKind =
  | 'connect'
  | 'unsent'
  | 'request'
  | 'reset'
  | 'timeout'
  | 'protocol'
  | 'aborted'
  | 'other';

/** Sorts an error from undici (or one the proxy aborted with) into a {@link FailureKind}. */
export function classifyFailure(err: unknown): FailureKind {
  if (err instanceof TetherError) return 'aborted';
  const code = codeOf(err);
  const inner = codeOf((err as { cause?: unknown } | null)?.cause);
  if (CONNECT_CODES.has(code) || CONNECT_CODES.has(inner)) return 'connect';
  if (TIMEOUT_CODES.has(code) || TIMEOUT_CODES.has(inner)) return 'timeout';
  if (code === 'UND_ERR_ABORTED' || (err as { name?: string } | null)?.name === 'AbortError')
    return 'aborted';
  if (UNSENT_CODES.has(code)) return 'unsent';
  if (REQUEST_CODES.has(code)) return 'request';
  if (RESET_CODES.has(code) || RESET_CODES.has(inner)) return 'reset';
  if (code.startsWith('HPE_') || PROTOCOL_CODES.has(code)) return 'protocol';
  return 'other';
}

/** A tag the proxy's connector sets on a socket's errors: bytes it had read when the error struck. */
export const SOCKET_BYTES_READ = Symbol('tether.socketBytesRead');

/**
 * Whether the connection an error struck had already received bytes, i.e.
 * it was a reused keep-alive connection (or a response had begun). A reset
 * on such a connection may be the keep-alive race (the endpoint closed it
 * idle as the request went out, RFC 9112 §9.6), not a fault of the endpoint.
 * Unknown (no socket details on the error) counts as used: never blame an
 * endpoint on a guess.
 */
export function connectionWasUsed(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return true;
  const tagged = (err as { [SOCKET_BYTES_READ]?: number })[SOCKET_BYTES_READ];
  if (typeof tagged === 'number') return tagged > 0;
  const read = (err as { socket?: { bytesRead?: unknown } }).socket?.bytesRead;
  return typeof read === 'number' ? read > 0 : true;
}

function codeOf(err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return '';
}

/** Whether an upstream error happened while connecting (so nothing reached the endpoint). */
export function isConnectError(err: unknown): boolean {
  const code = codeOf(err);
  if (CONNECT_CODES.has(code)) return true;
  const cause = (err as { cause?: unknown } | null)?.cause;
  return cause !== undefined && CONNECT_CODES.has(codeOf(cause));
}

/**
 * Wraps an error from undici or a socket as a TetherError with a stable code.
 */
export function classifyUpstreamError(err: unknown): TetherError {
  if (err instanceof TetherError) return err;
  const code = codeOf(err);
  if (REQUEST_CODES.has(code))
    return new TetherError('TETHER_BAD_REQUEST', `request cannot be forwarded: ${(err as Error).message}`, {
      cause: err,
    });
  const inner = codeOf((err as { cause?: unknown } | null)?.cause);
  const msg = err instanceof Error ? err.message : String(err);
  if (TIMEOUT_CODES.has(code) || TIMEOUT_CODES.has(inner))
    return new TetherError('TETHER_UPSTREAM_TIMEOUT', `upstream timed out: ${msg}`, { cause: err });
  if (CONNECT_CODES.has(code) || CONNECT_CODES.has(inner))
    return new TetherError('TETHER_UPSTREAM_REFUSED', `upstream refused: ${msg}`, { cause: err });
  if (RESET_CODES.has(code) || RESET_CODES.has(inner))
    return new TetherError('TETHER_UPSTREAM_RESET', `upstream reset: ${msg}`, { cause: err });
  return new TetherError('TETHER_UPSTREAM_PROTOCOL', `upstream failed: ${msg}`, { cause: err });
}

/**
 * The one mapping from error to HTTP status (fastify-reply-from keeps it in
 * one place too): a request that cannot be forwarded as sent → 400; a
 * request body too slow → 408 (nginx `client_body_timeout`); no endpoint,
 * no table, queue full or waited too long in it → 503 (HAProxy `timeout
 * queue`); timeout → 504; refused, reset or a broken response → 502.
 * `TETHER_CLIENT_GONE` and `TETHER_SEND_TIMEOUT` are never answered (the
 * client is gone or not reading); 502 is only their formal mapping.
 */
export function statusForError(err: TetherError): 400 | 408 | 502 | 503 | 504 {
  switch (err.code) {
    case 'TETHER_BAD_REQUEST':
      return 400;
    case 'TETHER_BODY_TIMEOUT':
      return 408;
    case 'TETHER_NO_ENDPOINT':
    case 'TETHER_NO_TABLE':
    case 'TETHER_QUEUE_FULL':
    case 'TETHER_QUEUE_TIMEOUT':
      return 503;
    case 'TETHER_UPSTREAM_TIMEOUT':
      return 504;
    default:
      return 502;
  }
}
