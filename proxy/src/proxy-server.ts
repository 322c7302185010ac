/**
 * The data plane's request path: affinity decision, then forwarding plain
 * HTTP through undici (one keep-alive Pool per endpoint) and WebSocket
 * upgrades through http-proxy-3. All I/O of the proxy's listener is here.
 */
import type { KeyObject } from 'node:crypto';
import type { ClientRequest, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type { Client, Dispatcher } from 'undici';
import { formatRefusal, type Refusal, refusalForClientError, refusalForRequest } from './client-errors.ts';
import { classifyUpstreamError, statusForError, TetherError } from './errors.ts';
import { listenOn } from './listen.ts';
import { codeClass, type ProxyMetrics } from './metrics.ts';
import {
  type FlowExchange,
  IDEMPOTENT,
  RequestFlow,
  type RequestView,
  type Transport,
} from './request-flow.ts';
import type { CompiledTable } from './routing/compiled-table.ts';
import { buildUpstreamHeaders, type Hop, stripResponseHopHeaders } from './routing/forwarded-headers.ts';
import type { PinContext } from './routing/learn.ts';
import type { Decision } from './routing/pick-endpoint.ts';
import type { PinStore } from './session-store/pin-store.ts';
import type { TableStore } from './table-store.ts';
import type { EndpointRuntime, ServedTable, Upstreams } from './upstreams.ts';

export interface ProxyServerOptions {
  store: TableStore;
  upstreams: Upstreams;
  metrics: ProxyMetrics;
  /** Current cookie keys; the first signs. Read per request so a key reload applies at once. */
  cookieKeys: () => readonly KeyObject[];
  /** Log one line (JSON). */
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Timeouts and limits of the listener, the forwarding path and the WebSocket path; each defaults to {@link DEFAULT_LIMITS}. */
  limits?: Partial<ProxyLimits>;
  /** The session store's pins (`--session-store`): Learn affinity and persisted ClientIP/Header pins. */
  pins?: PinStore | undefined;
  /** The orchestration to share (the native engine hands its own over); made from these options when absent. */
  flow?: RequestFlow;
}

/** Timeouts (ms) and limits (bytes, requests) of the listener, the forwarding path and the WebSocket path; cli.ts maps flags onto them. */
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
  /** Requests that may wait for a connection of one endpoint (HAProxy `maxqueue`). */
  queueSize: number;
  /** How long a request may wait for a connection (HAProxy `timeout queue`); then 503. */
  queueTimeoutMs: number;
  /** Time a whole request body may take (HAProxy `timeout http-request`); then 408. */
  clientBodyTimeoutMs: number;
  /** Bodies up to this size, bytes, are read whole before an endpoint is chosen (nginx `proxy_request_buffering`). */
  requestBufferBytes: number;
  /** How long a write to a client that does not read may wait (nginx `send_timeout`); then the connection is cut. */
  sendTimeoutMs: number;
  /** Response bytes held in memory for a slow reader before the endpoint is paused (nginx `proxy_buffers`). */
  responseBufferBytes: number;
}

