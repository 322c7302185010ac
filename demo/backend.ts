/**
 * A tiny demo backend for `make demo`: one endpoint of the pool.
 *
 *     node demo/backend.ts --id shop-a [--port 0]
 *
 * Every request except `/healthz` is answered with JSON naming the endpoint
 * and a per-client counter, so the demo can see which endpoint served a
 * client and how much session state that endpoint holds for it:
 *
 *     {"endpoint":"shop-a","client":"client-3","count":7}
 *
 * The client is the `X-Client-Id` header, else the first `X-Forwarded-For`
 * entry (the proxy appends the real peer), else the socket's peer address.
 *
 * It prints one line `{"endpoint":"shop-a","port":40123}` on stdout once
 * listening (port 0 picks a free one), and exits when its stdin closes, so
 * it dies with the demo even if the demo itself is killed.
 */
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { id: { type: 'string' }, port: { type: 'string', default: '0' } },
  strict: true,
});
const endpoint = values.id;
if (endpoint === undefined || endpoint === '') {
  process.stderr.write('usage: node demo/backend.ts --id NAME [--port N]\n');
  process.exit(2);
}

/** Requests seen per client: the "session state" a failover loses without a shared store. */
const counts = new Map<string, number>();

const server = createServer({ keepAlive: true }, (req, res) => {
  if ((req.url ?? '/').split('?')[0] === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' }).end('ok\n');
    return;
  }
  const client = clientOf(
    req.headers['x-client-id'],
    req.headers['x-forwarded-for'],
    req.socket.remoteAddress,
  );
  const count = (counts.get(client) ?? 0) + 1;
  counts.set(client, count);
  const body = `${JSON.stringify({ endpoint, client, count })}\n`;
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});

function clientOf(
  id: string | string[] | undefined,
  xff: string | string[] | undefined,
  peer: string | undefined,
): string {
  if (typeof id === 'string' && id !== '') return id;
  const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim();
  return first !== undefined && first !== '' ? first : (peer ?? 'unknown');
}

server.listen(Number(values.port), '127.0.0.1', () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : Number(values.port);
  process.stdout.write(`${JSON.stringify({ endpoint, port })}\n`);
});
server.on('error', (err) => {
  process.stderr.write(`backend ${endpoint}: ${err.message}\n`);
  process.exit(1);
});

// The demo holds our stdin open; when it goes away (exit, crash, SIGKILL), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
