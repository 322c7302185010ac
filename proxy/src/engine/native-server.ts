/**
 * The native engine: Tether's own HTTP/1.1 forwarding on `node:net`, the
 * default data path (`--engine native`). It parses with the strict codecs
 * next to it, forwards over its own keep-alive pools (upstream-pool.ts),
 * and drives every exchange through the same {@link RequestFlow} as the
 * node:http path, so affinity, retries, redispatch and passive health are
 * one code. WebSocket handshakes are handed, socket and bytes, to the
 * node:http path's server (http-proxy-3).
 *
 * One request per client connection is in progress at a time: pipelined
 * requests wait in the connection's buffer and are answered in order
 * (nginx reads the next request only once the previous is answered).
 */
import { Server as NetServer, type Socket } from 'node:net';
import { formatRefusal, type Refusal, refusalForRequest } from '../client-errors.ts';
import { statusForError, TetherError } from '../errors.ts';
import { listenOn } from '../listen.ts';
import { codeClass } from '../metrics.ts';
import { DEFAULT_LIMITS, type ProxyLimits, ProxyServer, type ProxyServerOptions } from '../proxy-server.ts';
import { type FlowExchange, RequestFlow, type RequestView, type Transport } from '../request-flow.ts';
import type { CompiledTable } from '../routing/compiled-table.ts';
import { buildUpstreamHeaders, stripResponseHopRawHeaders } from '../routing/forwarded-headers.ts';
import type { Decision } from '../routing/pick-endpoint.ts';
import type { EndpointRuntime, ServedTable } from '../upstreams.ts';
import { ChunkedDecoder, chunkHeader, LAST_CHUNK } from './chunked.ts';
import { joinedHeader } from './header-lines.ts';
import { parseRequestHead, type RequestHead } from './request-head.ts';
import type { ResponseHead } from './response-head.ts';
import { type ResponseSink, type UpstreamConnection, UpstreamPool } from './upstream-pool.ts';

/** Idle keep-alive time of client connections, ms: Node's `keepAliveTimeout` default, which the node:http path had. */
const CLIENT_KEEP_ALIVE_MS = 5_000;
/** See proxy-server.ts: how long a connection we sent our FIN on is still read, ms (nginx `lingering_timeout`). */
const LINGER_MS = 2_000;
/** Pipelined bytes buffered behind a request in progress before the client is paused. */
const MAX_PIPELINED_BYTES = 64 * 1024;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/** One client request and its attempts. */
interface Exchange extends FlowExchange {
  readonly conn: ClientConnection;
  readonly head: RequestHead;
  readonly view: RequestView;
  /** The body read whole (replayable), or undefined (none, or streamed). */
  body: Buffer | undefined;
  /** Bytes of a streamed body read so far and not yet sent (the first ones, before a connection exists). */
  prefix: Buffer[] | undefined;
  /** A streamed body is being read (its framing continues past requestBufferBytes). */
  streamed: boolean;
  /** The whole request body has arrived. */
  bodyComplete: boolean;
  /** A streamed body began to flow to an endpoint: it cannot be sent again. */
  bodyStarted: boolean;
  /** The upstream connection of the attempt under way, once it has one. */
  upstream: UpstreamConnection | undefined;
  /** Ends the attempt under way (client gone, proxy's own timeouts). */
  cancel: (() => void) | undefined;
  bodyTimer: NodeJS.Timeout | undefined;
  /** The proxy answered the client itself. */
  answered: boolean;
  /** Response bytes went to the client. */
  responseStarted: boolean;
  /** The exchange is over (response done or connection gone). */
  done: boolean;
  /** The status answered. */
  status: number;
  /** Bytes in `prefix`. */
  prefixBytes: number;
}

/** Bound metric children of one endpoint runtime (see {@link NativeProxyServer.seriesOf}). */
interface EndpointSeries {
  readonly latency: { observe(v: number): void };
  /** By response status. */
  readonly requests: Map<number, { inc(): void }>;
}

