/**
 * The data plane's request path: affinity decision, then forwarding plain
 * HTTP through undici (one keep-alive Pool per endpoint) and WebSocket
 * upgrades through http-proxy-3. All I/O of the proxy's listener is here.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import type { ClientRequest, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { Dispatcher } from 'undici';
import { classifyUpstreamError, isConnectError, statusForError, TetherError } from './errors.ts';
import { codeClass, type ProxyMetrics } from './metrics.ts';
import { clientIpKey, findCookieValues, headerKey, resolveClientAddress } from './routing/affinity-key.ts';
import type { CompiledEndpoint, CompiledTable } from './routing/compiled-table.ts';
import { encodeAffinityCookie, SESSION_ID_BYTES } from './routing/cookie-codec.ts';
import { buildUpstreamHeaders, type Hop, isHttps } from './routing/forwarded-headers.ts';
import { cidrContains, parseIp } from './routing/ip.ts';
import { type Decision, decideByCookie, decideByKey, redispatch } from './routing/pick-endpoint.ts';
import { formatSetCookie } from './routing/set-cookie.ts';
import type { TableStore } from './table-store.ts';
import type { EndpointRuntime, Upstreams } from './upstreams.ts';

/** Response headers never passed back: hop-by-hop; Node frames the body itself. */
const DROP_RESPONSE = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
];
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export interface ProxyServerOptions {
  store: TableStore;
  upstreams: Upstreams;
  metrics: ProxyMetrics;
  /** Current cookie keys; the first signs. Read per request so a key reload applies at once. */
  cookieKeys: () => readonly KeyObject[];
  /** Log one line (JSON). */
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** The proxy listener: an `http.Server` whose requests are routed by the current table. */
export class ProxyServer {
  readonly server: Server;
  private readonly o: ProxyServerOptions;
  private readonly wsProxy = createProxyServer({ ws: true, xfwd: true });
  private readonly sockets = new Set<Socket>();
  private readonly webSockets = new Set<Socket>();
  /** Set-Cookie owed to a WebSocket upgrade request, until its 101 is written. */
  private readonly wsCookies = new WeakMap<IncomingMessage, string>();
  private inflightRequests = 0;
  private closing = false;

  constructor(o: ProxyServerOptions) {
    this.o = o;
    this.server = createServer({ keepAlive: true, requestTimeout: 300_000 }, (req, res) =>
      this.handle(req, res),
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
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // Malformed request lines and headers: answer 400 like nginx, never crash.
      if (socket.writable && err.code !== 'ECONNRESET')
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    // A WebSocket's first request pins it like any other, so the 101 carries
    // the cookie too. http-proxy-3 writes the 101 from the endpoint's headers
    // in its own 'upgrade' listener; ours, added first, amends them.
    this.wsProxy.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
      const setCookie = this.wsCookies.get(req);
      if (setCookie === undefined) return;
      proxyReq.once('upgrade', (proxyRes: IncomingMessage) => {
        const prior = proxyRes.headers['set-cookie'];
        proxyRes.headers['set-cookie'] = prior === undefined ? [setCookie] : [...prior, setCookie];
      });
    });
    this.wsProxy.on('error', (err: Error, _req: unknown, target: unknown) => {
      // http-proxy-3 reports WebSocket failures here; the socket is closed below.
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
   * Graceful stop (nginx `quit`): stop accepting, let requests in flight
   * finish for up to `timeoutMs`, then cut what is left, WebSockets included.
   */
  async shutdown(timeoutMs: number): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const deadline = Date.now() + timeoutMs;
    while (this.inflightRequests > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      this.server.closeIdleConnections();
    }
    for (const s of this.webSockets) s.destroy();
    for (const s of this.sockets) s.destroy();
    await closed;
    this.wsProxy.close();
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.closing) res.shouldKeepAlive = false;
    const table = this.o.store.current;
    if (table === undefined) {
      this.fail(res, undefined, undefined, new TetherError('TETHER_NO_TABLE', 'no routing table loaded yet'));
      return;
    }
    const url = req.url ?? '';
    if (!url.startsWith('/')) {
      // Absolute-form and `*` targets are for forward proxies; this is a reverse proxy.
      res
        .writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' })
        .end('bad request target\n');
      this.o.metrics.requests.inc({ pool: table.pool, endpoint: '', code_class: '4xx' });
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
        for (const h of DROP_RESPONSE) delete headers[h];
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
    return { peer, peerTrusted, tls: (req.socket as { encrypted?: boolean }).encrypted === true };
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

  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const table = this.o.store.current;
    const refuse = (status: number, text: string): void => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (table === undefined || this.closing) {
      refuse(503, 'Service Unavailable');
      return;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuse(400, 'Bad Request');
      return;
    }
    const decision = this.decide(table, req, Date.now());
    this.o.metrics.countDecision(table.pool, decision.outcome, decision.reason);
    const ep = decision.endpoint;
    if (ep === undefined) {
      refuse(503, 'Service Unavailable');
      return;
    }
    const setCookie = this.setCookieHeader(table, decision, this.hopOf(table, req), req);
    if (setCookie !== undefined) this.wsCookies.set(req, setCookie);
    const rt: EndpointRuntime = this.o.upstreams.at(ep.index);
    rt.inflight++;
    this.webSockets.add(socket);
    this.o.metrics.openWebSockets.inc({ pool: table.pool });
    socket.once('close', () => {
      rt.inflight--;
      this.webSockets.delete(socket);
      this.o.metrics.openWebSockets.dec({ pool: table.pool });
    });
    this.wsProxy.ws(req, socket, head, { target: ep.origin }, (err: Error) => {
      this.o.upstreams.recordFailure(rt);
      this.o.log('warn', 'websocket upstream error', {
        pool: table.pool,
        endpoint: ep.id,
        error: err.message,
      });
      if (socket.writable) refuse(502, 'Bad Gateway');
      else socket.destroy();
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
