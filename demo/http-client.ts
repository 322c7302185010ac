/**
 * The demo's HTTP clients, on `tools/http-get.ts` (node:http: its Agent
 * honours `localAddress`, which the ClientIP part needs to speak from
 * 127.0.0.2 … 127.0.0.9; undici's Agent ignores it), and a minimal cookie
 * jar, as a browser would keep one.
 */
import type { Agent } from 'node:http';
import { type HttpAnswer, httpGet, setCookieValue } from '../tools/http-get.ts';

/** Per-request limit, ms: a loopback answer takes about 1 ms; anything near this is a failure. */
const REQUEST_TIMEOUT_MS = 5_000;

/** One answer, as the demo judges it. Transport failures are answers too (status 0), never throws. */
export interface Reply {
  /** HTTP status; 0 when no response came (connection refused, reset, timeout). */
  readonly status: number;
  /** The endpoint id the backend reported. */
  readonly endpoint: string | undefined;
  /** Who the backend thinks the client is (X-Client-Id, else the first X-Forwarded-For entry). */
  readonly client: string | undefined;
  /** The backend's per-client request counter. */
  readonly count: number | undefined;
  /** `Set-Cookie` headers of the response. */
  readonly setCookies: readonly string[];
  /** The proxy's `x-tether-error` header, or a transport error message. */
  readonly error: string | undefined;
}

/** Whether a reply is a good backend answer: 200, from an endpoint, no proxy error. */
export function isOk(r: Reply): boolean {
  return r.status === 200 && r.endpoint !== undefined && r.error === undefined;
}

/**
 * GETs `url` and reads the backend's JSON answer.
 *
 * @param agent - a keep-alive node:http Agent (carries `localAddress` for ClientIP clients).
 */
export async function getReply(
  url: string,
  agent: Agent,
  headers: Record<string, string> = {},
): Promise<Reply> {
  let res: HttpAnswer;
  try {
    res = await httpGet(url, { agent, headers, timeoutMs: REQUEST_TIMEOUT_MS });
  } catch (err) {
    const error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return { status: 0, endpoint: undefined, client: undefined, count: undefined, setCookies: [], error };
  }
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(res.body) as Record<string, unknown>;
  } catch {
    // Not the backend's JSON (an error page of the proxy): judged by status and header below.
  }
  const tetherError = res.headers['x-tether-error'];
  return {
    status: res.status,
    endpoint: typeof body.endpoint === 'string' ? body.endpoint : undefined,
    client: typeof body.client === 'string' ? body.client : undefined,
    count: typeof body.count === 'number' ? body.count : undefined,
    setCookies: res.headers['set-cookie'] ?? [],
    error: typeof tetherError === 'string' ? tetherError : undefined,
  };
}

/**
 * A browser-like client of the Cookie affinity demo: it keeps the affinity
 * cookie the proxy sets and sends it back, and names itself in `X-Client-Id`
 * so the backends count its requests.
 */
export class CookieClient {
  readonly id: string;
  /** The affinity cookie's value, once the proxy has set one. */
  cookie: string | undefined;
  private readonly cookieName: string;
  private readonly agent: Agent;

  constructor(id: string, cookieName: string, agent: Agent) {
    this.id = id;
    this.cookieName = cookieName;
    this.agent = agent;
  }

  /** One request with the jar's cookie; a `Set-Cookie` in the answer replaces it. */
  async get(baseUrl: string): Promise<Reply> {
    const reply = await this.getWith(baseUrl, this.cookie);
    this.cookie = setCookieValue(reply.setCookies, this.cookieName) ?? this.cookie;
    return reply;
  }

  /** One request with a given cookie value (or none), leaving the jar alone. */
  getWith(baseUrl: string, cookie: string | undefined): Promise<Reply> {
    const headers: Record<string, string> = { 'x-client-id': this.id };
    if (cookie !== undefined) headers.cookie = `${this.cookieName}=${cookie}`;
    return getReply(`${baseUrl}/cart`, this.agent, headers);
  }
}

/** GETs `url` without keep-alive and returns status and body text; a transport error is status 0. */
export async function getText(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await httpGet(url, { timeoutMs: REQUEST_TIMEOUT_MS });
    return { status: res.status, body: res.body };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
}
