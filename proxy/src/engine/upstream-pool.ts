/**
 * Connections of the native engine to one endpoint: a keep-alive pool
 * (most recently used first) with a FIFO of requests waiting for a
 * connection, and the response side of one HTTP/1.1 exchange per
 * connection (no pipelining to endpoints, as undici's `pipelining: 1`).
 *
 * Errors carry the codes errors.ts classifies (the same as undici's for the
 * same fault), so passive health and retries judge both transports alike:
 * `ECONNREFUSED` & co. from the socket, `UND_ERR_CONNECT_TIMEOUT`,
 * `UND_ERR_HEADERS_TIMEOUT`, `UND_ERR_BODY_TIMEOUT`, `UND_ERR_SOCKET` for a
 * close before the response ended, `HPE_*` for a malformed response; socket
 * errors are tagged with the bytes the socket had read
 * ({@link SOCKET_BYTES_READ}), so a broken reused connection is told from a
 * broken new one.
 */
import { connect, type Socket } from 'node:net';
import { SOCKET_BYTES_READ } from '../errors.ts';
import { ChunkedDecoder, chunkHeader, LAST_CHUNK } from './chunked.ts';
import { parseResponseHead, type ResponseHead, ResponseParseError } from './response-head.ts';

/** Settings of the connections to endpoints (cli.ts's `--connect-timeout` etc.). */
export interface UpstreamPoolSettings {
  /** TCP connect timeout, ms. */
  connectTimeoutMs: number;
  /** Wait for response headers after the request was sent, and between body bytes, ms. */
  readTimeoutMs: number;
  /** Most connections to the endpoint (busy and idle). */
  maxConnections: number;
  /** An idle keep-alive connection is closed after this long, ms (below the endpoints' own, so the proxy closes first). */
  keepAliveTimeoutMs: number;
}

/** Receives one response. Exactly one of `onEnd` or `onError` ends it. */
export interface ResponseSink {
  /** The final head (1xx interim responses are dropped). */
  onHead(head: ResponseHead): void;
  /** Body bytes, decoded from the endpoint's framing. */
  onData(chunk: Buffer): void;
  onEnd(): void;
  onError(err: Error): void;
  /** One read from the endpoint was handled and the response goes on. */
  onReadDone(): void;
}

/** An error with a code, as undici raises them. */
export class UpstreamError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'UpstreamError';
    this.code = code;
  }
}

function tagged(err: Error, socket: Socket): Error {
  if (Object.isExtensible(err))
    (err as unknown as Record<symbol, number>)[SOCKET_BYTES_READ] = socket.bytesRead;
  return err;
}

/** One connection to an endpoint; carries one exchange at a time. */
export class UpstreamConnection {
  readonly socket: Socket;
  private readonly pool: UpstreamPool | undefined;
  private readonly settings: UpstreamPoolSettings;
  private sink: ResponseSink | undefined;
  private method = 'GET';
  private head: ResponseHead | undefined;
  private pending: Buffer | undefined;
  private remaining = 0;
  private decoder: ChunkedDecoder | undefined;
  private requestSent = false;
  private paused = false;
  private dead = false;
  private chunkedBody = false;
  /** Called when the socket can take more request body bytes. */
  onDrain: (() => void) | undefined;

  constructor(socket: Socket, pool: UpstreamPool | undefined, settings: UpstreamPoolSettings) {
    this.socket = socket;
    this.pool = pool;
    this.settings = settings;
    socket.setNoDelay(true);
    socket.on('end', () => this.onSocketEnd());
    socket.on('error', (err: Error) => this.fail(tagged(err, socket)));
    socket.on('close', () =>
      this.fail(tagged(new UpstreamError('UND_ERR_SOCKET', 'other side closed'), socket)),
    );
    socket.on('timeout', () => this.onTimeout());
    socket.on('drain', () => this.onDrain?.());
  }

  /** Bytes read from the endpoint (the socket's `onread` callback: no stream machinery on this path). */
  onRead(chunk: Buffer): void {
    try {
      this.onSocketData(chunk);
      this.sink?.onReadDone();
    } catch (err) {
      // A bug must cost one exchange (502, not held against the endpoint), never the process.
      this.fail(new UpstreamError('ERR_TETHER_ENGINE', `native engine: ${(err as Error).message}`));
    }
  }

  /** The connection is open and carries no exchange. */
  get usable(): boolean {
    return !this.dead && this.sink === undefined && !this.socket.destroyed;
  }

  /**
   * Sends a request head (and a whole body, if given) and waits for the response.
   * @param chunkedBody - the body follows through {@link writeBody} in chunked framing.
   * @param streamed - more body follows through {@link writeBody}; the read timeout starts after {@link endBody}.
   */
  begin(
    method: string,
    head: string,
    body: Buffer | undefined,
    streamed: boolean,
    chunkedBody: boolean,
    sink: ResponseSink,
  ): void {
    this.sink = sink;
    this.method = method;
    this.head = undefined;
    this.pending = undefined;
    this.decoder = undefined;
    this.paused = false;
    this.chunkedBody = chunkedBody;
    this.requestSent = !streamed;
    this.socket.setTimeout(streamed ? 0 : this.settings.readTimeoutMs);
    if (body !== undefined && body.length > 0 && body.length < 16 * 1024) {
      this.socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
    } else {
      this.socket.write(head, 'latin1');
      if (body !== undefined && body.length > 0) this.socket.write(body);
    }
  }