/** The proxy listener of the native engine. */
export class NativeProxyServer {
  readonly server: NetServer;
  private readonly o: ProxyServerOptions;
  readonly limits: ProxyLimits;
  readonly flow: RequestFlow;
  /** The node:http path: WebSocket handshakes are handed to it. */
  private readonly websockets: ProxyServer;
  private readonly pools = new Map<string, UpstreamPool>();
  private poolsFor: ServedTable | undefined;
  private readonly conns = new Set<ClientConnection>();
  closing = false;
  inflight = 0;
  private readonly transport: Transport<Exchange>;
  private readonly series = new WeakMap<EndpointRuntime, EndpointSeries>();

  constructor(o: ProxyServerOptions) {
    this.o = o;
    this.limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.flow = o.flow ?? new RequestFlow(o);
    this.websockets = new ProxyServer({ ...o, flow: this.flow });
    this.transport = {
      forward: (served, ex, decision, rt, fresh) => this.forward(served, ex, decision, rt, fresh),
      answer: (ex, table, endpoint, err) => this.answer(ex, table, endpoint, err),
      replayable: (ex) => !ex.streamed || !ex.bodyStarted,
      clientGone: (ex) => ex.conn.gone,
      settled: (ex) => ex.done || ex.answered,
    };
    this.server = new NetServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  /** Starts listening. @returns the bound port. */
  listen(host: string, port: number): Promise<number> {
    return listenOn(this.server, host, port);
  }

  /** Graceful stop, in the same steps as {@link ProxyServer.shutdown}. */
  async shutdown(timeoutMs: number): Promise<void> {
    this.closing = true;
    const started = Date.now();
    const deadline = started + timeoutMs;
    const graceEnd = started + Math.min(this.limits.shutdownIdleGraceMs, timeoutMs);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const ws = this.websockets.shutdown(timeoutMs);
    for (;;) {
      const now = Date.now();
      let waiting = 0;
      for (const c of this.conns) {
        waiting++;
        if (now >= graceEnd && c.idle && !c.lingering) c.lingerClose();
      }
      if ((waiting === 0 && this.inflight === 0) || now >= deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of this.conns) c.socket.destroy();
    await closed;
    await ws;
    for (const p of this.pools.values()) p.close();
  }

  private accept(socket: Socket): void {
    const c = new ClientConnection(this, socket);
    this.conns.add(c);
    this.o.metrics.openConnections.inc();
    socket.once('close', () => {
      if (c.handedOver) return;
      this.conns.delete(c);
      this.o.metrics.openConnections.dec();
    });
  }

  /** Logs one line (JSON). */
  log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.o.log(level, msg, fields);
  }

  /** Hands a WebSocket handshake (its bytes unread again) to the node:http path, which counts the connection from here. */
  handOver(c: ClientConnection, bytes: Buffer): void {
    this.conns.delete(c);
    this.o.metrics.openConnections.dec();
    const socket = c.socket;
    socket.unshift(bytes);
    this.websockets.server.emit('connection', socket);
    socket.resume();
  }

  /** A request head is in: refused, or its body read and the flow started. */
  begin(c: ClientConnection, head: RequestHead): Exchange | undefined {
    const refusal = refusalForRequest(head.version, head.target);
    if (refusal !== undefined) {
      const table = this.o.store.current;
      if (table !== undefined)
        this.o.metrics.requests.inc({
          pool: table.pool,
          endpoint: '',
          code_class: codeClass(refusal.status),
        });
      c.refuse(refusal);
      return undefined;
    }
    const raw = head.rawHeaders;
    const socket = c.socket;
    const view: RequestView = {
      remoteAddress: socket.remoteAddress,
      localPort: socket.localPort,
      header: (name) => joinedHeader(raw, name, name === 'cookie' ? '; ' : ', '),
    };
    const ex: Exchange = {
      method: head.method,
      retried: false,
      redispatched: false,
      pin: undefined,
      conn: c,
      head,
      view,
      body: undefined,
      prefix: undefined,
      streamed: false,
      bodyComplete:
        head.framing.kind === 'none' || (head.framing.kind === 'length' && head.framing.length === 0),
      bodyStarted: false,
      upstream: undefined,
      cancel: undefined,
      bodyTimer: undefined,
      answered: false,
      responseStarted: false,
      done: false,
      status: 0,
      prefixBytes: 0,
    };
    this.inflight++;
    c.current = ex;
    if (this.o.upstreams.current === undefined) {
      this.answer(
        ex,
        undefined,
        undefined,
        new TetherError('TETHER_NO_TABLE', 'no routing table loaded yet'),
      );
      return ex;
    }
    if (!ex.bodyComplete) {
      if (head.expectContinue) socket.write(CONTINUE, 'latin1');
      ex.bodyTimer = setTimeout(() => this.bodyTooSlow(ex), this.limits.clientBodyTimeoutMs);
      ex.prefix = [];
      return ex;
    }
    this.flow.start(ex, view, this.transport);
    return ex;
  }

  /** Body bytes of the exchange's request, decoded. */
  bodyData(ex: Exchange, data: Buffer): void {
    if (ex.done || ex.answered) return;
    if (ex.bodyStarted && ex.upstream !== undefined) {
      if (!ex.upstream.writeBody(data)) {
        const up = ex.upstream;
        ex.conn.socket.pause();
        up.onDrain = () => {
          up.onDrain = undefined;
          ex.conn.socket.resume();
        };
      }
      return;
    }
    const prefix = ex.prefix;
    // A streamed body whose attempt failed after it began to flow: the exchange is being answered.
    if (prefix === undefined) return;
    prefix.push(data);
    ex.prefixBytes += data.length;
    if (!ex.streamed) {
      if (ex.prefixBytes > this.limits.requestBufferBytes) {
        // Too large to hold: stream it from here on (nginx `client_body_buffer_size`, then a temp file; we stream).
        ex.streamed = true;
        ex.conn.socket.pause();
        this.flow.start(ex, ex.view, this.transport);
      }
    }
  }

  /** The request body is complete. */
  bodyEnd(ex: Exchange): void {
    clearTimeout(ex.bodyTimer);
    ex.bodyComplete = true;
    if (ex.done || ex.answered) return;
    if (ex.streamed) {
      if (ex.bodyStarted) ex.upstream?.endBody();
      return;
    }
    const prefix = ex.prefix as Buffer[];
    ex.body = prefix.length === 1 ? prefix[0] : Buffer.concat(prefix);
    ex.prefix = undefined;
    this.flow.start(ex, ex.view, this.transport);
  }

  /** The client's body framing broke mid-body: the exchange ends here. */
  bodyBroken(ex: Exchange): void {
    clearTimeout(ex.bodyTimer);
    ex.cancel?.();
    if (ex.responseStarted) {
      ex.conn.socket.destroy();
      return;
    }
    ex.conn.refuse({ status: 400, code: 'TETHER_BAD_REQUEST' });
  }

  private bodyTooSlow(ex: Exchange): void {
    const err = new TetherError(
      'TETHER_BODY_TIMEOUT',
      `request body not received within ${this.limits.clientBodyTimeoutMs} ms`,
    );
    ex.cancel?.();
    this.answer(ex, this.o.upstreams.current?.table, undefined, err);
  }

  /** The client connection closed: the attempt under way is dropped. */
  clientGone(ex: Exchange): void {
    clearTimeout(ex.bodyTimer);
    ex.cancel?.();
    this.finishExchange(ex);
  }

  private finishExchange(ex: Exchange): void {
    if (ex.done) return;
    ex.done = true;
    this.inflight--;
  }

  /**
   * The metric series of an endpoint's runtime, resolved once: prom-client
   * hashes a label object on every `inc({…})`, a bound child does not. A
   * runtime lives as long as its table, so series of an endpoint that left
   * are not kept alive by this cache.
   */
  private seriesOf(rt: EndpointRuntime): EndpointSeries {
    let m = this.series.get(rt);
    if (m === undefined) {
      const pool = rt.table.pool;
      m = {
        latency: this.o.metrics.upstreamLatency.labels(pool, rt.endpoint.id),
        requests: new Map(),
      };
      this.series.set(rt, m);
    }
    return m;
  }

  private poolFor(served: ServedTable, rt: EndpointRuntime): UpstreamPool {
    if (this.poolsFor !== served) {
      // A new table: pools of origins it no longer has close once their exchanges end.
      this.poolsFor = served;
      const keep = new Set(served.table.endpoints.map((e) => e.origin));
      for (const [origin, pool] of this.pools)
        if (!keep.has(origin)) {
          this.pools.delete(origin);
          pool.close();
        }
    }
    const origin = rt.endpoint.origin;
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      const s = this.o.upstreams.settings;
      pool = new UpstreamPool(origin, {
        connectTimeoutMs: s.connectTimeoutMs,
        readTimeoutMs: s.readTimeoutMs,
        maxConnections: s.connectionsPerEndpoint,
        keepAliveTimeoutMs: s.keepAliveTimeoutMs,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** One attempt to send the request to `rt`'s endpoint (the {@link Transport} of the flow). */
  private forward(
    served: ServedTable,
    ex: Exchange,
    decision: Decision,
    rt: EndpointRuntime,
    fresh: boolean,
  ): void {
    if (ex.done || ex.answered) return;
    const table = served.table;
    const ep = rt.endpoint;
    const st = rt.state;
    const limits = this.limits;
    const pool = this.poolFor(served, rt);
    let queued = false;
    let queueTimer: NodeJS.Timeout | undefined;
    let withdraw: (() => void) | undefined;
    if (!fresh && st.pooled >= this.o.upstreams.connectionsPerEndpoint) {
      // Every connection of the endpoint is busy: wait in a bounded queue for
      // a bounded time (HAProxy `maxqueue`, `timeout queue`).
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
    }
    if (!fresh) st.pooled++;
    st.inflight++;
    let finished = false;
    let sendTimer: NodeJS.Timeout | undefined;
    const started = performance.now();
    const finish = (): void => {
      if (finished) return;
      finished = true;
      st.inflight--;
      if (!fresh) st.pooled--;
      if (queued) {
        queued = false;
        st.queued--;
      }
      clearTimeout(queueTimer);
      clearTimeout(sendTimer);
      ex.cancel = undefined;
      ex.upstream = undefined;
    };
    ex.cancel = () => {
      withdraw?.();
      ex.upstream?.abort();
      finish();
    };
    if (queued) {
      queueTimer = setTimeout(() => {
        ex.cancel?.();
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
    const socket = ex.conn.socket;
    const hop = this.flow.hopOf(table, ex.view, false);
    const setCookie = this.flow.setCookieHeader(table, decision, hop, ex.view);
    let chunkedToClient = false;
    let closeDelimited = false;
    let pendingHead: string | undefined;
    let upPaused = false;
    const sink: ResponseSink = {
      onHead: (h: ResponseHead) => {
        // The response hook of store-kept pins: learn the app's cookie, store a new or moved pin (fire-and-forget).
        if (ex.pin !== undefined) this.flow.storePins(table.pool, ex.pin, ep.id, setCookiesOf(h.rawHeaders));
        const out = this.responseHead(ex, h, setCookie);
        chunkedToClient = out.chunked;
        closeDelimited = out.closeDelimited;
        ex.responseStarted = true;
        // Held back: the body bytes of the same read usually follow at once,
        // and head and body then leave in one write (one syscall).
        pendingHead = out.text;
      },
      onData: (chunk) => {
        let ok: boolean;
        if (pendingHead !== undefined && !chunkedToClient) {
          const head = pendingHead;
          pendingHead = undefined;
          const all = Buffer.allocUnsafe(head.length + chunk.length);
          all.write(head, 0, 'latin1');
          chunk.copy(all, head.length);
          ok = socket.write(all);
        } else if (chunkedToClient) {
          if (pendingHead !== undefined) {
            socket.write(pendingHead, 'latin1');
            pendingHead = undefined;
          }
          socket.cork();
          socket.write(chunkHeader(chunk.length), 'latin1');
          socket.write(chunk);
          ok = socket.write('\r\n', 'latin1');
          socket.uncork();
        } else ok = socket.write(chunk);
        // Up to responseBufferBytes wait in memory for a slow reader (nginx
        // `proxy_buffering`); past that the endpoint is paused, and a client
        // that reads nothing for sendTimeoutMs is cut (nginx `send_timeout`).
        if (
          !ok &&
          !upPaused &&
          socket.writableLength >= limits.responseBufferBytes &&
          ex.upstream !== undefined
        ) {
          const up = ex.upstream;
          upPaused = true;
          up.pause();
          clearTimeout(sendTimer);
          sendTimer = setTimeout(() => {
            ex.cancel?.();
            socket.destroy();
          }, limits.sendTimeoutMs);
          socket.once('drain', () => {
            upPaused = false;
            clearTimeout(sendTimer);
            up.resume();
          });
        }
      },
      onReadDone: () => {
        // A head with no body bytes behind it yet (a stream, server-sent events) goes out now.
        if (pendingHead !== undefined) {
          socket.write(pendingHead, 'latin1');
          pendingHead = undefined;
        }
      },
      onEnd: () => {
        finish();
        if (pendingHead !== undefined) {
          socket.write(chunkedToClient ? pendingHead + LAST_CHUNK : pendingHead, 'latin1');
          pendingHead = undefined;
        } else if (chunkedToClient) socket.write(LAST_CHUNK, 'latin1');
        const m = this.seriesOf(rt);
        let requests = m.requests.get(ex.status);
        if (requests === undefined) {
          requests = this.o.metrics.requests.labels(table.pool, ep.id, codeClass(ex.status));
          m.requests.set(ex.status, requests);
        }
        requests.inc();
        m.latency.observe((performance.now() - started) / 1000);
        this.responseDone(ex, closeDelimited);
      },
      onError: (err) => {
        finish();
        if (ex.done || ex.answered) return;
        if (ex.responseStarted) {
          // Headers already went out: the only honest signal left is a cut connection.
          socket.destroy();
          return;
        }
        this.flow.attemptFailed(served, ex, decision, rt, fresh, err, this.transport);
      },
    };
    const got = (err: Error | null, up: UpstreamConnection | undefined): void => {
      withdraw = undefined;
      if (queued) {
        queued = false;
        st.queued--;
        clearTimeout(queueTimer);
      }
      if (finished || ex.done || ex.answered) {
        up?.giveBack();
        return;
      }
      if (err !== null || up === undefined) {
        finish();
        this.flow.attemptFailed(
          served,
          ex,
          decision,
          rt,
          fresh,
          err ?? new Error('no connection'),
          this.transport,
        );
        return;
      }
      ex.upstream = up;
      this.send(ex, up, ep.origin, hop, sink);
    };
    if (fresh) pool.fresh(got);
    else withdraw = pool.acquire(got);
  }

  /** Writes the request to the endpoint: head, and the body (whole, or what has arrived of a streamed one). */
  private send(
    ex: Exchange,
    up: UpstreamConnection,
    origin: string,
    hop: ReturnType<RequestFlow['hopOf']>,
    sink: ResponseSink,
  ): void {
    const h = ex.head;
    const headers = buildUpstreamHeaders(h.rawHeaders, hop);
    let text = `${h.method} ${h.target} HTTP/1.1\r\n`;
    let hasHost = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i] as string;
      if (name.length === 6 && name.toLowerCase() === 'expect') continue;
      if (name.length === 4 && name.toLowerCase() === 'host') hasHost = true;
      text += `${name}: ${headers[i + 1]}\r\n`;
    }
    // An HTTP/1.0 request may come without Host; HTTP/1.1 to the endpoint needs one (undici adds the origin's).
    if (!hasHost) text += `host: ${origin.slice('http://'.length)}\r\n`;
    const f = h.framing;
    let chunked = false;
    if (ex.streamed) {
      if (f.kind === 'chunked') {
        text += 'transfer-encoding: chunked\r\n';
        chunked = true;
      }
      // A streamed Content-Length body keeps its Content-Length (passed by buildUpstreamHeaders).
    } else if (f.kind === 'chunked') {
      text += `content-length: ${ex.body?.length ?? 0}\r\n`;
    } else if (f.kind === 'none' && (h.method === 'POST' || h.method === 'PUT' || h.method === 'PATCH')) {
      text += 'content-length: 0\r\n';
    }
    text += '\r\n';
    up.begin(h.method, text, ex.streamed ? undefined : ex.body, ex.streamed, chunked, sink);
    if (!ex.streamed || ex.upstream !== up) return;
    ex.bodyStarted = true;
    const prefix = ex.prefix ?? [];
    ex.prefix = undefined;
    for (const b of prefix) up.writeBody(b);
    if (ex.bodyComplete) up.endBody();
    else ex.conn.socket.resume();
  }

  /** The client's response head: the endpoint's, less hop-by-hop headers, plus the affinity cookie and our framing. */
  private responseHead(
    ex: Exchange,
    h: ResponseHead,
    setCookie: string | undefined,
  ): { text: string; chunked: boolean; closeDelimited: boolean } {
    const raw = stripResponseHopRawHeaders(h.rawHeaders);
    let text = `HTTP/1.1 ${h.status} ${h.reason}\r\n`;
    for (let i = 0; i < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
    if (setCookie !== undefined) text += `set-cookie: ${setCookie}\r\n`;
    // No body, or the endpoint's Content-Length (kept in `raw`) frames it for the client too.
    const framed = h.framing.kind === 'none' || h.framing.kind === 'length';
    const c = ex.conn;
    let chunked = false;
    let closeDelimited = false;
    if (!framed) {
      if (ex.head.version === '1.1') {
        text += 'transfer-encoding: chunked\r\n';
        chunked = true;
      } else closeDelimited = true;
    }
    if (this.closing || !ex.head.keepAlive || closeDelimited) {
      c.keepAlive = false;
      text += 'connection: close\r\n';
    } else if (ex.head.version === '1.0') text += 'connection: keep-alive\r\n';
    ex.status = h.status;
    return { text: `${text}\r\n`, chunked, closeDelimited };
  }

  /** The response went out whole: the connection closes or reads its next request. */
  private responseDone(ex: Exchange, closeAfter: boolean): void {
    this.finishExchange(ex);
    const c = ex.conn;
    if (closeAfter || !c.keepAlive || !ex.bodyComplete || c.gone) {
      c.lingerClose();
      return;
    }
    c.next();
  }

  /** Answers an exchange with an error of the proxy, once (the {@link Transport} of the flow). */
  private answer(
    ex: Exchange,
    table: CompiledTable | undefined,
    endpoint: string | undefined,
    err: TetherError,
  ): void {
    if (ex.answered || ex.done) return;
    ex.answered = true;
    clearTimeout(ex.bodyTimer);
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
    const c = ex.conn;
    if (ex.responseStarted || c.gone) {
      c.socket.destroy();
      this.finishExchange(ex);
      return;
    }
    const body = `${status} ${err.code}\n`;
    // A request refused or cut short may have body bytes still coming: close rather than read them as the next request.
    const close = status === 400 || status === 408 || !ex.bodyComplete || this.closing || !ex.head.keepAlive;
    if (close) c.keepAlive = false;
    ex.status = status;
    c.socket.write(
      `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
        `content-length: ${body.length}\r\nx-tether-error: ${err.code}\r\n` +
        (status === 503 ? 'retry-after: 1\r\n' : '') +
        (close ? 'connection: close\r\n' : '') +
        `\r\n${body}`,
      'latin1',
    );
    this.responseDone(ex, close);
  }
}

/** The values of an endpoint's `Set-Cookie` headers (never joined: a cookie's `Expires` holds a comma). */
function setCookiesOf(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'set-cookie') out.push(raw[i + 1] as string);
  }
  return out;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** One client connection: reads requests one at a time, in order. */
class ClientConnection {
  readonly socket: Socket;
  private readonly s: NativeProxyServer;
  private buf: Buffer | undefined;
  /** The exchange in progress (set by {@link NativeProxyServer.begin}). */
  current: Exchange | undefined;
  /** Body framing of the request being read. */
  private bodyLeft = 0;
  private decoder: ChunkedDecoder | undefined;
  private readingBody = false;
  /** What the connection's timers wait for: a head under way, an idle keep-alive gap, or nothing. */
  private waiting: 'none' | 'header' | 'idle' = 'none';
  /** Reused (`refresh()`) from request to request: no timer allocation per request. */
  private headerTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Response bytes still queued at the last idle check, and for how long no byte left. */
  private unsent = 0;
  private stalledMs = 0;
  keepAlive = true;
  gone = false;
  lingering = false;
  /** The client half-closed: answer what is in progress, then close. */
  private ended = false;
  handedOver = false;

  constructor(s: NativeProxyServer, socket: Socket) {
    this.s = s;
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('end', this.onEnd);
    socket.on('close', this.onClose);
    this.armHeaderTimer();
  }

  /** No request in progress and nothing buffered: the connection may be closed on shutdown. */
  get idle(): boolean {
    return this.current === undefined && (this.buf === undefined || this.buf.length === 0);
  }

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    if (this.lingering) return;
    if (this.readingBody) {
      // Half-closed in the middle of a body: it can never complete.
      this.socket.destroy();
      return;
    }
    if (this.current === undefined || this.current.done) {
      // Nothing owed: a partial head can never complete.
      this.socket.end();
    }
  };

  private readonly onClose = (): void => {
    this.gone = true;
    this.waiting = 'none';
    clearTimeout(this.headerTimer);
    clearTimeout(this.idleTimer);
    const ex = this.current;
    if (ex !== undefined && !ex.done) this.s.clientGone(ex);
  };

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.take(chunk);
    } catch (err) {
      // A bug must cost one connection, never the process.
      this.s.log('error', 'native engine: unexpected error on a client connection', {
        error: (err as Error).stack ?? String(err),
      });
      this.socket.destroy();
    }
  };

  private take(chunk: Buffer): void {
    if (this.lingering) return;
    if (this.readingBody) {
      this.feedBody(chunk);
      return;
    }
    this.buf = this.buf === undefined || this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.current === undefined) this.parse();
    else if (this.buf.length > MAX_PIPELINED_BYTES) this.socket.pause();
  }

  /** Parses the next request head in the buffer, if one is complete. */
  private parse(): void {
    const buf = this.buf;
    if (buf === undefined || buf.length === 0) {
      if (this.ended) this.lingerClose();
      else this.armIdleTimer();
      return;
    }
    const r = parseRequestHead(buf);
    if (r.kind === 'incomplete') {
      if (this.ended) this.lingerClose();
      else this.armHeaderTimer();
      return;
    }
    this.waiting = 'none';
    if (r.kind === 'refused') {
      this.refuse(r.refusal);
      return;
    }
    const head = r.head;
    if (head.upgrade) {
      this.handedOver = true;
      this.buf = undefined;
      this.socket.off('data', this.onData);
      this.socket.off('error', this.onError);
      this.socket.off('end', this.onEnd);
      this.socket.off('close', this.onClose);
      this.socket.pause();
      this.s.handOver(this, buf);
      return;
    }
    this.buf = buf.subarray(head.size);
    this.keepAlive = head.keepAlive && !this.s.closing;
    const ex = this.s.begin(this, head);
    if (ex === undefined || ex.bodyComplete || ex.done || ex.answered) return;
    const f = head.framing;
    this.readingBody = true;
    this.bodyLeft = f.kind === 'length' ? f.length : 0;
    this.decoder = f.kind === 'chunked' ? new ChunkedDecoder() : undefined;
    const rest = this.buf;
    this.buf = undefined;
    if (rest.length > 0) this.feedBody(rest);
  }

  private feedBody(chunk: Buffer): void {
    const ex = this.current as Exchange;
    let rest: Buffer;
    if (this.decoder !== undefined) {
      let used: number;
      try {
        used = this.decoder.feed(chunk, 0, (d) => this.s.bodyData(ex, d));
      } catch {
        this.readingBody = false;
        this.keepAlive = false;
        this.s.bodyBroken(ex);
        return;
      }
      if (!this.decoder.done) return;
      rest = chunk.subarray(used);
    } else {
      const n = Math.min(this.bodyLeft, chunk.length);
      this.bodyLeft -= n;
      if (n > 0) this.s.bodyData(ex, n === chunk.length ? chunk : chunk.subarray(0, n));
      if (this.bodyLeft > 0) return;
      rest = chunk.subarray(n);
    }
    this.readingBody = false;
    this.decoder = undefined;
    if (rest.length > 0) this.buf = rest;
    this.s.bodyEnd(ex);
  }

  /** The exchange is over and the connection stays: read the next request. */
  next(): void {
    this.current = undefined;
    if (this.gone || this.lingering) return;
    if (this.socket.isPaused()) this.socket.resume();
    this.parse();
  }

  /** Answers a request the engine will not serve and closes after it. */
  refuse(r: Refusal): void {
    const ex = this.current;
    if (ex !== undefined && !ex.done) this.s.clientGone(ex);
    this.readingBody = false;
    this.keepAlive = false;
    if (this.lingering || this.gone) {
      this.socket.destroy();
      return;
    }
    this.socket.write(formatRefusal(r), 'latin1');
    this.lingerClose();
  }

  /** Sends our FIN and keeps reading (and dropping), so bytes on their way never meet a reset (nginx `lingering_close`). */
  lingerClose(): void {
    if (this.lingering) return;
    this.lingering = true;
    this.readingBody = false;
    this.waiting = 'none';
    this.buf = undefined;
    if (this.socket.isPaused()) this.socket.resume();
    this.socket.end();
    const cut = setTimeout(() => this.socket.destroy(), LINGER_MS);
    cut.unref();
    this.socket.once('close', () => clearTimeout(cut));
  }

  /** A head under way must be complete within clientHeaderTimeoutMs: 408 after (nginx `client_header_timeout`). */
  private armHeaderTimer(): void {
    if (this.waiting === 'header') return;
    this.waiting = 'header';
    if (this.headerTimer === undefined)
      this.headerTimer = setTimeout(this.onHeaderTimer, this.s.limits.clientHeaderTimeoutMs);
    else this.headerTimer.refresh();
  }

  private readonly onHeaderTimer = (): void => {
    if (this.waiting !== 'header' || this.current !== undefined) return;
    this.waiting = 'none';
    if (this.buf === undefined || this.buf.length === 0) this.socket.destroy();
    else this.refuse({ status: 408, code: 'TETHER_REQUEST_TIMEOUT' });
  };

  /**
   * An idle keep-alive connection is closed after {@link CLIENT_KEEP_ALIVE_MS}
   * counted from when its last response left (Node's `keepAliveTimeout`); a
   * response still in the socket's buffer for a slow reader is waited for
   * while the reader makes progress, and cut after sendTimeoutMs without any.
   */
  private armIdleTimer(): void {
    this.waiting = 'idle';
    this.unsent = this.socket.writableLength;
    this.stalledMs = 0;
    if (this.idleTimer === undefined) this.idleTimer = setTimeout(this.onIdleTimer, CLIENT_KEEP_ALIVE_MS);
    else this.idleTimer.refresh();
  }

  private readonly onIdleTimer = (): void => {
    if (this.waiting !== 'idle' || !this.idle) return;
    const left = this.socket.writableLength;
    if (left === 0) {
      this.lingerClose();
      return;
    }
    this.stalledMs = left < this.unsent ? 0 : this.stalledMs + CLIENT_KEEP_ALIVE_MS;
    this.unsent = left;
    if (this.stalledMs >= this.s.limits.sendTimeoutMs) this.socket.destroy();
    else this.idleTimer?.refresh();
  };
}
