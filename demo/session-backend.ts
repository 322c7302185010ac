/**
 * An app endpoint that keeps its session in the pool's replicated store:
 * node:http + express-session + `tether/session-store`, imported by the
 * package name as an app would. Used by `make demo` (session part), the
 * session-store integration tests and nothing else.
 *
 *     SESSION_SECRET=… node demo/session-backend.ts --id shop-a --secret-dir DIR [--port 0]
 *
 * Every request but `/healthz` increments the session's counter and saves
 * the session *before* answering (`req.session.save`), so a 200 means the
 * store acknowledged the write (in `Sync` mode: replicated). Answers:
 *
 *     200 {"endpoint":"shop-a","client":"client-1","count":7,"session":"<sid>"}
 *     503 {"endpoint":"shop-a","error":"TETHER_SESSION_NOT_REPLICATED","message":"…"}
 *
 * `SESSION_SECRET` signs the `sid` cookie and must be the same on every
 * endpoint of the pool (any of them must accept any session). The Secret
 * directory holds the store connection (`connection.ts`'s keys).
 *
 * It prints `{"endpoint":"shop-a","port":40123}` once the store answered
 * and it listens, and exits when its stdin closes or on SIGTERM.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import session from 'express-session';
import { createSessionStore } from 'tether/session-store';

declare module 'express-session' {
  interface SessionData {
    count: number;
  }
}

const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    port: { type: 'string', default: '0' },
    'secret-dir': { type: 'string' },
  },
  strict: true,
});
const endpoint = values.id;
const secretDir = values['secret-dir'];
const cookieSecret = process.env.SESSION_SECRET;
if (!endpoint || !secretDir || !cookieSecret) {
  process.stderr.write('usage: SESSION_SECRET=… node demo/session-backend.ts --id NAME --secret-dir DIR\n');
  process.exit(2);
}

const store = createSessionStore({
  secretDir,
  // Every request saves the session (below), which sets its TTL: express-session's
  // touch at the end of the response would be a second write (and WAIT) for nothing.
  disableTouch: true,
  onClientError: (err) => process.stderr.write(`backend ${endpoint}: store: ${err.message}\n`),
});
const middleware = session({
  store,
  secret: cookieSecret,
  name: 'sid',
  resave: false,
  saveUninitialized: false,
  cookie: { maxAge: 30 * 60_000, httpOnly: true, sameSite: 'lax' },
});

type Req = IncomingMessage & { session: session.Session & Partial<session.SessionData>; sessionID: string };

function send(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = `${JSON.stringify({ endpoint, ...body })}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(err: unknown): Record<string, unknown> {
  const e = err as { code?: unknown; message?: unknown };
  return { error: typeof e.code === 'string' ? e.code : 'STORE_ERROR', message: String(e.message ?? err) };
}

const server = createServer({ keepAlive: true }, (req, res) => {
  if ((req.url ?? '/').split('?')[0] === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '3' }).end('ok\n');
    return;
  }
  // express-session is connect middleware; on plain node:http `next` is the handler itself.
  middleware(req as never, res as never, (err?: unknown) => {
    // express-session reports a failed save or touch at the end of a response through
    // `next(err)` too, after the answer went out: nothing to answer then.
    if (err && res.headersSent) return void process.stderr.write(`backend ${endpoint}: ${String(err)}\n`);
    if (err) return send(res, 503, errorBody(err));
    const r = req as Req;
    r.session.count = (r.session.count ?? 0) + 1;
    r.session.save((saveErr) => {
      if (saveErr) return send(res, 503, errorBody(saveErr));
      const client = req.headers['x-client-id'];
      send(res, 200, {
        client: typeof client === 'string' ? client : undefined,
        count: r.session.count,
        session: r.sessionID,
      });
    });
  });
});

async function start(): Promise<void> {
  // Listening before the store answers would turn the first requests into 503s.
  await Promise.race([
    store.redis.ping(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('store not reachable in 10 s')), 10_000)),
  ]);
  server.listen(Number(values.port), '127.0.0.1', () => {
    const addr = server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : Number(values.port);
    process.stdout.write(`${JSON.stringify({ endpoint, port })}\n`);
  });
}
server.on('error', (err) => {
  process.stderr.write(`backend ${endpoint}: ${err.message}\n`);
  process.exit(1);
});
start().catch((err: Error) => {
  process.stderr.write(`backend ${endpoint}: ${err.message}\n`);
  process.exit(1);
});

const stop = (): void => {
  server.close();
  void store.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1_000).unref();
};
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
