/**
 * Endpoints that misbehave at the WebSocket handshake or below it, for the
 * hostile-client suite: one that records every upgrade and answers (or
 * never answers, or resets the tunnel), and one whose accept queue is full,
 * so a connect to it neither succeeds nor fails (a SYN dropped, as to a pod
 * that vanished without a RST).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { NODE } from './proxy-process.ts';

/** What the WebSocket endpoint does with a handshake. */
export type WsMode = 'answer' | 'silent' | 'reset-after-upgrade' | 'refuse';

export interface WsEndpoint {
  readonly port: number;
  /** Headers of every upgrade request received, most recent last. */
  readonly seen: IncomingMessage['headers'][];
  mode: WsMode;
  /** Extra header lines the 101 carries. */
  extra101: string[];
  close(): Promise<void>;
}

/**
 * A WebSocket endpoint on 127.0.0.1: in `answer` mode it sends a 101 and one
 * text frame `hello`, then echoes nothing; `silent` accepts the handshake
 * and never answers; `reset-after-upgrade` sends the 101 and the frame, then
 * resets the connection 100 ms later; `refuse` answers 403 with a header it
 * names in Connection.
 */
export async function startWsEndpoint(): Promise<WsEndpoint> {
  const sockets = new Set<Socket>();
  const ep: WsEndpoint = {
    port: 0,
    seen: [],
    mode: 'answer',
    extra101: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((_req, res) => res.end('not a websocket\n'));
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    ep.seen.push(req.headers);
    socket.on('error', () => {});
    if (ep.mode === 'silent') return;
    if (ep.mode === 'refuse') {
      socket.end(
        'HTTP/1.1 403 Forbidden\r\nConnection: X-Secret\r\nX-Secret: internal\r\nContent-Length: 7\r\n\r\nrefused',
      );
      return;
    }
    const key = String(req.headers['sec-websocket-key']);
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      [
        'HTTP/1.1 101 Switching Protocols',
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Accept: ${accept}`,
        ...ep.extra101,
        '',
        '',
      ].join('\r\n'),
    );
    socket.write(Buffer.from([0x81, 5, ...Buffer.from('hello')]));
    if (ep.mode === 'reset-after-upgrade') setTimeout(() => socket.resetAndDestroy(), 100);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  (ep as { port: number }).port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return ep;
}

export interface UnacceptingEndpoint {
  readonly port: number;
  close(): void;
}

/**
 * A listener whose accept queue is full: a child process listens with
 * backlog 1 and blocks its event loop (so it never accepts) for at most
 * `blockMs`; two filler connections fill the queue, after which Linux drops
 * further SYNs and a connect hangs until the caller's timeout.
 */
export async function startUnacceptingEndpoint(blockMs = 30_000): Promise<UnacceptingEndpoint> {
  const script = `
    const s = require('node:net').createServer();
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(String(s.address().port) + '\\n', () => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${blockMs});
        process.exit(0);
      });
    });`;
  const child: ChildProcess = spawn(NODE, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`unaccepting endpoint exited with ${code}`)));
  });
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const f = connect(port, '127.0.0.1');
    f.on('error', () => {});
    fillers.push(f);
  }
  await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    close: () => {
      for (const f of fillers) f.destroy();
      child.kill('SIGKILL');
    },
  };
}
