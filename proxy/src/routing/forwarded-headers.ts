/**
 * The request headers an endpoint receives: the client's, less hop-by-hop
 * ones, plus `X-Forwarded-For`, `-Proto` and `-Host`. Pure over the raw
 * header list Node gives (`[name, value, name, value, …]`).
 */

/** Headers never forwarded (RFC 9110 §7.6.1), plus the X-Forwarded-* rewritten here. */
const DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);

/** What the proxy knows of the hop a request came over. */
export interface Hop {
  /** The peer's address as the socket reports it (`::ffff:` forms allowed). */
  readonly peer: string;
  /** The peer is in `clientIP.trustedProxies`: its X-Forwarded-* are believed. */
  readonly peerTrusted: boolean;
  /** The connection to the proxy is TLS. */
  readonly tls: boolean;
}

/**
 * Whether the client's request was https: TLS to this proxy, or a trusted
 * proxy's `X-Forwarded-Proto: https` (what `secure: Auto` keys on).
 */
export function isHttps(hop: Hop, forwardedProto: string | undefined): boolean {
  return hop.tls || (hop.peerTrusted && forwardedProto?.trim().toLowerCase().startsWith('https') === true);
}

/**
 * Builds the endpoint's request headers.
 *
 * - Drops hop-by-hop headers and those the client's `Connection` names.
 * - `X-Forwarded-For`: the client's value with the peer appended (nginx
 *   `$proxy_add_x_forwarded_for`).
 * - `X-Forwarded-Proto` / `-Host`: kept from a trusted peer, else this hop's
 *   scheme and `Host`. `Host` itself passes unchanged (HAProxy's default).
 *
 * Worked example: peer 127.0.0.1 (untrusted) sends `Host: shop`,
 * `X-Forwarded-For: 198.51.100.7`, `Connection: x-debug`, `X-Debug: 1` →
 * `Host: shop`, `X-Forwarded-For: 198.51.100.7, 127.0.0.1`,
 * `X-Forwarded-Proto: http`, `X-Forwarded-Host: shop`.
 *
 * @param raw - Node's `req.rawHeaders`.
 * @returns a flat `[name, value, …]` list, as undici takes it.
 */
export function buildUpstreamHeaders(raw: readonly string[], hop: Hop): string[] {
  const out: string[] = [];
  let xff: string | undefined;
  let xfp: string | undefined;
  let xfh: string | undefined;
  let host: string | undefined;
  let named: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name === 'connection') {
      for (const token of value.toLowerCase().split(',')) {
        const t = token.trim();
        if (t === '' || t === 'keep-alive' || t === 'close') continue;
        named ??= new Set();
        named.add(t);
      }
    } else if (name === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
    else if (name === 'x-forwarded-proto') xfp ??= value;
    else if (name === 'x-forwarded-host') xfh ??= value;
    else if (name === 'host') host ??= value;
  }
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (DROP.has(name) || named?.has(name)) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  const peer = hop.peer.startsWith('::ffff:') && hop.peer.includes('.') ? hop.peer.slice(7) : hop.peer;
  out.push('x-forwarded-for', xff === undefined ? peer : `${xff}, ${peer}`);
  out.push(
    'x-forwarded-proto',
    (hop.peerTrusted ? xfp : undefined) ?? (isHttps(hop, undefined) ? 'https' : 'http'),
  );
  const forwardedHost = (hop.peerTrusted ? xfh : undefined) ?? host;
  if (forwardedHost !== undefined) out.push('x-forwarded-host', forwardedHost);
  return out;
}
