/**
 * A client that speaks HTTP/1.x as bytes on a raw `node:net` socket, for the
 * hostile-client tests: it trickles, pipelines and sends odd framing that
 * HTTP libraries refuse to send, and it reports what came back byte for byte
 * and how the connection ended (FIN, reset, or still open).
 */
import { connect, type Socket } from 'node:net';

/** One HTTP/1.x response parsed from the bytes a connection received. */
export interface RawResponse {
  readonly version: string;
  readonly status: number;
  /** Lower-case names; every value of a repeated header, in order. */
  readonly headers: Readonly<Record<string, string[]>>;
  readonly body: Buffer;
}

/** The responses in `buf`, in order, and the bytes after the last complete one (a tunnel, or a partial response). */
export function parseResponses(buf: Buffer, closed = false): { responses: RawResponse[]; rest: Buffer } {
  const responses: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^(HTTP\/\d\.\d) (\d{3})/.exec(lines[0] ?? '');
    if (m === null) break;
    const headers: Record<string, string[]> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const values = headers[name] ?? [];
      values.push(line.slice(colon + 1).trim());
      headers[name] = values;
    }
    const status = Number(m[2]);
    let bodyStart = end + 4;
    let body: Buffer;
    if (status === 101) {
      responses.push({ version: m[1] as string, status, headers, body: Buffer.alloc(0) });
      return { responses, rest: buf.subarray(bodyStart) };
    }
    if (status < 200 || status === 204 || status === 304) body = Buffer.alloc(0);
    else if (headers['transfer-encoding']?.some((v) => /chunked/i.test(v))) {
      const parts: Buffer[] = [];
      let p = bodyStart;
      let done = false;
      for (;;) {
        const eol = buf.indexOf('\r\n', p);
        if (eol < 0) break;
        const size = Number.parseInt(buf.subarray(p, eol).toString('latin1'), 16);
        if (size === 0) {
          const trailerEnd = buf.indexOf('\r\n\r\n', eol);
          if (trailerEnd < 0) break;
          p = trailerEnd + 4;
          done = true;
          break;
        }
        if (buf.length < eol + 2 + size + 2) break;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        p = eol + 2 + size + 2;
      }
      if (!done) break;
      body = Buffer.concat(parts);
      bodyStart = p;
      responses.push({ version: m[1] as string, status, headers, body });
      at = bodyStart;
      continue;
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length'][0]);
      if (buf.length < bodyStart + n) break;
      body = buf.subarray(bodyStart, bodyStart + n);
      bodyStart += n;
    } else {
      // Close-delimited (HTTP/1.0 style): complete only once the connection ended.
      if (!closed) break;
      body = buf.subarray(bodyStart);
      bodyStart = buf.length;
    }
    responses.push({ version: m[1] as string, status, headers, body });
    at = bodyStart;
  }
  return { responses, rest: buf.subarray(at) };
}

/** How a connection ended, as far as the client saw. */
export type Ending = 'open' | 'fin' | 'reset';

/** A raw client connection. Never throws on socket errors: they show in {@link RawConnection.ending}. */
export class RawConnection {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  ending: Ending = 'open';
  /** The socket error's code, when it ended with one. */
  errorCode: string | undefined;
  private readonly waiters = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.wake();
    });
    socket.on('end', () => {
      if (this.ending === 'open') this.ending = 'fin';
      this.wake();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.errorCode = err.code;
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') this.ending = 'reset';
      this.wake();
    });
    socket.on('close', () => {
      if (this.ending === 'open') this.ending = 'fin';
      this.wake();
    });
  }

  /** Connects to 127.0.0.1:`port`. */
  static open(port: number, host = '127.0.0.1'): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host, allowHalfOpen: true });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConnection(s));
      });
      s.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** Sends `data` `chunk` bytes at a time, `delayMs` apart. */
  async trickle(data: string | Buffer, chunk = 1, delayMs = 2): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    for (let i = 0; i < b.length; i += chunk) {
      this.write(b.subarray(i, i + chunk));
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }

  /** The complete responses received so far. */
  responses(): RawResponse[] {
    return parseResponses(this.received, this.ending !== 'open').responses;
  }

  /** Waits until `pred` holds (checked on every event), for at most `ms`. @returns whether it held. */
  async waitFor(pred: (c: RawConnection) => boolean, ms: number): Promise<boolean> {
    if (pred(this)) return true;
    return new Promise((resolve) => {
      const check = (): void => {
        if (!pred(this)) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(pred(this));
      }, ms);
      this.waiters.add(check);
    });
  }

  /** Waits for `n` complete responses, for at most `ms`. */
  waitResponses(n: number, ms = 5_000): Promise<boolean> {
    return this.waitFor((c) => c.responses().length >= n, ms);
  }

  /** Waits for the connection to end (FIN or reset), for at most `ms`. */
  waitEnd(ms = 5_000): Promise<boolean> {
    return this.waitFor((c) => c.ending !== 'open', ms);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

/**
 * Sends `payload` on a fresh connection, half-closes nothing, and collects
 * what comes back until the connection ends or `ms` pass.
 */
export async function rawExchange(
  port: number,
  payload: string | Buffer,
  ms = 5_000,
): Promise<{ text: string; responses: RawResponse[]; ending: Ending; conn: RawConnection }> {
  const c = await RawConnection.open(port);
  c.write(payload);
  await c.waitEnd(ms);
  const out = { text: c.received.toString('latin1'), responses: c.responses(), ending: c.ending, conn: c };
  c.destroy();
  return out;
}

/** A WebSocket handshake request's bytes (RFC 6455 §4.1), with extra header lines. */
export function upgradeRequest(path = '/ws', extra: string[] = [], method = 'GET'): string {
  return [
    `${method} ${path} HTTP/1.1`,
    'Host: shop.example',
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...extra,
    '',
    '',
  ].join('\r\n');
}
