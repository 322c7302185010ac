/**
 * The data plane's request path: affinity decision, then forwarding plain
 * HTTP through undici (one keep-alive Pool per endpoint) and WebSocket
 * upgrades through http-proxy-3. All I/O of the proxy's listener is here.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import type { ClientRequest, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { Dispatcher } from 'undici';
import { formatRefusal, type Refusal, refusalForClientError, refusalForRequest } from './client-errors.ts';
import { classifyUpstreamError, isConnectError, statusForError, TetherError } from './errors.ts';
import { codeClass, type ProxyMetrics } from './metrics.ts';
import { clientIpKey, findCookieValues, headerKey, resolveClientAddress } from './routing/affinity-key.ts';
import type { CompiledEndpoint, CompiledTable } from './routing/compiled-table.ts';
import { encodeAffinityCookie, SESSION_ID_BYTES } from './routing/cookie-codec.ts';
import {
  buildUpstreamHeaders,
  type Hop,
  isHttps,
  stripResponseHopHeaders,
} from './routing/forwarded-headers.ts';
import { cidrContains, parseIp } from './routing/ip.ts';
import { type Decision, decideByCookie, decideByKey, redispatch } from './routing/pick-endpoint.ts';
import { formatSetCookie } from './routing/set-cookie.ts';
import type { TableStore } from './table-store.ts';
import type { EndpointRuntime, Upstreams } from './upstreams.ts';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export interface ProxyServerOptions {
  store: TableStore;
  upstreams: Upstreams;
  metrics: ProxyMetrics;
  /** Current cookie keys; the first signs. Read per request so a key reload applies at once. */
  cookieKeys: () => readonly KeyObject[];
  /** Log one line (JSON). */
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Timeouts of the listener and the WebSocket path; each defaults to {@link DEFAULT_LIMITS}. */
  limits?: Partial<ProxyLimits>;
}

/** Timeouts of the listener and the WebSocket path, all in ms; cli.ts maps flags onto them. */
export interface ProxyLimits {
  /** TCP connect to an endpoint for a WebSocket handshake (HAProxy `timeout connect`, nginx `proxy_connect_timeout`). */
  connectTimeoutMs: number;
  /** From connect to the endpoint's answer to a handshake (nginx `proxy_read_timeout`, HAProxy `timeout server`). */
  handshakeTimeoutMs: number;
  /** An open tunnel with no byte either way is closed (HAProxy `timeout tunnel`; nginx `proxy_read_timeout`). */
  tunnelIdleTimeoutMs: number;
  /** Time a client has to send a request's headers: 408 after (nginx `client_header_timeout`, HAProxy `timeout http-request`). */
  clientHeaderTimeoutMs: number;
  /** On shutdown, how long idle keep-alive connections stay open for requests already on their way (HAProxy `close-spread-time`). */
  shutdownIdleGraceMs: number;
}

/** The defaults of {@link ProxyLimits}; cli.ts's flag defaults are the same values. */
export const DEFAULT_LIMITS: Readonly<ProxyLimits> = {
  connectTimeoutMs: 5_000,
  handshakeTimeoutMs: 60_000,
  tunnelIdleTimeoutMs: 3_600_000,
  clientHeaderTimeoutMs: 60_000,
  shutdownIdleGraceMs: 1_000,
};

/**
 * How long a connection the proxy closed on its side (FIN sent) is still read
 * and discarded before it is cut, ms: closing a socket with unread bytes makes
 * the kernel send a reset, and the client may lose the response it already
 * has (nginx `lingering_close`, `lingering_timeout 5s`).
 */
const LINGER_MS = 2_000;

/** Node's own `net.Server` close: http.Server's also destroys idle keep-alive connections at once (Node ≥ 19). */
const closeListener = NetServer.prototype.close;

/** A WebSocket handshake under way: what the hooks on http-proxy-3's request need. */
interface Handshake {
  /** The endpoint's request headers, built by {@link buildUpstreamHeaders}. */
  readonly headers: string[];
  readonly setCookie: string | undefined;
  /** The 101 was received: the tunnel is open; errors no longer answer in HTTP. */
  upgraded: boolean;
  /** The client left before the 101: not the endpoint's fault. */
  clientGone: boolean;
}

