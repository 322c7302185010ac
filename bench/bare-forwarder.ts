/**
 * The floor under Tether's numbers: a forwarder with no affinity, no cookie,
 * no metrics and no health, only what Tether's data plane is built on
 * (`node:http` in, one undici keep-alive Pool per endpoint out, round robin).
 * Tether/bare-forwarder is what affinity, signing and bookkeeping cost;
 * bare-forwarder/HAProxy is the most this runtime allows.
 *
 * Usage: node bench/bare-forwarder.ts PORT BACKEND_PORT...
 * Prints `listening PORT` once it accepts connections.
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, ...backendPorts] = process.argv.slice(2).map(Number);
if (
  port === undefined ||
  backendPorts.length === 0 ||
  [port, ...backendPorts].some((p) => !(p > 0 && p < 65536))
) {
  process.stderr.write('usage: bare-forwarder.ts PORT BACKEND_PORT...\n');
  process.exit(2);
}
// The same Pool settings as tether-proxy's endpoints (proxy/src/upstreams.ts).
const pools = backendPorts.map(
  (p) => new Pool(`http://127.0.0.1:${p}`, { connections: 128, pipelining: 1, keepAliveTimeout: 4_000 }),
);
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding'];
const HOP_BY_HOP_SET = new Set([...HOP_BY_HOP, 'proxy-connection', 'te', 'trailer', 'upgrade']);

/** The client's headers less hop-by-hop ones (undici refuses to send those). */
function forwardable(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP_SET.has((raw[i] as string).toLowerCase()))
      out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}
let next = 0;

createServer({ keepAlive: true }, (req, res) => {
  const pool = pools[next++ % pools.length] as Pool;
  pool.dispatch(
    { path: req.url ?? '/', method: req.method as 'GET', headers: forwardable(req.rawHeaders), body: null },
    {
      onRequestStart() {},
      onResponseStart(_controller, status, headers) {
        for (const h of HOP_BY_HOP) delete headers[h];
        res.writeHead(status, headers as Record<string, string>);
      },
      onResponseData(_controller, chunk) {
        res.write(chunk);
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError(_controller, err) {
        process.stderr.write(`upstream error: ${err.message}\n`);
        if (!res.headersSent) res.writeHead(502);
        res.end();
      },
    },
  );
}).listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
