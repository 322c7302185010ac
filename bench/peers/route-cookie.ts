/**
 * The affinity job every Node peer in `make bench` does, the same for each
 * so that only the forwarding library differs: a plain `route` cookie that
 * names the endpoint, as nginx-sticky-module and HAProxy `cookie insert` do
 * (no signature, no timeouts: less work than Tether's signed cookie).
 *
 * - A request without a valid cookie is a new pin: the next endpoint in
 *   round-robin order, and the answer carries `Set-Cookie: route=<id>`.
 * - A request whose cookie names a known endpoint goes to it; no Set-Cookie
 *   (HAProxy `cookie insert indirect`: the cookie is only set when it changes).
 * - An unknown, empty or malformed value counts as no cookie.
 *
 * Pure: no I/O, so the peers' choice is unit-tested apart from their libraries.
 */

/** One endpoint of a peer: the id its cookie carries, and its loopback port. */
export interface PeerEndpoint {
  readonly id: string;
  readonly port: number;
}

/** The name of the affinity cookie (nginx-sticky-module's default, and Tether's). */
export const ROUTE_COOKIE = 'route';

/** Where a request goes, and the Set-Cookie header its answer carries (new pins only). */
export interface RouteChoice {
  readonly endpoint: PeerEndpoint;
  /** `route=<id>; Path=/; HttpOnly; SameSite=Lax` for a new pin; `undefined` when pinned. */
  readonly setCookie: string | undefined;
}

/**
 * The value of cookie `name` in a request's `Cookie` header (the first one,
 * as RFC 6265 §5.4 orders them), or `undefined` when it is absent or empty.
 * Pairs are split on `;`, whitespace around them is ignored.
 */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let from = 0;
  while (from < header.length) {
    let end = header.indexOf(';', from);
    if (end < 0) end = header.length;
    const eq = header.indexOf('=', from);
    if (eq > from && eq < end && header.slice(from, eq).trim() === name) {
      const value = header.slice(eq + 1, end).trim();
      return value === '' ? undefined : value;
    }
    from = end + 1;
  }
  return undefined;
}

/**
 * Parses `id=port` arguments (`be-1=8081`) into endpoints.
 *
 * @throws {Error} on a missing `=`, an empty or repeated id, or a port outside 1..65535.
 */
export function parseEndpointArgs(args: readonly string[]): PeerEndpoint[] {
  if (args.length === 0) throw new Error('no endpoints: expected ID=PORT arguments');
  const seen = new Set<string>();
  return args.map((arg) => {
    const eq = arg.lastIndexOf('=');
    const id = arg.slice(0, eq);
    const port = Number(arg.slice(eq + 1));
    if (eq <= 0 || !/^[A-Za-z0-9._-]+$/.test(id))
      throw new Error(`${JSON.stringify(arg)}: expected ID=PORT, ID of letters, digits, . _ -`);
    if (!Number.isInteger(port) || port < 1 || port > 65_535)
      throw new Error(`${JSON.stringify(arg)}: port must be 1..65535`);
    if (seen.has(id)) throw new Error(`${JSON.stringify(arg)}: endpoint id ${id} given twice`);
    seen.add(id);
    return { id, port };
  });
}

/**
 * The peers' router: round robin for new pins, the cookie for pinned
 * requests. One per peer process; `choose` is called once per request.
 */
export class RouteCookieRouter {
  private readonly byId: Map<string, PeerEndpoint>;
  private readonly endpoints: readonly PeerEndpoint[];
  private readonly setCookies: readonly string[];
  private readonly cookieName: string;
  private next = 0;

  /** @throws {Error} when `endpoints` is empty. */
  constructor(endpoints: readonly PeerEndpoint[], cookieName = ROUTE_COOKIE) {
    if (endpoints.length === 0) throw new Error('a router needs at least one endpoint');
    this.endpoints = endpoints;
    this.byId = new Map(endpoints.map((e) => [e.id, e]));
    this.cookieName = cookieName;
    // Built once: a new pin costs a string lookup, as in HAProxy.
    this.setCookies = endpoints.map((e) => `${cookieName}=${e.id}; Path=/; HttpOnly; SameSite=Lax`);
  }

  /** The endpoint for a request with this `Cookie` header (see the module comment). */
  choose(cookieHeader: string | undefined): RouteChoice {
    const pinned = this.byId.get(readCookie(cookieHeader, this.cookieName) ?? '');
    if (pinned !== undefined) return { endpoint: pinned, setCookie: undefined };
    const i = this.next;
    this.next = (i + 1) % this.endpoints.length;
    return { endpoint: this.endpoints[i] as PeerEndpoint, setCookie: this.setCookies[i] };
  }
}

/**
 * An answer's Set-Cookie headers with ours appended: an endpoint's own
 * cookies (a session id) must survive, as they do through HAProxy.
 */
export function appendSetCookie(existing: string | string[] | undefined, ours: string): string[] {
  if (existing === undefined) return [ours];
  return Array.isArray(existing) ? [...existing, ours] : [existing, ours];
}