/** The response a socket is busy with, as Node tracks it (`socket._httpMessage`, documented under `clientError`). */
function pendingResponse(socket: Socket): ServerResponse | null | undefined {
  return (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
}

/** The proxy listener: an `http.Server` whose requests are routed by the current table. */
export class ProxyServer {
  readonly server: Server;
  private readonly o: ProxyServerOptions;
  private readonly limits: ProxyLimits;
  private readonly wsProxy = createProxyServer({ ws: true, xfwd: false });
  private readonly sockets = new Set<Socket>();
  private readonly webSockets = new Set<Socket>();
  /** WebSocket handshakes under way, until the endpoint answers. */
  private readonly handshakes = new WeakMap<IncomingMessage, Handshake>();
  /** Connections this proxy has sent its FIN on: still read, never answered. */
  private readonly lingering = new WeakSet<Socket>();
  /** Connections a client error was seen on: answered once, when their pending responses are done. */
  private readonly clientErrored = new WeakSet<Socket>();
  private inflightRequests = 0;
  private closing = false;

  constructor(o: ProxyServerOptions) {
    this.o = o;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    const headersTimeout = this.limits.clientHeaderTimeoutMs;
    this.server = createServer(
      {
        keepAlive: true,
        requestTimeout: Math.max(300_000, headersTimeout),
        headersTimeout,
        // Node checks both timeouts on this interval (30 s by default): half the header timeout keeps 408s near it.
        connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(headersTimeout / 2))),
      },
      (req, res) => this.admit(req, res),
    );
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.handleUpgrade(req, socket, head),
    );
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      o.metrics.openConnections.inc();
      s.once('close', () => {
        this.sockets.delete(s);
        o.metrics.openConnections.dec();
      });
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) =>
      this.onClientError(err, socket),
    );
    // CONNECT is for forward proxies; without a listener Node would drop the connection unanswered.
    this.server.on('connect', (_req: IncomingMessage, socket: Socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(formatRefusal({ status: 400, code: 'TETHER_BAD_REQUEST_TARGET' }));
    });
    // http-proxy-3 builds the endpoint's request from req.headers; ours, built by
    // the same rules as plain HTTP, replace them before a byte is written. Its
    // 'upgrade' listener writes the 101 from the endpoint's headers; ours, added
    // first, amends them.
    this.wsProxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage, socket: Socket) => {
      const hs = this.handshakes.get(req);
      if (hs !== undefined) this.prepareHandshake(proxyReq, socket, hs);
    });
    this.wsProxy.on('error', (err: Error, _req: unknown, target: unknown) => {
      // http-proxy-3 reports WebSocket failures here when no callback took them; the socket is closed below.
      const socket = target as Socket | undefined;
      if (socket && typeof socket.destroy === 'function') socket.destroy();
      o.log('warn', 'websocket proxy error', { error: err.message });
    });
  }

  /** Starts listening. @returns the bound port. */
  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    return typeof addr === 'object' && addr !== null ? addr.port : port;
  }

  /**
   * Graceful stop (nginx `quit`, HAProxy soft-stop), in this order:
   *
   * 1. Stop accepting. Every response not yet started carries
   *    `Connection: close`, so a busy connection closes after its response.
   * 2. Idle keep-alive connections stay open for `shutdownIdleGraceMs`: a
   *    request a client had already sent on one is answered (with
   *    `Connection: close`) instead of meeting a reset.
   * 3. Then each idle connection gets a FIN and is read until the client
   *    closes (at most {@link LINGER_MS}): a request crossing the FIN is read
   *    and dropped, so the client sees a clean close before any byte of a
   *    response, which HTTP clients retry (RFC 9112 §9.3.1), never a reset.
   * 4. At `timeoutMs`, whatever is left is cut, WebSockets included.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    this.closing = true;
    const started = Date.now();
    const deadline = started + timeoutMs;
    const graceEnd = started + Math.min(this.limits.shutdownIdleGraceMs, timeoutMs);
    const closed = new Promise<void>((resolve) => closeListener.call(this.server, () => resolve()));
    for (const s of this.sockets) {
      const res = pendingResponse(s);
      if (res && !res.headersSent) res.shouldKeepAlive = false;
    }
    for (;;) {
      const now = Date.now();
      let waiting = 0;
      for (const s of this.sockets) {
        if (this.webSockets.has(s)) continue;
        waiting++;
        if (now >= graceEnd && !this.lingering.has(s) && !this.clientErrored.has(s) && !pendingResponse(s))
          this.lingerClose(s);
      }
      if ((waiting === 0 && this.inflightRequests === 0) || now >= deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const s of this.webSockets) s.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
    this.wsProxy.close();
  }

  /** Sends our FIN and keeps reading, so bytes already on their way never meet a reset (nginx `lingering_close`). */
  private lingerClose(s: Socket): void {
    this.lingering.add(s);
    s.end();
    const cut = setTimeout(() => s.destroy(), LINGER_MS);
    cut.unref();
    s.once('close', () => clearTimeout(cut));
  }

  /**
   * Node's `clientError`: a request it could not parse, or did not receive
   * in time. Answered once, with the status {@link refusalForClientError}
   * picks, but only after the responses already owed on the connection are
   * done: a malformed request pipelined behind a valid one must not have its
   * 400 written over the valid one's response (nginx reads the next request
   * only once the previous is answered).
   */
  private onClientError(err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket): void {
    if (this.clientErrored.has(socket)) return;
    this.clientErrored.add(socket);
    const refusal = refusalForClientError(err.code, err.rawPacket);
    const answer = (): void => {
      if (refusal === undefined || !socket.writable || this.lingering.has(socket)) {
        socket.destroy();
        return;
      }
      this.lingering.add(socket);
      socket.end(formatRefusal(refusal));
      const cut = setTimeout(() => socket.destroy(), LINGER_MS);
      cut.unref();
      socket.once('close', () => clearTimeout(cut));
    };
    const whenIdle = (): void => {
      const res = pendingResponse(socket);
      if (res === null || res === undefined || socket.destroyed) {
        answer();
        return;
      }
      if (!res.req.complete && !res.writableEnded) {
        // The error is in the body of the very request being answered: it can
        // never be complete, so its exchange ends here (the upstream request is
        // aborted when the socket closes).
        if (res.headersSent) socket.destroy();
        else answer();
        return;
      }
      // Node hands the socket to the next queued response in its own 'finish' listener, which runs first.
      res.once('close', () => setImmediate(whenIdle));
    };
    whenIdle();
  }

  /** Requests Node parsed: refused here when the proxy serves no such request, else routed. */
  private admit(req: IncomingMessage, res: ServerResponse): void {
    if (this.lingering.has(req.socket)) {
      // Our FIN is out: no answer can follow. Reading on avoids the reset.
      req.resume();
      return;
    }
    const refusal = refusalForRequest(req.httpVersion, req.url, header(req, 'transfer-encoding'));
    if (refusal !== undefined) {
      this.refuseRequest(res, refusal);
      return;
    }
    this.handle(req, res);
  }

  /** Answers a request the proxy will not forward, and closes the connection. */
  private refuseRequest(res: ServerResponse, r: Refusal): void {
    const table = this.o.store.current;
    if (table !== undefined)
      this.o.metrics.requests.inc({ pool: table.pool, endpoint: '', code_class: codeClass(r.status) });
    const body = `${r.status} ${r.code}\n`;
    res.writeHead(r.status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-tether-error': r.code,
      connection: 'close',
    });
    res.end(body);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.closing) res.shouldKeepAlive = false;
    const table = this.o.store.current;
    if (table === undefined) {
      this.fail(res, undefined, undefined, new TetherError('TETHER_NO_TABLE', 'no routing table loaded yet'));
      return;
    }
    const nowMs = Date.now();
    const decision = this.decide(table, req, nowMs);
    this.o.metrics.countDecision(table.pool, decision.outcome, decision.reason);
    if (decision.endpoint === undefined) {
      this.fail(
        res,
        table,
        undefined,
        new TetherError('TETHER_NO_ENDPOINT', `no endpoint of pool ${table.pool} can take the request`),
      );
      return;
    }
    this.inflightRequests++;
    const exchange: Exchange = { controller: undefined };
    // One listener for the whole exchange, redispatch included.
    res.once('close', () => {
      this.inflightRequests--;
      if (!res.writableFinished) exchange.controller?.abort(new Error('client went away'));
    });
    this.forward(table, req, res, decision, decision.endpoint, 0, exchange);
  }

  /** The affinity decision for a request, by the table's affinity type. */
  private decide(table: CompiledTable, req: IncomingMessage, nowMs: number): Decision {
    const up = this.o.upstreams;
    switch (table.affinityType) {
      case 'ClientIP': {
        const addr = resolveClientAddress(
          req.socket.remoteAddress,
          header(req, 'x-forwarded-for'),
          table.trustedProxies,
        );
        if (addr === undefined) return decideByKey(table, undefined, 'invalid', up, nowMs, randomKey);
        return decideByKey(
          table,
          clientIpKey(addr, table.ipv4PrefixLength, table.ipv6PrefixLength),
          undefined,
          up,
          nowMs,
          randomKey,
        );
      }
      case 'Header': {
        const hk = headerKey(req.headers[table.headerName]);
        return 'key' in hk
          ? decideByKey(table, hk.key, undefined, up, nowMs, randomKey)
          : decideByKey(table, undefined, hk.problem, up, nowMs, randomKey);
      }
      default:
        return decideByCookie(
          table,
          {
            values: findCookieValues(req.headers.cookie, table.cookie.name),
            keys: this.o.cookieKeys(),
            nowMs,
            freshSessionId: randomKey,
          },
          up,
        );
    }
  }

  private forward(
    table: CompiledTable,
    req: IncomingMessage,
    res: ServerResponse,
    decision: Decision,
    ep: CompiledEndpoint,
    attempt: number,
    exchange: Exchange,
  ): void {
    const rt = this.o.upstreams.at(ep.index);
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    const body = hasBody ? new PassThrough() : null;
    const hop = this.hopOf(table, req);
    const setCookie = this.setCookieHeader(table, decision, hop, req);
    const started = performance.now();
    rt.inflight++;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      rt.inflight--;
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: (controller) => {
        exchange.controller = controller;
        if (res.destroyed) controller.abort(new Error('client went away'));
        // The body flows only once a connection exists: a connect failure
        // leaves it unread, so redispatch can still send it.
        else if (body !== null) req.pipe(body);
      },
      onResponseStart: (controller, statusCode, headers, statusMessage) => {
        stripResponseHopHeaders(headers as Record<string, string | string[]>);
        if (setCookie !== undefined) {
          const prior = headers['set-cookie'];
          headers['set-cookie'] =
            prior === undefined ? setCookie : [...(Array.isArray(prior) ? prior : [prior]), setCookie];
        }
        if (this.closing) headers.connection = 'close';
        try {
          res.writeHead(statusCode, statusMessage ?? '', headers as Record<string, string | string[]>);
        } catch (err) {
          controller.abort(err as Error);
        }
      },
      onResponseData: (controller, chunk) => {
        if (!res.write(chunk)) {
          controller.pause();
          res.once('drain', () => controller.resume());
        }
      },
      onResponseEnd: () => {
        finish();
        res.end();
        this.o.metrics.requests.inc({
          pool: table.pool,
          endpoint: ep.id,
          code_class: codeClass(res.statusCode),
        });
        this.o.metrics.upstreamLatency.observe(
          { pool: table.pool, endpoint: ep.id },
          (performance.now() - started) / 1000,
        );
      },
      onResponseError: (_controller, err) => {
        finish();
        body?.destroy();
        if (res.destroyed) return; // the client left; nothing to answer
        if (!res.headersSent) {
          const connectFailed = isConnectError(err);
          if (connectFailed || (err as { code?: string }).code !== 'UND_ERR_ABORTED')
            this.o.upstreams.recordFailure(rt);
          // Redispatch once (HAProxy `option redispatch`, `retries 1`): only when
          // nothing reached the endpoint, so even a POST is safe to resend.
          // Under Reject a kept pin is never moved (nginx-sticky `no_fallback`).
          const mayMove = !(table.rejectOnFailure && decision.outcome === 'hit');
          if (connectFailed && attempt === 0 && mayMove && !req.readableDidRead) {
            const next = redispatch(table, decision, ep, this.o.upstreams, Date.now());
            if (next.endpoint === undefined) {
              // Nowhere to go: the refused connection is the truer answer than "no endpoint".
              this.fail(res, table, ep.id, classifyUpstreamError(err));
              return;
            }
            this.o.metrics.redispatches.inc({ pool: table.pool });
            this.o.metrics.countDecision(table.pool, next.outcome, next.reason);
            this.forward(table, req, res, next, next.endpoint, 1, exchange);
            return;
          }
          this.fail(res, table, ep.id, classifyUpstreamError(err));
          return;
        }
        // Headers already went out: the only honest signal left is a cut connection.
        res.destroy(err);
      },
    };
    rt.pool.dispatch(
      {
        path: req.url as string,
        method: req.method as Dispatcher.HttpMethod,
        headers: buildUpstreamHeaders(req.rawHeaders, hop),
        body,
        idempotent: IDEMPOTENT.has(req.method ?? ''),
      },
      handler,
    );
  }

  /** The Set-Cookie value a decision calls for, or undefined. */
  private setCookieHeader(
    table: CompiledTable,
    decision: Decision,
    hop: Hop,
    req: IncomingMessage,
  ): string | undefined {
    if (decision.setCookie === undefined) return undefined;
    const value = encodeAffinityCookie(decision.setCookie, this.o.cookieKeys(), table.pool);
    return formatSetCookie(table.cookie, value, isHttps(hop, header(req, 'x-forwarded-proto')));
  }

  /** The hop a request came over; the peer is parsed only when the pool trusts proxies. */
  private hopOf(table: CompiledTable, req: IncomingMessage): Hop {
    const peer = req.socket.remoteAddress ?? '';
    let peerTrusted = false;
    if (table.trustedProxies.length > 0) {
      const ip = parseIp(peer);
      peerTrusted = ip !== undefined && table.trustedProxies.some((c) => cidrContains(c, ip));
    }
    return {
      peer,
      peerTrusted,
      tls: (req.socket as { encrypted?: boolean }).encrypted === true,
      port: req.socket.localPort,
    };
  }

  /** Answers an error the proxy itself produced; the status comes from {@link statusForError} alone. */
  private fail(
    res: ServerResponse,
    table: CompiledTable | undefined,
    endpoint: string | undefined,
    err: TetherError,
  ): void {
    const status = statusForError(err);
    if (table !== undefined)
      this.o.metrics.requests.inc({
        pool: table.pool,
        endpoint: endpoint ?? '',
        code_class: codeClass(status),
      });
    if (status !== 503)
      this.o.log('warn', 'upstream error', {
        pool: table?.pool,
        endpoint,
        code: err.code,
        error: err.message,
      });
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    const body = `${status} ${err.code}\n`;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-tether-error': err.code,
      ...(status === 503 ? { 'retry-after': '1' } : {}),
    });
    res.end(body);
  }

  /**
   * A WebSocket handshake: routed like any request (the 101 carries the
   * affinity cookie too), its headers built by the plain HTTP path's rules,
   * then handed to http-proxy-3. Failures before the 101 answer in HTTP (502,
   * 504) and count against the endpoint; after it, the tunnel is only closed.
   */
  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const table = this.o.store.current;
    const refuse = (r: Refusal): void => {
      if (socket.writable) socket.end(formatRefusal(r));
      else socket.destroy();
    };
    if (table === undefined || this.closing) {
      refuse({ status: 503, code: table === undefined ? 'TETHER_NO_TABLE' : 'TETHER_SHUTTING_DOWN' });
      return;
    }
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    const bad = refusalForRequest(req.httpVersion, req.url);
    if (bad !== undefined || req.method !== 'GET' || upgrade !== 'websocket') {
      // Only WebSocket is tunnelled: an h2c or other upgrade would bypass this proxy's view of requests.
      refuse(bad ?? { status: 400, code: 'TETHER_BAD_UPGRADE' });
      return;
    }
    const decision = this.decide(table, req, Date.now());
    this.o.metrics.countDecision(table.pool, decision.outcome, decision.reason);
    const ep = decision.endpoint;
    if (ep === undefined) {
      refuse({ status: 503, code: 'TETHER_NO_ENDPOINT' });
      return;
    }
    const hop = this.hopOf(table, req);
    const hs: Handshake = {
      headers: buildUpstreamHeaders(req.rawHeaders, hop, 'websocket'),
      setCookie: this.setCookieHeader(table, decision, hop, req),
      upgraded: false,
      clientGone: false,
    };
    this.handshakes.set(req, hs);
    const rt: EndpointRuntime = this.o.upstreams.at(ep.index);
    rt.inflight++;
    this.webSockets.add(socket);
    this.o.metrics.openWebSockets.inc({ pool: table.pool });
    socket.once('close', () => {
      if (!hs.upgraded) hs.clientGone = true;
      rt.inflight--;
      this.webSockets.delete(socket);
      this.o.metrics.openWebSockets.dec({ pool: table.pool });
    });
    this.wsProxy.ws(req, socket, head, { target: ep.origin }, (err: Error) => {
      if (hs.upgraded || hs.clientGone) {
        // The tunnel was open (or the client gone): no HTTP answer fits, and
        // an app closing its WebSocket abruptly is no sign of a sick endpoint.
        socket.destroy();
        return;
      }
      this.o.upstreams.recordFailure(rt);
      const te = classifyUpstreamError(err);
      this.o.log('warn', 'websocket upstream error', {
        pool: table.pool,
        endpoint: ep.id,
        code: te.code,
        error: err.message,
      });
      refuse({ status: statusForError(te), code: te.code });
    });
  }

  /**
   * Runs when http-proxy-3 has made the endpoint's request, before any byte
   * left: sets its headers, arms the connect and handshake timers, and strips
   * the 101 of hop-by-hop headers when it comes.
   */
  private prepareHandshake(proxyReq: ClientRequest, socket: Socket, hs: Handshake): void {
    const keepHost = !hs.headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'host');
    for (const name of proxyReq.getHeaderNames())
      if (!(keepHost && name === 'host')) proxyReq.removeHeader(name);
    const grouped = new Map<string, { name: string; values: string[] }>();
    for (let i = 0; i < hs.headers.length; i += 2) {
      const name = hs.headers[i] as string;
      const key = name.toLowerCase();
      let g = grouped.get(key);
      if (g === undefined) {
        g = { name, values: [] };
        grouped.set(key, g);
      }
      g.values.push(hs.headers[i + 1] as string);
    }
    for (const { name, values } of grouped.values())
      proxyReq.setHeader(name, values.length === 1 ? (values[0] as string) : values);

    const { connectTimeoutMs, handshakeTimeoutMs, tunnelIdleTimeoutMs } = this.limits;
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    };
    const expire = (what: string, ms: number) => (): void => {
      timer = undefined;
      proxyReq.destroy(
        new TetherError('TETHER_UPSTREAM_TIMEOUT', `WebSocket ${what} timed out after ${ms} ms`),
      );
    };
    proxyReq.once('socket', (s: Socket) => {
      const awaitAnswer = (): void => {
        stop();
        timer = setTimeout(expire('handshake', handshakeTimeoutMs), handshakeTimeoutMs);
      };
      if (s.connecting) {
        timer = setTimeout(expire('connect', connectTimeoutMs), connectTimeoutMs);
        s.once('connect', awaitAnswer);
      } else awaitAnswer();
    });
    // An endpoint refusing the upgrade answers in plain HTTP; http-proxy-3 relays it as is, so strip it first.
    proxyReq.once('response', (res: IncomingMessage) => {
      stop();
      stripResponseHopHeaders(res.headers);
    });
    proxyReq.once('close', stop);
    proxyReq.once('upgrade', (proxyRes: IncomingMessage) => {
      stop();
      hs.upgraded = true;
      stripResponseHopHeaders(proxyRes.headers, true);
      if (hs.setCookie !== undefined) {
        const prior = proxyRes.headers['set-cookie'];
        proxyRes.headers['set-cookie'] = prior === undefined ? [hs.setCookie] : [...prior, hs.setCookie];
      }
      // The client socket sees every byte both ways, so its idle timer is the tunnel's (HAProxy `timeout tunnel`).
      socket.setTimeout(tunnelIdleTimeoutMs, () => socket.destroy());
    });
    // A client that leaves before the 101 takes its handshake with it.
    socket.once('close', () => {
      if (!hs.upgraded) proxyReq.destroy();
    });
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** The undici request of a client exchange now under way, so a client that leaves can abort it. */
interface Exchange {
  controller: Dispatcher.DispatchController | undefined;
}

// Random session ids come from a block refilled every 512 ids: one
// randomBytes call per id costs about as much as the HMAC that signs it.
let randomBlock = Buffer.alloc(0);
let randomAt = 0;

function randomKey(): string {
  if (randomAt + SESSION_ID_BYTES > randomBlock.length) {
    randomBlock = randomBytes(SESSION_ID_BYTES * 512);
    randomAt = 0;
  }
  const id = randomBlock.toString('base64url', randomAt, randomAt + SESSION_ID_BYTES);
  randomAt += SESSION_ID_BYTES;
  return id;
}
