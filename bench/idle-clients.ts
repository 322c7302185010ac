/**
 * Opens many idle keep-alive client connections to a proxy, for the memory
 * step of `make bench`: each connection sends one `GET /` (so the proxy has
 * served it, as a browser's connection would be), reads the answer's head,
 * then stays open and silent. A separate process, so its sockets count
 * against its own file-descriptor limit and it can be pinned to the load core.
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
const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: tether-bench-idle\r\n\r\n`);

/** Opens connection `i`; resolves once it has its answer's head or failed. */
function openOne(i: number): Promise<void> {
  return new Promise((resolve) => {
    let settled = false;
    let head = '';
    const s = connect({ host, port, localAddress: sources[i % sources.length] });
    const settle = (err?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) answered++;
      else {
        failed++;
        errors.set(err, (errors.get(err) ?? 0) + 1);
        s.destroy();
      }
      resolve();
    };
    const timer = setTimeout(() => settle(`no answer within ${ANSWER_TIMEOUT_MS} ms`), ANSWER_TIMEOUT_MS);
    s.setNoDelay(true);
    s.on('connect', () => {
      open.add(s);
      s.write(request);
    });
    s.on('data', (d: Buffer) => {
      if (settled) return;
      // The head is what proves the proxy served the request; the body is a few bytes after it.
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      if (/^HTTP\/1\.1 2\d\d /.test(head)) settle();
      else settle(`answer ${head.slice(0, head.indexOf('\r\n'))}`);
    });
    s.on('error', (err: NodeJS.ErrnoException) => settle(err.code ?? err.message));
    s.on('close', () => {
      open.delete(s);
      settle('closed before its answer');
    });
  });
}

const t0 = performance.now();
let next = 0;
async function worker(): Promise<void> {
  while (next < count) await openOne(next++);
}
await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, worker));
process.stdout.write(
  `${JSON.stringify({
    event: 'ready',
    wanted: count,
    answered,
    failed,
    open: open.size,
    ms: Math.round(performance.now() - t0),
    errors: [...errors].map(([e, n]) => `${e} ×${n}`).slice(0, 5),
  })}\n`,
);

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  if (line.trim() === 'count') process.stdout.write(`${JSON.stringify({ event: 'count', open: open.size })}\n`);
});
input.on('close', () => {
  for (const s of open) s.destroy();
  process.exit(0);
});
