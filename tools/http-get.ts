/**
 * A small HTTP client over `node:http`, for the demo, the bench and the
 * integration tests. `node:http` rather than undici because its Agent honours
 * `localAddress` (a request from 127.0.0.2 … for ClientIP affinity; undici's
 * Agent ignores `connect.localAddress`), and because without an agent every
 * request gets a fresh connection that no pool keeps alive afterwards.
 *
 * Units: every duration is in milliseconds.
 */
import { type Agent, type IncomingHttpHeaders, request } from 'node:http';

/** How long {@link httpGet} waits with no byte moving before it gives up, by default, ms. */
export const DEFAULT_HTTP_TIMEOUT_MS = 5_000;

/** Options of {@link httpGet}; all optional. */
export interface HttpGetOptions {
  /** `GET` by default. */
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** A request body (sent with its length). */
  readonly body?: string | Buffer;
  /**
   * A (keep-alive) Agent to reuse connections, which may carry
   * `localAddress`; `false` (the default): a fresh connection, closed after.
   */
  readonly agent?: Agent | false;
  /** The source address of a fresh connection (127.0.0.x); an Agent carries its own. */
  readonly localAddress?: string;
  /** Limit on a silent connection (no byte either way), ms; {@link DEFAULT_HTTP_TIMEOUT_MS} by default. */
  readonly timeoutMs?: number;
}

/** An HTTP answer, whatever its status. */
export interface HttpAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body, decoded as UTF-8. */
  readonly body: string;
}

/**
 * One HTTP request (GET unless `method` says otherwise); resolves with any
 * status, the body read whole.
 *
 * @throws {Error} (rejects) on a transport failure: refused, reset, or no
 *   byte for `timeoutMs` (then `code` is `'ETIMEDOUT'`). Node's errors carry
 *   their `code` (`ECONNREFUSED`, …).
 */
export function httpGet(url: string, o: HttpGetOptions = {}): Promise<HttpAnswer> {
  const method = o.method ?? 'GET';
  const timeoutMs = o.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        headers: o.headers,
        agent: o.agent ?? false,
        localAddress: o.localAddress,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('timeout', () =>
      req.destroy(
        Object.assign(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
      ),
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

/**
 * The `name=value` pairs that `Set-Cookie` headers set, in order (a later
 * pair for the same name is the one a browser keeps). Attributes (`Path`,
 * `HttpOnly`, …) are dropped; a header without `name=` is skipped.
 *
 * @param setCookie - `headers['set-cookie']` of an answer, or a list of header values.
 */
export function setCookiePairs(setCookie: string | readonly string[] | undefined): Array<[string, string]> {
  const all = setCookie === undefined ? [] : typeof setCookie === 'string' ? [setCookie] : setCookie;
  const pairs: Array<[string, string]> = [];
  for (const header of all) {
    const pair = header.split(';', 1)[0] ?? '';
    const eq = pair.indexOf('=');
    if (eq > 0) pairs.push([pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()]);
  }
  return pairs;
}

/** The value `Set-Cookie` headers give cookie `name` (the last one wins), or `undefined` when none sets it. */
export function setCookieValue(
  setCookie: string | readonly string[] | undefined,
  name: string,
): string | undefined {
  return setCookiePairs(setCookie).findLast(([n]) => n === name)?.[1];
}
