/**
 * `tether-proxy`: the sticky proxy, standalone from a pool file or fed
 * routing tables by the operator over its admin API.
 *
 *     tether-proxy --config pool.yaml [--listen 127.0.0.1:8080]
 *                  [--admin-listen 127.0.0.1:9901] [--admin-token-file F]
 *                  [--cookie-keys-file F] [--connect-timeout 5s]
 *                  [--read-timeout 60s] [--shutdown-timeout 30s]
 *                  [--tunnel-timeout 1h] [--client-header-timeout 60s]
 *                  [--shutdown-idle-grace 1s] [--session-store DIR]
 *                  [--session-store-timeout 50ms] [--workers N|auto]
 *
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for bad flags or
 * an unusable first config, 1 for anything else (with `--workers`: also when
 * a worker crashed or had to be killed during the stop).
 */
import cluster from 'node:cluster';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createAdminServer } from './admin-server.ts';
import { parseDuration } from './api/duration.ts';
import { ephemeralKey, loadCookieKeys } from './cookie-keys.ts';
import { buildDataPlane, flagsSchema, readSessionStoreFlag, reportSwap } from './data-plane.ts';
import { watchFile } from './file-watch.ts';
import { makeLogger } from './json-log.ts';
import { PoolFileSource } from './pool-file.ts';
import { runPrimary } from './workers/primary.ts';
import { runWorker } from './workers/worker.ts';

const USAGE = `usage: tether-proxy [--config pool.yaml] [--listen HOST:PORT] [--admin-listen HOST:PORT]
                    [--admin-token-file FILE] [--cookie-keys-file FILE]
                    [--connect-timeout DURATION] [--read-timeout DURATION] [--shutdown-timeout DURATION]
                    [--tunnel-timeout DURATION] [--client-header-timeout DURATION]
                    [--shutdown-idle-grace DURATION]
                    [--connections-per-endpoint N] [--queue-size N] [--queue-timeout DURATION]
                    [--client-body-timeout DURATION] [--request-buffer-size SIZE]
                    [--send-timeout DURATION] [--response-buffer-size SIZE]
                    [--session-store DIR] [--session-store-timeout DURATION]
                    [--workers N|auto] [--worker-sync-timeout DURATION]
                    [--log-level debug|info|warn|error] [--engine native|node]

  --config F                 StickyBackendPool YAML with spec.backend.endpoints; reloaded when it
                             changes (and on SIGHUP). Without it, the proxy waits for a routing
                             table on PUT /v1/routing-table.
  --listen                   data plane address (default 127.0.0.1:8080; [::1]:8080 for IPv6)
  --admin-listen             admin API and /metrics (default 127.0.0.1:9901)
  --admin-token-file F       bearer token for PUT /v1/routing-table (re-read on every PUT)
  --cookie-keys-file F       one base64 key (32+ bytes) per line; the first signs, all verify.
                             Without it: a random key, and cookies die with the process.
  --connect-timeout          TCP connect timeout to endpoints, WebSocket handshakes too (default 5s)
  --read-timeout             wait for response headers / between body chunks, and for the
                             answer to a WebSocket handshake (default 60s)
  --tunnel-timeout           an open WebSocket with no byte either way is closed (default 1h; 0s: never)
  --client-header-timeout    time a client has to send a request's headers; 408 after (default 60s)
  --shutdown-timeout         time in-flight requests get on SIGTERM (default 30s)
  --shutdown-idle-grace      on SIGTERM, idle keep-alive connections stay open this long for
                             requests already on their way, then close cleanly (default 1s)
  --connections-per-endpoint keep-alive connections per endpoint at most (default 128)
  --queue-size               requests that may wait for a busy endpoint's connection (default 1024);
                             more get 503 at once (HAProxy maxqueue)
  --queue-timeout            longest wait for a connection, then 503 + Retry-After (default 10s;
                             HAProxy timeout queue)
  --client-body-timeout      time a whole request body may take, then 408 (default 60s; HAProxy
                             timeout http-request, nginx client_body_timeout)
  --request-buffer-size      bodies up to this size are read whole before an endpoint is chosen, so
                             a slow upload holds no endpoint connection (default 64k; nginx
                             proxy_request_buffering / client_body_buffer_size). SIZE: 512, 64k, 1m
  --send-timeout             a client that reads nothing this long is cut off (default 60s; nginx
                             send_timeout)
  --response-buffer-size     response bytes kept in memory for a slow reader before the endpoint is
                             paused (default 256k; nginx proxy_buffers)
  --session-store DIR        the pool's session store: a directory with the operator's Secret
                             (sentinels, masterName, password, ...: one file per key). Needed for
                             affinity.type Learn and sessionStore.persistPins; reloaded when it changes.
                             An empty sentinels (not published yet): serve, connect when it fills in.
  --session-store-timeout    longest wait for the session store on the request path, per call; then
                             the request is pinned by consistent hashing (default 50ms; 1ms..1s)
  --workers N|auto           worker processes sharing the listening port (default 1: one process;
                             auto: one per core; nginx worker_processes). Each worker keeps its own
                             passive health; tables, cookie keys and /metrics are shared
  --worker-sync-timeout      with --workers: how long every worker has to take a table or boot,
                             else the table is refused everywhere (default 10s)
  --engine                   HTTP data path: native (Tether's own HTTP/1.1 engine on node:net, strict
                             parsing; default) or node (node:http + undici, kept for comparison and
                             as a fallback; see the README's "The native engine")
`;

