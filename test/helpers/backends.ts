/**
 * Real HTTP/WebSocket backends on loopback for integration tests: each
 * answers with its endpoint id, the request's path and headers it saw.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface Backend {
  readonly id: string;
  readonly port: number;
  readonly server: Server;
  /** Requests seen, most recent last. */
  readonly seen: Array<{ method: string; url: string; headers: IncomingMessage['headers']; body: string }>;
  /** Stops listening and cuts every connection (a crashed pod). */
  kill(): Promise<void>;
}

export type BackendBehaviour = (req: IncomingMessage, res: ServerResponse, id: string) => boolean;

/**
 * Starts a backend on `host` (default 127.0.0.1), port 0 unless given.
 *
 * Routes: `/healthz` → 200; `/slow?ms=N` → answers after N ms; `/reset` →
 * destroys the socket; anything else → JSON `{ endpoint, path, headers, body }`.
 * WebSocket upgrades are accepted and get one text frame: the endpoint id.
 */
export async function startBackend(
  id: string,
  port = 0,
  behaviour?: BackendBehaviour,
  host = '127.0.0.1',
): Promise<Backend> {
  const seen: Backend['seen'] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (behaviour?.(req, res, id)) return;
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/healthz') return void res.end('ok');
      if (url.pathname === '/reset') return void req.socket.destroy();
      const answer = (): void => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ endpoint: id, path: req.url, headers: req.headers, body }));
      };
      if (url.pathname === '/slow') setTimeout(answer, Number(url.searchParams.get('ms') ?? 1000));
      else answer();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string') return void socket.destroy();
    // RFC 6455 §4.2.2: the accept value is SHA-1 of the key and a fixed GUID.
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    const payload = Buffer.from(id);
    // One unmasked text frame (FIN + opcode 1), payload < 126 bytes.
    socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      // A close frame (opcode 8) is answered with one, then the TCP close (RFC 6455 §5.5.1).
      if (((d[0] ?? 0) & 0x0f) === 8) socket.end(Buffer.from([0x88, 0x00]));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr !== null ? addr.port : port;
  return {
    id,
    port: bound,
    server,
    seen,
    kill: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts `n` backends named `${prefix}-a`, `-b`, … */
export async function startBackends(
  n: number,
  prefix = 'ep',
  behaviour?: BackendBehaviour,
): Promise<Backend[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      startBackend(`${prefix}-${String.fromCharCode(97 + i)}`, 0, behaviour),
    ),
  );
}
