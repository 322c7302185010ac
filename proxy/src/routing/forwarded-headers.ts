/**
 * The request headers an endpoint receives, and the response headers a
 * client receives: the other side's, less hop-by-hop ones, plus the
 * `X-Forwarded-*` and `X-Real-IP` this proxy vouches for. Pure over the raw
 * header list Node gives (`[name, value, name, value, …]`); the plain HTTP
 * path and the WebSocket path both build their headers here.
 *
 * What an endpoint receives (the README's "Headers Tether sends" table):
 *
 * | header                | from an untrusted peer          | from a trusted peer (clientIP.trustedProxies) |
 * |-----------------------|---------------------------------|-----------------------------------------------|
 * | `X-Forwarded-For`     | client's value + `, <peer>`     | same (nginx `$proxy_add_x_forwarded_for`)     |
 * | `X-Forwarded-Proto`   | `http` / `https` of this hop    | the peer's value, else this hop's             |
 * | `X-Forwarded-Host`    | the request's `Host`            | the peer's value, else `Host`                 |
 * | `X-Forwarded-Port`    | the port the client connected to| the peer's value, else this hop's port        |
 * | `X-Real-IP`           | the peer's address              | the peer's value, else the peer's address     |
 * | `Forwarded`, `True-Client-IP`, `X-Client-IP`, … ({@link UNTRUSTED_DROP}) | removed | passed unchanged |
 *
 * This is ingress-nginx's default (`use-forwarded-headers: false` overwrites
 * what a client claims) and nginx `real_ip` with `set_real_ip_from`: only a
 * trusted proxy may speak for the client.
 */

/** Hop-by-hop request headers (RFC 9110 §7.6.1), never forwarded; `HTTP2-Settings` belongs to an h2c upgrade (RFC 7540 §3.2.1). */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
];

/** Headers this proxy writes itself: the client's copies are read (from a trusted peer) and never passed as they are. */
const REWRITTEN = [
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
];

/**
 * Client-identity and scheme headers that only a trusted proxy may set: an
 * app that believes any of them (Rails and Rack read `Client-IP`, Spring reads
 * `Forwarded` and `X-Forwarded-Prefix`/`-Ssl`, CDNs' `True-Client-IP`,
 * `CF-Connecting-IP`, `Fastly-Client-IP`) would take a client's word for its
 * address or scheme. Removed when the peer is not trusted.
 */
export const UNTRUSTED_DROP: readonly string[] = [
  'forwarded',
  'true-client-ip',
  'x-client-ip',
  'client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
  'x-original-forwarded-for',
  'x-forwarded',
  'forwarded-for',
  'x-forwarded-scheme',
  'x-forwarded-protocol',
  'x-forwarded-ssl',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'x-scheme',
  'x-url-scheme',
  'front-end-https',
];

const DROP_ALWAYS = new Set([...HOP_BY_HOP, ...REWRITTEN]);
const DROP_UNTRUSTED = new Set([...DROP_ALWAYS, ...UNTRUSTED_DROP]);

/**
 * Headers a `Connection` token may not remove: without `Host` the endpoint
 * would see the proxy's dial address instead of the site's name (the
 * "hop-by-hop header abuse" of `Connection: host`). nginx ignores
 * `Connection` tokens altogether; this keeps RFC 9110's rule for the rest.
 */
const NOT_NAMEABLE = new Set(['host']);

/** What the proxy knows of the hop a request came over. */
export interface Hop {
  /** The peer's address as the socket reports it (`::ffff:` forms allowed). */
  readonly peer: string;
  /** The peer is in `clientIP.trustedProxies`: its X-Forwarded-* are believed. */
  readonly peerTrusted: boolean;
  /** The connection to the proxy is TLS. */
  readonly tls: boolean;
  /** The proxy's port the client connected to (`X-Forwarded-Port`); absent when unknown. */
  readonly port?: number | undefined;
}

/**
 * Whether the client's request was https: TLS to this proxy, or a trusted
 * proxy's `X-Forwarded-Proto: https` (what `secure: Auto` keys on).
 */
export function isHttps(hop: Hop, forwardedProto: string | undefined): boolean {
  return hop.tls || (hop.peerTrusted && forwardedProto?.trim().toLowerCase().startsWith('https') === true);
}

/** The header names a `Connection` value lists, lower case, less `close`, `keep-alive` and those it may not name. */
function connectionTokens(value: string, into: Set<string> | undefined): Set<string> | undefined {
  let named = into;
  for (const token of value.toLowerCase().split(',')) {
    const t = token.trim();
    if (t === '' || t === 'keep-alive' || t === 'close' || NOT_NAMEABLE.has(t)) continue;
    named ??= new Set();
    named.add(t);
  }
  return named;
}

