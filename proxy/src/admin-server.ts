/**
 * The admin API (its own listener, never the data plane's):
 *
 * | route                     | answer                                                        |
 * |---------------------------|---------------------------------------------------------------|
 * | `PUT /v1/routing-table`   | bearer token; 200 swapped or unchanged, 400 invalid (the zod  |
 * |                           | error, or a table that cannot be applied: the served one      |
 * |                           | stays), 401 no/bad token, 409 stale revision or other pool,   |
 * |                           | 413 over 8 MiB, 415 not JSON                                  |
 * | `GET /v1/routing-table`   | the table served (404 before the first)                       |
 * | `GET /healthz`            | 200 while the process runs                                    |
 * | `GET /readyz`             | 200 once a table is loaded, 503 before and while shutting down|
 * |                           | (`--workers`: and every worker serves that table's revision)  |
 * | `GET /metrics`            | Prometheus text format (`--workers`: aggregated over workers) |
 * | `GET /v1/workers`         | `--workers` only: each worker's own report (slot, pid,        |
 * |                           | revision, requests answered, connections open)                |
 *
 * With `--workers` a PUT answers 503 when a worker did not take the table
 * (it exited or did not answer in time): then no worker took it.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { z } from 'zod';
import { type RoutingTable, routingTableSchema } from './api/routing-table.ts';
import type { ProxyMetrics } from './metrics.ts';
import { proxySupportProblems } from './support.ts';
import type { OfferResult, TableSource, TableStore } from './table-store.ts';

/** Largest routing table accepted, bytes. */
export const MAX_TABLE_BYTES = 8 * 1024 * 1024;

export interface AdminServerOptions {
  store: TableStore;
  metrics: ProxyMetrics;
  /** The bearer token PUT needs; undefined: PUT is refused (403). Read per request so a rotated file applies. */
  token: () => string | undefined;
  ready: () => boolean;
  log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /**
   * `--workers` (the primary): where a validated table goes instead of
   * `store.offer`; resolves once every worker took it, or none did.
   */
  offer?: (table: RoutingTable, source: TableSource) => Promise<OfferResult>;
  /** `--workers`: readiness with its reason, instead of `ready` (`text` is the body). */
  readiness?: () => Promise<{ ready: boolean; text: string }>;
  /** `--workers`: the exposition text, instead of `metrics.registry`'s. */
  metricsText?: () => Promise<string>;
  /** `--workers`: the body of `GET /v1/workers`; without it the route is 404. */
  workers?: () => Promise<unknown>;
}

export function createAdminServer(o: AdminServerOptions): Server {
  return createServer((req, res) => {
    handle(o, req, res).catch((err: unknown) => {
      o.log('error', 'admin request failed', { error: String(err) });
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
}

async function handle(o: AdminServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz') return void text(res, 200, 'ok\n');
  if (path === '/readyz') {
    if (o.readiness === undefined)
      return void (o.ready() ? text(res, 200, 'ready\n') : text(res, 503, 'not ready\n'));
    const r = await o.readiness();
    return void text(res, r.ready ? 200 : 503, r.text);
  }
  if (path === '/v1/workers' && o.workers !== undefined && req.method === 'GET')
    return void send(res, 200, await o.workers());
  if (path === '/metrics' && req.method === 'GET') {
    const body = await (o.metricsText?.() ?? o.metrics.registry.metrics());
    res.writeHead(200, { 'content-type': o.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (path !== '/v1/routing-table') return void send(res, 404, { error: 'not found' });
  if (req.method === 'GET') {
    const t = o.store.current;
    return void (t === undefined
      ? send(res, 404, { error: 'no routing table loaded' })
      : send(res, 200, t.source));
  }
  if (req.method !== 'PUT') {
    res.setHeader('allow', 'GET, PUT');
    return void send(res, 405, { error: 'method not allowed' });
  }
  const token = o.token();
  if (token === undefined)
    return void send(res, 403, { error: 'admin token not configured (--admin-token-file)' });
  if (!bearerMatches(req.headers.authorization, token)) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: 'unauthorized' });
    res.setHeader('www-authenticate', 'Bearer realm="tether-proxy"');
    return void send(res, 401, { error: 'missing or wrong bearer token' });
  }
  const type = req.headers['content-type'];
  if (type !== undefined && !/^application\/json\b/i.test(type))
    return void send(res, 415, { error: 'send application/json' });
  const raw = await readBody(req, MAX_TABLE_BYTES);
  if (raw === undefined) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: 'invalid' });
    return void send(res, 413, { error: `table over ${MAX_TABLE_BYTES} bytes` });
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: 'invalid' });
    return void send(res, 400, { error: `not JSON: ${(err as Error).message}` });
  }
  const parsed = routingTableSchema.safeParse(json);
  if (!parsed.success) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: 'invalid' });
    return void send(res, 400, { error: 'invalid routing table', details: z.prettifyError(parsed.error) });
  }
  const unsupported = proxySupportProblems(parsed.data);
  if (unsupported.length > 0) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: 'invalid' });
    return void send(res, 400, {
      error: 'routing table not supported by this proxy',
      details: unsupported.join('; '),
    });
  }
  const result =
    o.offer === undefined ? o.store.offer(parsed.data, 'admin') : await o.offer(parsed.data, 'admin');
  if (!result.accepted) {
    o.metrics.tableRejections.inc({ source: 'admin', reason: result.reason });
    const status = result.reason === 'invalid' ? 400 : result.reason === 'unavailable' ? 503 : 409;
    return void send(res, status, {
      error: result.message,
      revision: o.store.current?.revision,
    });
  }
  send(res, 200, { pool: result.table.pool, revision: result.table.revision, changed: result.changed });
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !/^Bearer /i.test(header)) return false;
  const got = Buffer.from(header.slice(7).trim());
  const want = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Reads a body up to `limit` bytes; undefined when it is larger. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.resume();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