function die(message: string): never {
  process.stderr.write(`tether-proxy: ${message}\n`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<void> {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) die(`needs Node.js 24 or newer, this is ${process.version} (use node_modules/.bin/node)`);
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        config: { type: 'string' },
        listen: { type: 'string' },
        'admin-listen': { type: 'string' },
        'admin-token-file': { type: 'string' },
        'cookie-keys-file': { type: 'string' },
        'connect-timeout': { type: 'string' },
        'read-timeout': { type: 'string' },
        'shutdown-timeout': { type: 'string' },
        'tunnel-timeout': { type: 'string' },
        'client-header-timeout': { type: 'string' },
        'shutdown-idle-grace': { type: 'string' },
        'connections-per-endpoint': { type: 'string' },
        'queue-size': { type: 'string' },
        'queue-timeout': { type: 'string' },
        'client-body-timeout': { type: 'string' },
        'request-buffer-size': { type: 'string' },
        'send-timeout': { type: 'string' },
        'response-buffer-size': { type: 'string' },
        'session-store': { type: 'string' },
        'session-store-timeout': { type: 'string' },
        'log-level': { type: 'string' },
        workers: { type: 'string' },
        'worker-sync-timeout': { type: 'string' },
        engine: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    die(`${(err as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const parsedFlags = flagsSchema.safeParse(values);
  if (!parsedFlags.success) die(`bad flags:\n${z.prettifyError(parsedFlags.error)}\n${USAGE}`);
  const flags = parsedFlags.data;
  const log = makeLogger(flags['log-level']);
  // A worker of --workers runs this same command line (node:cluster forks it).
  if (cluster.isWorker) return runWorker({ flags, log, build: buildDataPlane });

  let cookieKeys: KeyObject[];
  const keysFile = flags['cookie-keys-file'];
  if (keysFile !== undefined) {
    try {
      cookieKeys = await loadCookieKeys(keysFile);
    } catch (err) {
      die(`--cookie-keys-file: ${(err as Error).message}`);
    }
  } else {
    cookieKeys = [ephemeralKey()];
    log(
      'warn',
      'no --cookie-keys-file: signing cookies with a random key; they stop working when this process exits and differ between replicas',
    );
  }

  const tokenFile = flags['admin-token-file'];
  const readToken = (): string | undefined => {
    if (tokenFile === undefined) return undefined;
    try {
      const t = readFileSync(tokenFile, 'utf8').trim();
      return t === '' ? undefined : t;
    } catch {
      return undefined;
    }
  };
  if (tokenFile !== undefined && readToken() === undefined)
    die(`--admin-token-file ${tokenFile}: unreadable or empty`);
  if (flags.config === undefined && tokenFile === undefined) {
    log('warn', 'neither --config nor --admin-token-file: no routing table can ever arrive');
  }

  // Checked here, before any worker is forked: a bad Secret is a bad flag (exit 2), not a crash loop.
  try {
    readSessionStoreFlag(flags['session-store']);
  } catch (err) {
    die((err as Error).message);
  }

  if (flags.workers > 1) {
    return runPrimary({
      flags,
      log,
      cookieKeys,
      loadKeys: keysFile === undefined ? undefined : () => loadCookieKeys(keysFile),
      readToken,
      die,
      reportSwap: (table, source, metrics) => reportSwap(log, table, source, metrics),
    });
  }

  const { metrics, upstreams, store, proxy, pins, reloadSessionStore } = buildDataPlane(
    flags,
    log,
    () => cookieKeys,
    (table, source, m) => reportSwap(log, table, source, m),
  );
  let shuttingDown = false;
  const admin = createAdminServer({
    store,
    metrics,
    token: readToken,
    ready: () => store.current !== undefined && !shuttingDown,
    log,
  });

  // The pool file: loaded before listening, so the first request already has a table.
  const poolFile = flags.config === undefined ? undefined : new PoolFileSource(resolve(flags.config), store);
  const reloadConfig = async (): Promise<void> => {
    const r = await poolFile?.reload();
    if (r?.outcome !== 'rejected') return;
    metrics.tableRejections.inc({ source: 'file', reason: 'invalid' });
    log('error', 'pool file rejected; the last good table keeps serving', {
      file: poolFile?.path,
      revision: store.current?.revision,
      error: r.error.message,
    });
  };
  if (poolFile !== undefined) {
    const first = await poolFile.reload();
    if (first.outcome === 'rejected') die(`--config ${poolFile.path}: ${first.error.message}`);
    watchFile(poolFile.path, () => void reloadConfig());
  }
  const reloadKeys = async (): Promise<void> => {
    if (keysFile === undefined) return;
    try {
      cookieKeys = await loadCookieKeys(keysFile);
      log('info', 'cookie keys reloaded', { keys: cookieKeys.length });
    } catch (err) {
      log('error', 'cookie keys file rejected; keeping the previous keys', { error: (err as Error).message });
    }
  };
  if (keysFile !== undefined) watchFile(keysFile, () => void reloadKeys());
  process.on('SIGHUP', () => {
    poolFile?.forget();
    void reloadConfig();
    void reloadKeys();
    reloadSessionStore();
  });

  let port: number;
  let adminPort: number;
  try {
    port = await proxy.listen(flags.listen.host, flags.listen.port);
    adminPort = await new Promise<number>((res, rej) => {
      admin.once('error', rej);
      admin.listen(flags['admin-listen'].port, flags['admin-listen'].host, () => {
        const a = admin.address();
        res(typeof a === 'object' && a !== null ? a.port : flags['admin-listen'].port);
      });
    });
  } catch (err) {
    die(`cannot listen: ${(err as Error).message}`);
  }
  log('info', 'tether-proxy listening', {
    listen: `${flags.listen.host}:${port}`,
    admin: `${flags['admin-listen'].host}:${adminPort}`,
    pool: store.current?.pool,
    revision: store.current?.revision,
    engine: flags.engine,
    node: process.version,
  });

  const stop = async (signal: string): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeoutMs = parseDuration(flags['shutdown-timeout']);
    log('info', 'shutting down: finishing requests in flight', { signal, timeoutMs });
    await proxy.shutdown(timeoutMs);
    await upstreams.close();
    await pins?.close();
    admin.closeAllConnections();
    admin.close();
    log('info', 'stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
