/**
 * Opens many idle keep-alive client connections to a proxy, for the memory
 * step of `make bench`: each connection sends one `GET /` (so the proxy has
 * served it, as a browser's connection would be), reads the answer's head,
 * then stays open and silent. A separate process, so its sockets count
 * against its own file-descriptor limit and it can be pinned to the load core.
 *
 * Two phases: first every TCP connection is opened, then each sends its
 * request (IN_FLIGHT at a time). A proxy closes an idle keep-alive
 * connection after its keep-alive timeout (5 s in Node's http server by
 * default), counted from the answer: doing the connects first keeps them out
 * of that window, so the reading finds the connections open when the proxy
 * answers 10,000 requests within its keep-alive timeout.
 *
 * Usage: node bench/idle-clients.ts HOST PORT COUNT [SOURCE_ADDRESSES]
 *   SOURCE_ADDRESSES: comma-separated 127.0.0.x to spread the connections
 *   over (each has its own ephemeral ports); default 127.0.0.1.
 *
 * Protocol (JSON lines on stdout):
 *   {"event":"ready","wanted":N,"answered":A,"failed":F,"open":O,"ms":T,"errors":[...]}
 *     once every connection has its answer or failed;
 *   a line `count` on stdin → {"event":"count","open":O} (connections still open);
 *   stdin closing → every connection is destroyed and the process exits 0.
 * Bounded: at most COUNT connections, at most IN_FLIGHT opening at a time,
 * and each must answer within ANSWER_TIMEOUT_MS.
 */
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

/** Connections being opened (connect + request + answer) at once. */
const IN_FLIGHT = 256;
/** A connection that has no answer's head by then counts as failed, ms. */
const ANSWER_TIMEOUT_MS = 10_000;
const MAX_COUNT = 60_000;

const [host, portText, countText, sourcesText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const sources = (sourcesText ?? '127.0.0.1').split(',').filter((s) => s !== '');
if (
  host === undefined ||
  !Number.isInteger(port) ||
  port < 1 ||
  port > 65_535 ||
  !Number.isInteger(count) ||
  count < 1 ||
  count > MAX_COUNT ||
  sources.some((s) => !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(s))
) {
  process.stderr.write(`usage: idle-clients.ts HOST PORT COUNT(1..${MAX_COUNT}) [127.0.0.x,...]\n`);
  process.exit(2);
}

const open = new Set<Socket>();
let answered = 0;
let failed = 0;
const errors = new Map<string, number>();
const request = Buffer.from(
  `GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: tether-bench-idle\r\n\r\n`,
);

/** One client connection and where it stands. */
interface Conn {
  readonly socket: Socket;
  /** Settles once it is connected (true) or failed to connect (false). */
  readonly connected: Promise<boolean>;
}

function fail(s: Socket, err: string): void {
  failed++;
  errors.set(err, (errors.get(err) ?? 0) + 1);
  s.destroy();
}

/** Phase 1: opens connection `i`, sends nothing yet. */
function openOne(i: number): Conn {
  const socket = connect({ host, port, localAddress: sources[i % sources.length] });
  socket.setNoDelay(true);
  let isConnected = false;
  const connected = new Promise<boolean>((resolve) => {
    socket.once('connect', () => {
      isConnected = true;
      open.add(socket);
      resolve(true);
    });
    // Before the connect, an error is a failed connection; after it, 'close' follows and requestOne counts it.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (isConnected) return;
      fail(socket, err.code ?? err.message);
      resolve(false);
    });
  });
  socket.on('close', () => open.delete(socket));
  return { socket, connected };
}

/** Phase 2: sends the request on a connected socket; settles on the answer's head. */
function requestOne(c: Conn): Promise<void> {
  const s = c.socket;
  return new Promise((resolve) => {
    let settled = false;
    let head = '';
    const settle = (err?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.off('data', onData);
      if (err === undefined) answered++;
      else fail(s, err);
      resolve();
    };
    const timer = setTimeout(() => settle(`no answer within ${ANSWER_TIMEOUT_MS} ms`), ANSWER_TIMEOUT_MS);
    const onData = (d: Buffer): void => {
      // The head is what proves the proxy served the request; the body is a few bytes after it.
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      if (/^HTTP\/1\.1 2\d\d /.test(head)) settle();
      else settle(`answer ${head.slice(0, head.indexOf('\r\n'))}`);
    };
    s.on('data', onData);
    s.once('close', () => settle('closed before its answer'));
    s.write(request);
  });
}

/** Runs `fn` over `items`, at most {@link IN_FLIGHT} at a time. */
async function inBatches<T>(items: readonly T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, items.length) }, worker));
}

const t0 = performance.now();
const conns: Conn[] = [];
await inBatches(
  Array.from({ length: count }, (_, i) => i),
  (i) => {
    const c = openOne(i);
    conns.push(c);
    return c.connected;
  },
);
const connectMs = Math.round(performance.now() - t0);
const t1 = performance.now();
// IN_FLIGHT requests at a time, as a browser population would send them: all at once would overflow
// the proxies' queues (Tether's 1,024, nginx's 4,096 connections) and measure that instead.
await inBatches(
  conns.filter((c) => open.has(c.socket)),
  requestOne,
);
// Data after the head (the rest of a body) is read and dropped; an idle connection reads nothing more.
for (const c of conns) c.socket.on('data', () => {});
process.stdout.write(
  `${JSON.stringify({
    event: 'ready',
    wanted: count,
    answered,
    failed,
    open: open.size,
    connectMs,
    ms: Math.round(performance.now() - t1),
    errors: [...errors].map(([e, n]) => `${e} ×${n}`).slice(0, 5),
  })}\n`,
);

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim() === 'count')
    process.stdout.write(`${JSON.stringify({ event: 'count', open: open.size })}\n`);
});
input.on('close', () => {
  for (const s of open) s.destroy();
  process.exit(0);
});
