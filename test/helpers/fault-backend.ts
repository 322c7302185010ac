/**
 * A raw `node:net` HTTP/1.1 backend for the fault-injection suite: it parses
 * just enough of each request (head, Content-Length body) to decide, per
 * request, to answer, reset, stall, close without answering, or write bytes
 * that are no HTTP at all — the faults an HTTP server library would hide.
 *
 * Also here: a "blackhole" endpoint whose TCP connects stay pending (a full
 * accept queue), and an HTTP backend in its own process, to SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { NODE } from './proxy-process.ts';

/** One request as the fault backend read it. */
export interface RawRequest {
  readonly method: string;
  readonly url: string;
  /** Header names lower-cased; repeated headers keep every value. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
  /** 0 for the first request on its connection, 1 for the next, … */
  readonly indexOnConnection: number;
  /** 0-based number of the connection, in accept order. */
  readonly connection: number;
}

/** What the backend does with a request. */
export type FaultAction =
  /** A normal keep-alive answer; `body` is JSON-encoded when it is not a string. */
  | { kind: 'respond'; status?: number; headers?: Record<string, string>; body?: unknown }
  /** TCP RST (SO_LINGER 0): the request was read, nothing answered. */
  | { kind: 'reset' }
  /** FIN without an answer: what a keep-alive timeout racing the request looks like. */
  | { kind: 'close' }
  /** Read the request, never answer (until the backend is stopped). */
  | { kind: 'stall' }
  /** Write these bytes, then close the connection when `close` is set. */
  | { kind: 'raw'; bytes: string | Buffer; close?: boolean };

export type FaultBehaviour = (req: RawRequest) => FaultAction;

export interface FaultBackend {
  readonly port: number;
  readonly server: Server;
  /** Every request read, oldest first. */
  readonly requests: RawRequest[];
  /** Connections accepted so far. */
  connections(): number;
  /** Replaces the behaviour for requests from now on. */
  setBehaviour(b: FaultBehaviour): void;
  /** Stops listening and destroys every connection. */
  stop(): Promise<void>;
}

/** The default behaviour: 200 with `{ endpoint, path }`. */
export function answerWith(id: string): FaultBehaviour {
  return (req) => ({ kind: 'respond', body: { endpoint: id, path: req.url } });
}

/**
 * Starts a fault backend on 127.0.0.1 (port 0 unless given).
 *
 * @param behaviour - decides each request's fate; {@link answerWith} by default.
 */
export async function startFaultBackend(
  id: string,
  behaviour: FaultBehaviour = answerWith(id),
  port = 0,
): Promise<FaultBackend> {
  let decide = behaviour;
  const requests: RawRequest[] = [];
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createServer((socket) => {
    const connection = accepted++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let index = 0;
    let stalled = false;
    socket.on('data', (chunk: Buffer) => {
      if (stalled) return;
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const [method = '', url = ''] = (lines[0] ?? '').split(' ');
        const headers = lines
          .slice(1)
          .map(
            (l) =>
              [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as const,
          );
        const length = Number(headers.find(([k]) => k === 'content-length')?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length);
        buf = buf.subarray(end + 4 + length);
        const req: RawRequest = { method, url, headers, body, indexOnConnection: index++, connection };
        requests.push(req);
        const action = decide(req);
        switch (action.kind) {
          case 'respond': {
            const text = typeof action.body === 'string' ? action.body : JSON.stringify(action.body ?? {});
            const head = [
              `HTTP/1.1 ${action.status ?? 200} X`,
              `content-length: ${Buffer.byteLength(text)}`,
              ...(typeof action.body === 'string' ? [] : ['content-type: application/json']),
              ...Object.entries(action.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
            ];
            socket.write(`${head.join('\r\n')}\r\n\r\n${text}`);
            break;
          }
          case 'reset':
            socket.resetAndDestroy();
            return;
          case 'close':
            socket.end();
            return;
          case 'stall':
            stalled = true;
            return;
          case 'raw':
            socket.write(action.bytes);
            if (action.close) {
              socket.end();
              return;
            }
            break;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : port,
    server,
    requests,
    connections: () => accepted,
    setBehaviour: (b) => {
      decide = b;
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A child process; `kill` ends it for good. */
export interface ChildEndpoint {
  readonly port: number;
  readonly child: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

async function spawnPortPrinter(script: string, args: string[]): Promise<ChildEndpoint> {
  const child = spawn(NODE, ['-e', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`endpoint process exited with ${code}`)));
    child.stdout?.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    port,
    child,
    kill: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

/**
 * An endpoint whose connects hang: a process that listens with a backlog
 * of 1 and then blocks its event loop, so the kernel completes at most two
 * handshakes and drops every later SYN. Fill it with {@link fillBacklog}
 * first; after that a connect stays pending until the client's connect
 * timeout. It exits on `kill`, or by itself after 120 s.
 */
export async function startBlackhole(): Promise<ChildEndpoint> {
  const script = `
    const net = require('node:net');
    const s = net.createServer();
    s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      // Writes to a pipe are synchronous on Linux: the port is out before the loop blocks.
      process.stdout.write(String(s.address().port) + '\\n');
      // Bounded: a test runner that dies without killing us leaves no process behind for long.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
      process.exit(0);
    });`;
  const hole = await spawnPortPrinter(script, []);
  await new Promise((r) => setTimeout(r, 50));
  return hole;
}

/** Opens connections to `port` until the accept queue is full (the next connect hangs). */
export async function fillBacklog(port: number, count = 3): Promise<Socket[]> {
  const { connect } = await import('node:net');
  const out: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    out.push(s);
  }
  await new Promise((r) => setTimeout(r, 150));
  return out;
}

/**
 * A plain keep-alive HTTP backend in its own process (so it can be
 * SIGKILLed like a pod): answers `{ endpoint, path }` to everything,
 * after `delayMs` (so requests are in flight when it is killed).
 * It exits when our end of its stdin closes.
 */
export async function startBackendProcess(id: string, delayMs = 0): Promise<ChildEndpoint> {
  const script = `
    const http = require('node:http');
    const id = process.argv[1];
    const delayMs = Number(process.argv[2]);
    const s = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const answer = () => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ endpoint: id, path: req.url }));
        };
        if (delayMs > 0) setTimeout(answer, delayMs);
        else answer();
      });
    });
    s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));
    process.stdin.on('close', () => process.exit(0));
    process.stdin.resume();`;
  return spawnPortPrinter(script, [id, String(delayMs)]);
}

/**
 * Writes `bytes` on a fresh TCP connection to 127.0.0.1:`port` and returns
 * everything read until the peer closes or `idleMs` passes without a byte.
 *
 * @param steps - more writes after the first, each after its delay (ms).
 */
export async function rawExchange(
  port: number,
  bytes: string | Buffer,
  opts: { idleMs?: number; steps?: Array<{ afterMs: number; bytes: string | Buffer }> } = {},
): Promise<string> {
  const { connect } = await import('node:net');
  const idleMs = opts.idleMs ?? 1_000;
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(got).toString('latin1'));
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(done, idleMs);
    };
    s.on('error', done);
    s.on('close', done);
    s.on('data', (d: Buffer) => {
      got.push(d);
      arm();
    });
    s.on('connect', () => {
      s.write(bytes);
      arm();
      let at = 0;
      for (const step of opts.steps ?? []) {
        at += step.afterMs;
        setTimeout(() => {
          if (!s.destroyed) s.write(step.bytes);
          arm();
        }, at);
      }
    });
  });
}