  /** Writes request body bytes of a streamed body. @returns false when the caller should wait for {@link onDrain}. */
  writeBody(chunk: Buffer): boolean {
    if (this.dead || chunk.length === 0) return true;
    if (!this.chunkedBody) return this.socket.write(chunk);
    this.socket.cork();
    this.socket.write(chunkHeader(chunk.length), 'latin1');
    this.socket.write(chunk);
    const ok = this.socket.write('\r\n', 'latin1');
    this.socket.uncork();
    return ok;
  }

  /** The streamed body is complete: the read timeout starts. */
  endBody(): void {
    if (this.dead) return;
    if (this.chunkedBody) this.socket.write(LAST_CHUNK, 'latin1');
    this.requestSent = true;
    if (!this.paused) this.socket.setTimeout(this.settings.readTimeoutMs);
  }

  /** Stops reading the response (the client reads too slowly); the read timeout is suspended meanwhile. */
  pause(): void {
    if (this.paused || this.dead) return;
    this.paused = true;
    this.socket.pause();
    this.socket.setTimeout(0);
  }

  resume(): void {
    if (!this.paused || this.dead) return;
    this.paused = false;
    if (this.requestSent) this.socket.setTimeout(this.settings.readTimeoutMs);
    this.socket.resume();
  }

  /** Returns a connection that was handed over but never used (its exchange ended before it got it). */
  giveBack(): void {
    if (this.pool !== undefined && this.usable) this.pool.release(this);
    else this.abort();
  }

  /** Drops the exchange (the proxy gave up on it): the connection is closed, the sink hears nothing more. */
  abort(): void {
    this.sink = undefined;
    this.kill();
  }

  private kill(): void {
    if (this.dead) return;
    this.dead = true;
    this.onDrain = undefined;
    this.socket.destroy();
    this.pool?.forget(this);
  }

  private fail(err: Error): void {
    const sink = this.sink;
    this.sink = undefined;
    this.kill();
    sink?.onError(err);
  }

  private onTimeout(): void {
    if (this.sink === undefined) {
      // Idle too long in the pool.
      this.kill();
      return;
    }
    this.fail(
      this.head === undefined
        ? new UpstreamError('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error')
        : new UpstreamError('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error'),
    );
  }

  private onSocketEnd(): void {
    if (this.sink !== undefined && this.head !== undefined && this.head.framing.kind === 'close') {
      this.complete(false);
      return;
    }
    this.fail(tagged(new UpstreamError('UND_ERR_SOCKET', 'other side closed'), this.socket));
  }

  private onSocketData(chunk: Buffer): void {
    const sink = this.sink;
    if (sink === undefined) {
      // Bytes with no request out: the endpoint broke HTTP; the connection cannot be trusted.
      this.kill();
      return;
    }
    let buf = chunk;
    if (this.head === undefined) {
      buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
      for (;;) {
        let head: ResponseHead | undefined;
        try {
          head = parseResponseHead(buf, this.method);
        } catch (err) {
          this.fail(tagged(err as ResponseParseError, this.socket));
          return;
        }
        if (head === undefined) {
          this.pending = buf;
          return;
        }
        buf = buf.subarray(head.size);
        if (head.status >= 200) {
          this.head = head;
          this.pending = undefined;
          break;
        }
        if (head.status === 101) {
          this.fail(
            new ResponseParseError('HPE_INVALID_STATUS', '101 to a request that asked for no upgrade'),
          );
          return;
        }
        // 1xx interim (100, 103): dropped, the final head follows.
      }
      const f = this.head.framing;
      if (f.kind === 'length') this.remaining = f.length;
      else if (f.kind === 'chunked') this.decoder = new ChunkedDecoder();
      sink.onHead(this.head);
      if (this.sink !== sink) return;
      if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
        this.complete(buf.length === 0);
        return;
      }
    }
    this.onBody(buf, sink);
  }

  private onBody(buf: Buffer, sink: ResponseSink): void {
    if (buf.length === 0) return;
    const f = (this.head as ResponseHead).framing;
    if (f.kind === 'length') {
      if (buf.length <= this.remaining) {
        this.remaining -= buf.length;
        sink.onData(buf);
        if (this.sink === sink && this.remaining === 0) this.complete(true);
      } else {
        // More bytes than announced: the body is what was announced, the connection is not reused.
        const body = buf.subarray(0, this.remaining);
        this.remaining = 0;
        sink.onData(body);
        if (this.sink === sink) this.complete(false);
      }
    } else if (f.kind === 'chunked') {
      const decoder = this.decoder as ChunkedDecoder;
      let used: number;
      try {
        used = decoder.feed(buf, 0, (d) => {
          if (this.sink === sink) sink.onData(d);
        });
      } catch (err) {
        this.fail(tagged(err as Error, this.socket));
        return;
      }
      if (this.sink === sink && decoder.done) this.complete(used === buf.length);
    } else {
      sink.onData(buf);
    }
  }

  /** The response ended: the connection goes back to the pool when both sides allow it. */
  private complete(clean: boolean): void {
    const sink = this.sink as ResponseSink;
    const reusable = clean && this.requestSent && (this.head as ResponseHead).keepAlive && !this.paused;
    this.sink = undefined;
    this.onDrain = undefined;
    if (reusable && this.pool !== undefined) this.pool.release(this);
    else this.kill();
    sink.onEnd();
  }
}