/** The defaults of {@link ProxyLimits}; cli.ts's flag defaults are the same values. */
export const DEFAULT_LIMITS: Readonly<ProxyLimits> = {
  connectTimeoutMs: 5_000,
  handshakeTimeoutMs: 60_000,
  tunnelIdleTimeoutMs: 3_600_000,
  clientHeaderTimeoutMs: 60_000,
  shutdownIdleGraceMs: 1_000,
  queueSize: 1024,
  queueTimeoutMs: 10_000,
  clientBodyTimeoutMs: 60_000,
  requestBufferBytes: 64 * 1024,
  sendTimeoutMs: 60_000,
  responseBufferBytes: 256 * 1024,
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
  /** The response hook of a store-kept pin, given the 101's Set-Cookie. */
  readonly afterUpgrade: ((setCookie: string[] | undefined) => void) | undefined;
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
  /** The transport-independent orchestration (decide, retry, redispatch), shared with the native engine. */
  private readonly flow: RequestFlow;
  private readonly transport: Transport<Exchange> = {
    forward: (served, ex, decision, rt, fresh) => this.forward(served, ex, decision, rt, fresh),
    answer: (ex, table, endpoint, err) => this.answer(ex, table, endpoint, err),
    replayable: (ex) => ex.body === undefined || ex.body.kind === 'buffer' || !ex.bodyStarted,
    clientGone: (ex) => ex.res.destroyed,
    settled: (ex) => ex.answered || ex.res.destroyed,
  };

  constructor(o: ProxyServerOptions) {
    this.o = o;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.flow = o.flow ?? new RequestFlow(o);
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
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
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
    const served = this.o.upstreams.current;
    if (served === undefined) {
      this.fail(res, undefined, undefined, new TetherError('TETHER_NO_TABLE', 'no routing table loaded yet'));
      return;
    }
    this.inflightRequests++;
    const ex: Exchange = {
      method: req.method ?? '',
      req,
      res,
      controller: undefined,
      body: undefined,
      bodyStarted: false,
      bodyTimer: undefined,
      answered: false,
      retried: false,
      redispatched: false,
      pin: undefined,
    };
    // One listener for the whole exchange, retries included.
    res.once('close', () => {
      this.inflightRequests--;
      clearTimeout(ex.bodyTimer);
      if (!res.writableFinished)
        ex.controller?.abort(new TetherError('TETHER_CLIENT_GONE', 'client went away'));
    });
    const hasBody =
      req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    if (hasBody) this.readBody(ex);
    else this.start(ex);
  }

  /**
   * Reads a request body before an endpoint is chosen, as nginx does
   * (`proxy_request_buffering on`): a slow client then holds no connection
   * to an endpoint. Bodies over `requestBufferBytes` are streamed from there
   * on. Either way the whole body must arrive within `clientBodyTimeoutMs`
   * (HAProxy `timeout http-request` with `http-buffer-request`), or the
   * client gets 408 and the endpoint's request, if any, is cut.
   */
  private readBody(ex: Exchange): void {
    const { req } = ex;
    const chunks: Buffer[] = [];
    let size = 0;
    ex.bodyTimer = setTimeout(() => this.bodyTooSlow(ex), this.limits.clientBodyTimeoutMs);
    const onData = (c: Buffer): void => {
      chunks.push(c);
      size += c.length;
      if (size > this.limits.requestBufferBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        req.pause();
        req.once('end', () => clearTimeout(ex.bodyTimer));
        ex.body = { kind: 'stream', prefix: chunks };
        this.start(ex);
      }
    };
    const onEnd = (): void => {
      clearTimeout(ex.bodyTimer);
      ex.body = { kind: 'buffer', data: Buffer.concat(chunks, size) };
      this.start(ex);
    };
    req.on('data', onData);
    req.once('end', onEnd);
  }

  private bodyTooSlow(ex: Exchange): void {
    const err = new TetherError(
      'TETHER_BODY_TIMEOUT',
      `request body not received within ${this.limits.clientBodyTimeoutMs} ms`,
    );
    ex.controller?.abort(err);
    const table = this.o.upstreams.current?.table;
    this.answer(ex, table, undefined, err);
  }

  /** Decides on an endpoint once the request (and a buffered body) is in, after the store's pin lookup if any. */
  private start(ex: Exchange): void {
    if (ex.answered || ex.res.destroyed) return;
    this.flow.start(ex, viewOf(ex.req), this.transport);
  }

  /**
   * One attempt to forward a request to `rt`'s endpoint.
   *
   * @param served - the table the attempt belongs to; `rt` is one of its runtimes.
   * @param fresh - on a new connection of its own (the retry after a broken
   *   keep-alive connection), not on one of the endpoint's pool.
   */
  private forward(
    served: ServedTable,
    ex: Exchange,
    decision: Decision,
    rt: EndpointRuntime,
    fresh: boolean,
  ): void {
    const { req, res } = ex;
    const table = served.table;
    const ep = rt.endpoint;
    const st = rt.state;
    const limits = this.limits;
    let dispatcher: Dispatcher = rt.pool;
    let client: Client | undefined;
    let queued = false;
    let queueTimer: NodeJS.Timeout | undefined;
    let cancelled = false;
    if (fresh) {
      client = this.o.upstreams.freshClient(rt);
      dispatcher = client;
    } else if (st.pooled >= this.o.upstreams.connectionsPerEndpoint) {
      // Every connection of the endpoint is busy: wait in a bounded queue
      // for a bounded time (HAProxy `maxqueue`, `timeout queue`).
      if (st.queued >= limits.queueSize) {
        this.answer(
          ex,
          table,
          ep.id,
          new TetherError('TETHER_QUEUE_FULL', `${st.queued} requests already wait for endpoint ${ep.id}`),
        );
        return;
      }
      queued = true;
      st.queued++;
      queueTimer = setTimeout(() => {
        // The request stays in undici's queue (it has no handle to remove it
        // before it starts); it is aborted the moment it gets a connection.
        cancelled = true;
        this.answer(
          ex,
          table,
          ep.id,
          new TetherError(
            'TETHER_QUEUE_TIMEOUT',
            `no connection to endpoint ${ep.id} within ${limits.queueTimeoutMs} ms`,
          ),
        );
      }, limits.queueTimeoutMs);
    }
    if (!fresh) st.pooled++;
    st.inflight++;
    const streamBody = ex.body?.kind === 'stream' ? new PassThrough() : null;
    const view = viewOf(req);
    const hop = this.flow.hopOf(table, view, isTls(req.socket));
    const setCookie = this.flow.setCookieHeader(table, decision, hop, view);
    const started = performance.now();
    let sendTimer: NodeJS.Timeout | undefined;
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      st.inflight--;
      if (!fresh) st.pooled--;
      if (queued) {
        queued = false;
        st.queued--;
        clearTimeout(queueTimer);
      }
      clearTimeout(sendTimer);
      client?.close().catch(() => {});
    };
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: (controller) => {
        if (queued) {
          queued = false;
          st.queued--;
          clearTimeout(queueTimer);
        }
        if (cancelled || ex.answered || res.destroyed) {
          controller.abort(new TetherError('TETHER_CLIENT_GONE', 'request already answered'));
          return;
        }
        ex.controller = controller;
        // A streamed body flows only once a connection exists: a connect
        // failure leaves it unread, so redispatch can still send it.
        if (streamBody !== null && ex.body?.kind === 'stream') {
          ex.bodyStarted = true;
          for (const c of ex.body.prefix) streamBody.write(c);
          req.pipe(streamBody);
          req.resume();
        }
      },
      onResponseStart: (controller, statusCode, headers, statusMessage) => {
        stripResponseHopHeaders(headers as Record<string, string | string[]>);
        if (setCookie !== undefined) {
          const prior = headers['set-cookie'];
          headers['set-cookie'] =
            prior === undefined ? setCookie : [...(Array.isArray(prior) ? prior : [prior]), setCookie];
        }
        if (this.closing) headers.connection = 'close';
        // The response hook of store-kept pins: learn the app's cookie, store a new or moved pin (fire-and-forget).
        if (ex.pin !== undefined) this.flow.storePins(table.pool, ex.pin, ep.id, headers['set-cookie']);
        try {
          res.writeHead(statusCode, statusMessage ?? '', headers as Record<string, string | string[]>);
        } catch (err) {
          controller.abort(err as Error);
        }
      },
      onResponseData: (controller, chunk) => {
        // Up to responseBufferBytes wait in memory for a slow reader (nginx
        // `proxy_buffering`), so most answers free the endpoint's connection
        // at once; past that, the endpoint is paused, and a client that
        // reads nothing for sendTimeoutMs is cut (nginx `send_timeout`).
        if (!res.write(chunk) && res.writableLength >= limits.responseBufferBytes) {
          controller.pause();
          sendTimer = setTimeout(() => {
            controller.abort(new TetherError('TETHER_SEND_TIMEOUT', 'client reads too slowly'));
            res.destroy();
          }, limits.sendTimeoutMs);
          res.once('drain', () => {
            clearTimeout(sendTimer);
            controller.resume();
          });
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
        streamBody?.destroy();
        if (ex.answered || res.destroyed) return; // answered already, or the client left
        if (res.headersSent) {
          // Headers already went out: the only honest signal left is a cut connection.
          res.destroy(err);
          return;
        }
        this.flow.attemptFailed(served, ex, decision, rt, fresh, err, this.transport);
      },
    };
    dispatcher.dispatch(
      {
        path: req.url as string,
        method: req.method as Dispatcher.HttpMethod,
        headers: this.upstreamHeaders(req, hop),
        body: ex.body === undefined ? null : ex.body.kind === 'buffer' ? ex.body.data : streamBody,
        idempotent: IDEMPOTENT.has(req.method ?? ''),
        ...(fresh ? { reset: true } : {}),
      },
      handler,
    );
  }

  /** The endpoint's request headers; `Expect` is dropped: Node already answered the client's 100-continue. */
  private upstreamHeaders(req: IncomingMessage, hop: Hop): string[] {
    const headers = buildUpstreamHeaders(req.rawHeaders, hop);
    if (req.headers.expect === undefined) return headers;
    const out: string[] = [];
    for (let i = 0; i < headers.length; i += 2)
      if ((headers[i] as string).toLowerCase() !== 'expect')
        out.push(headers[i] as string, headers[i + 1] as string);
    return out;
  }

  /** Answers an exchange with an error of the proxy, once. */
  private answer(
    ex: Exchange,
    table: CompiledTable | undefined,
    endpoint: string | undefined,
    err: TetherError,
  ): void {
    if (ex.answered) return;
    ex.answered = true;
    clearTimeout(ex.bodyTimer);
    this.fail(ex.res, table, endpoint, err);
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
    if (status >= 500 && status !== 503)
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
    // A request refused or cut short may have body bytes still coming: close
    // rather than read them as the next request.
    const close = status === 400 || status === 408 || !res.req.complete;
    if (close) res.shouldKeepAlive = false;
    res.writeHead(status, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-tether-error': err.code,
      ...(status === 503 ? { 'retry-after': '1' } : {}),
      ...(close ? { connection: 'close' } : {}),
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
    // The served table, not the store's: its runtimes are indexed like its endpoints.
    const served = this.o.upstreams.current;
    const refuse = (r: Refusal): void => {
      if (socket.writable) socket.end(formatRefusal(r));
      else socket.destroy();
    };
    if (served === undefined || this.closing) {
      refuse({ status: 503, code: served === undefined ? 'TETHER_NO_TABLE' : 'TETHER_SHUTTING_DOWN' });
      return;
    }
    const table = served.table;
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    const bad = refusalForRequest(req.httpVersion, req.url);
    if (bad !== undefined || req.method !== 'GET' || upgrade !== 'websocket') {
      // Only WebSocket is tunnelled: an h2c or other upgrade would bypass this proxy's view of requests.
      refuse(bad ?? { status: 400, code: 'TETHER_BAD_UPGRADE' });
      return;
    }
    const view = viewOf(req);
    const pin = this.flow.lookupStoredPin(table, view);
    if (!(pin instanceof Promise)) this.routeUpgrade(served, req, view, socket, head, pin);
    else {
      // Bytes a client sends before the 101 wait in the socket until the tunnel pipes them.
      socket.pause();
      void pin.then((ctx) => {
        if (!socket.destroyed) this.routeUpgrade(served, req, view, socket, head, ctx);
      });
    }
  }

  /** A WebSocket handshake's decision and hand-over to http-proxy-3, after the store's pin lookup if any. */
  private routeUpgrade(
    served: ServedTable,
    req: IncomingMessage,
    view: RequestView,
    socket: Socket,
    head: Buffer,
    pin: PinContext | undefined,
  ): void {
    const table = served.table;
    const refuse = (r: Refusal): void => {
      if (socket.writable) socket.end(formatRefusal(r));
      else socket.destroy();
    };
    const decision = this.flow.decide(table, view, Date.now(), served, pin);
    this.o.metrics.countDecision(table.pool, decision.outcome, decision.reason);
    const ep = decision.endpoint;
    if (ep === undefined) {
      refuse({ status: 503, code: 'TETHER_NO_ENDPOINT' });
      return;
    }
    const hop = this.flow.hopOf(table, view, isTls(req.socket));
    const hs: Handshake = {
      headers: buildUpstreamHeaders(req.rawHeaders, hop, 'websocket'),
      setCookie: this.flow.setCookieHeader(table, decision, hop, view),
      upgraded: false,
      clientGone: false,
      afterUpgrade:
        pin === undefined ? undefined : (setCookie) => this.flow.storePins(table.pool, pin, ep.id, setCookie),
    };
    this.handshakes.set(req, hs);
    const rt: EndpointRuntime = served.at(ep.index);
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
      hs.afterUpgrade?.(proxyRes.headers['set-cookie']);
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

/** A node:http request as the shared flow reads it. */
function viewOf(req: IncomingMessage): RequestView {
  return {
    remoteAddress: req.socket.remoteAddress,
    localPort: req.socket.localPort,
    header: (name) => header(req, name),
  };
}

function isTls(socket: Socket): boolean {
  return (socket as { encrypted?: boolean }).encrypted === true;
}

/** One client request and its attempts (the first, a retry, a redispatch). */
interface Exchange extends FlowExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The undici request now under way, so a client that leaves can abort it. */
  controller: Dispatcher.DispatchController | undefined;
  /** The request body: none, read whole (replayable), or a read prefix and the rest still in `req`. */
  body: { kind: 'buffer'; data: Buffer } | { kind: 'stream'; prefix: Buffer[] } | undefined;
  /** A streamed body began to flow to an endpoint: it cannot be sent again. */
  bodyStarted: boolean;
  /** Fires when the body takes longer than allowed. */
  bodyTimer: NodeJS.Timeout | undefined;
  /** The proxy answered the client itself (an error); later attempt events are ignored. */
  answered: boolean;
}
