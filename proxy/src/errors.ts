/**
 * Errors of the proxy, in the style of undici: one base class with a stable
 * `code`, the cause kept in `{ cause }`. The HTTP status of every error the
 * data plane can answer with is decided in {@link statusForError}, and only there.
 */

export type TetherErrorCode =
  | 'TETHER_NO_ENDPOINT'
  | 'TETHER_UPSTREAM_TIMEOUT'
  | 'TETHER_UPSTREAM_REFUSED'
  | 'TETHER_UPSTREAM_RESET'
  | 'TETHER_UPSTREAM_PROTOCOL'
  | 'TETHER_NO_TABLE'
  | 'TETHER_INVALID_CONFIG'
  | 'TETHER_STALE_REVISION';

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
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'ECONNABORTED']);

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
 * one place too): no endpoint or no table → 503; timeout → 504; refused,
 * reset or a broken response → 502.
 */
export function statusForError(err: TetherError): 502 | 503 | 504 {
  switch (err.code) {
    case 'TETHER_NO_ENDPOINT':
    case 'TETHER_NO_TABLE':
      return 503;
    case 'TETHER_UPSTREAM_TIMEOUT':
      return 504;
    default:
      return 502;
  }
}