/** A request waiting for a connection. */
type Waiter = (err: Error | null, conn: UpstreamConnection | undefined) => void;

/** The connections of the native engine to one endpoint. */
export class UpstreamPool {
  readonly host: string;
  readonly port: number;
  readonly settings: UpstreamPoolSettings;
  private readonly idle: UpstreamConnection[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private closed = false;

  /** @param origin - `http://IP:port` or `http://[IPv6]:port`, as compiled tables carry it. */
  constructor(origin: string, settings: UpstreamPoolSettings) {
    const u = new URL(origin);
    this.host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    this.port = Number(u.port || 80);
    this.settings = settings;
  }

  /** Connections open or opening. */
  get size(): number {
    return this.open;
  }

  /**
   * Gets an idle connection, opens one, or waits for one (FIFO).
   * @returns a function that withdraws the request while it still waits.
   */
  acquire(cb: Waiter): () => void {
    while (this.idle.length > 0) {
      const conn = this.idle.pop() as UpstreamConnection;
      if (conn.usable) {
        conn.socket.setTimeout(0);
        cb(null, conn);
        return noop;
      }
    }
    if (this.open < this.settings.maxConnections && !this.closed) {
      this.open++;
      this.dial(true, cb);
      return noop;
    }
    this.waiters.push(cb);
    return () => {
      const i = this.waiters.indexOf(cb);
      if (i >= 0) this.waiters.splice(i, 1);
    };
  }

  /** A new connection outside the pool, closed after its one exchange (the retry after a broken keep-alive connection). */
  fresh(cb: Waiter): void {
    this.dial(false, cb);
  }

  /** A connection whose exchange ended cleanly: to the next waiter, else idle. */
  release(conn: UpstreamConnection): void {
    if (this.closed) {
      conn.abort();
      return;
    }
    const next = this.waiters.shift();
    if (next !== undefined) {
      conn.socket.setTimeout(0);
      next(null, conn);
      return;
    }
    conn.socket.setTimeout(this.settings.keepAliveTimeoutMs);
    this.idle.push(conn);
  }

  /** A pooled connection closed: its slot is free. */
  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
    this.open--;
    const next = this.waiters.length > 0 && !this.closed ? this.waiters.shift() : undefined;
    if (next !== undefined) {
      this.open++;
      this.dial(true, next);
    }
  }

  /** Closes idle connections now and busy ones when their exchange ends; waiters get `UND_ERR_CLOSED` (unsent). */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.abort();
    for (const w of this.waiters.splice(0))
      w(new UpstreamError('UND_ERR_CLOSED', 'endpoint removed'), undefined);
  }

  private dial(pooled: boolean, cb: Waiter): void {
    let conn: UpstreamConnection | undefined;
    // `onread` hands each read straight to the connection, skipping the
    // Readable machinery. All connections read into one buffer (callbacks run
    // one at a time); each read is copied out, since a chunk may still sit
    // in a client socket's write queue after the callback returns.
    const socket = connect({
      host: this.host,
      port: this.port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          conn?.onRead(Buffer.from((buf as Buffer).subarray(0, n)));
          return true;
        },
      },
    });
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      socket.destroy();
      if (pooled) this.slotFreed();
      cb(new UpstreamError('UND_ERR_CONNECT_TIMEOUT', 'Connect Timeout Error'), undefined);
    }, this.settings.connectTimeoutMs);
    const onError = (err: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (pooled) this.slotFreed();
      cb(err, undefined);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('error', onError);
      conn = new UpstreamConnection(socket, pooled ? this : undefined, this.settings);
      // Flowing, so that the end of the stream is reported ('end') although no 'data' listener reads it.
      socket.resume();
      cb(null, conn);
    });
  }

  private slotFreed(): void {
    this.open--;
    const next = this.waiters.length > 0 && !this.closed ? this.waiters.shift() : undefined;
    if (next !== undefined) {
      this.open++;
      this.dial(true, next);
    }
  }
}

function noop(): void {}

/** The buffer every endpoint read lands in first (libuv reads up to 64 KiB at a time). */
const READ_BUFFER = Buffer.alloc(64 * 1024);