/**
 * Builds the endpoint's request headers.
 *
 * - Drops hop-by-hop headers and those the client's `Connection` names
 *   (except `Host`).
 * - Drops {@link UNTRUSTED_DROP} from an untrusted peer.
 * - `X-Forwarded-For`: the client's value with the peer appended (nginx
 *   `$proxy_add_x_forwarded_for`).
 * - `X-Forwarded-Proto`, `-Host`, `-Port`, `X-Real-IP`: kept from a trusted
 *   peer, else this hop's scheme, `Host`, port and peer address. `Host`
 *   itself passes unchanged (HAProxy's default).
 * - With `upgrade`: `Connection: Upgrade` and `Upgrade: <upgrade>` are added
 *   back, for a WebSocket handshake (RFC 6455 §4.1).
 *
 * Worked example: peer 127.0.0.1 (untrusted) on port 8080 sends `Host: shop`,
 * `X-Forwarded-For: 198.51.100.7`, `X-Real-IP: 1.2.3.4`, `Connection: x-debug`,
 * `X-Debug: 1` → `Host: shop`, `X-Forwarded-For: 198.51.100.7, 127.0.0.1`,
 * `X-Forwarded-Proto: http`, `X-Forwarded-Host: shop`, `X-Forwarded-Port: 8080`,
 * `X-Real-IP: 127.0.0.1`.
 *
 * @param raw - Node's `req.rawHeaders`.
 * @param upgrade - the protocol of an upgrade request (`websocket`), or undefined.
 * @returns a flat `[name, value, …]` list, as undici takes it.
 */
export function buildUpstreamHeaders(raw: readonly string[], hop: Hop, upgrade?: string): string[] {
  const out: string[] = [];
  let xff: string | undefined;
  let xfp: string | undefined;
  let xfh: string | undefined;
  let xfport: string | undefined;
  let realIp: string | undefined;
  let host: string | undefined;
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name === 'connection') named = connectionTokens(value, named);
    else if (name === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
    else if (name === 'x-forwarded-proto') xfp ??= value;
    else if (name === 'x-forwarded-host') xfh ??= value;
    else if (name === 'x-forwarded-port') xfport ??= value;
    else if (name === 'x-real-ip') realIp ??= value;
    else if (name === 'host') host ??= value;
  }
  const drop = hop.peerTrusted ? DROP_ALWAYS : DROP_UNTRUSTED;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (drop.has(name) || named?.has(name)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  const peer = hop.peer.startsWith('::ffff:') && hop.peer.includes('.') ? hop.peer.slice(7) : hop.peer;
  const trusted = hop.peerTrusted;
  out.push('x-forwarded-for', xff === undefined ? peer : `${xff}, ${peer}`);
  out.push('x-forwarded-proto', (trusted ? xfp : undefined) ?? (isHttps(hop, undefined) ? 'https' : 'http'));
  const forwardedHost = (trusted ? xfh : undefined) ?? host;
  if (forwardedHost !== undefined) out.push('x-forwarded-host', forwardedHost);
  const port = (trusted ? xfport : undefined) ?? (hop.port === undefined ? undefined : String(hop.port));
  if (port !== undefined) out.push('x-forwarded-port', port);
  out.push('x-real-ip', (trusted ? realIp : undefined) ?? peer);
  if (upgrade !== undefined) out.push('connection', 'Upgrade', 'upgrade', upgrade);
  return out;
}

/** Hop-by-hop response headers (RFC 9110 §7.6.1); Node frames the body itself. */
const HOP_BY_HOP_RESPONSE = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
];

const HOP_BY_HOP_RESPONSE_SET = new Set(HOP_BY_HOP_RESPONSE);

/**
 * Removes, in place, the hop-by-hop headers of an endpoint's response and
 * every header its `Connection` names (RFC 9110 §7.6.1: "a proxy MUST
 * remove … any header field listed in the Connection header field").
 * With `keepUpgrade` (a 101 to a WebSocket handshake) `Upgrade` stays and
 * `Connection` becomes `Upgrade`, as RFC 6455 §4.2.2 needs.
 *
 * Worked example: `Connection: close, X-Internal`, `X-Internal: 1`,
 * `Content-Type: text/plain` → `Content-Type: text/plain`.
 *
 * @param headers - lower-case names, as undici and Node give them; changed in place.
 * @returns `headers`.
 */
export function stripResponseHopHeaders<T extends Record<string, string | string[] | undefined>>(
  headers: T,
  keepUpgrade = false,
): T {
  const h = headers as Record<string, string | string[] | undefined>;
  const conn = h.connection;
  if (conn !== undefined) {
    const named = connectionTokens(Array.isArray(conn) ? conn.join(',') : conn, undefined);
    if (named !== undefined)
      for (const name of named) if (!(keepUpgrade && name === 'upgrade')) delete h[name];
  }
  for (const name of HOP_BY_HOP_RESPONSE) if (!(keepUpgrade && name === 'upgrade')) delete h[name];
  if (keepUpgrade) h.connection = 'Upgrade';
  return headers;
}

/**
 * {@link stripResponseHopHeaders} over a raw `[name, value, …]` list (the
 * native engine's shape): the same headers go, names keep their case.
 *
 * @returns a new list.
 */
export function stripResponseHopRawHeaders(raw: readonly string[]): string[] {
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i] as string;
    if (n.length === 10 && n.toLowerCase() === 'connection')
      named = connectionTokens(raw[i + 1] as string, named);
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP_RESPONSE_SET.has(n) || named?.has(n)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}
