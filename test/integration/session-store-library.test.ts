/**
 * `tether/session-store` against a real loopback store (redis-server
 * primary + 2 replicas, 3 redis-sentinel; tools/redis-store.ts), imported by
 * the package name as an app imports it.
 *
 * How loss is bounded, which the failover test measures:
 * - `WAIT n t` (Sync mode) makes a write count as done only once `n`
 *   replicas hold it. Sentinel promotes the replica with the highest
 *   replication offset, which therefore holds every write any replica
 *   acknowledged: with the old primary SIGKILLed, no Sync-acknowledged
 *   write may be missing on the new primary. Async writes acknowledged by
 *   the primary alone in its last moments may be.
 * - `min-replicas-to-write 1` (what the operator sets; the store here runs
 *   with it too) makes a primary refuse writes (`NOREPLICAS`) once no
 *   replica has acknowledged it for `min-replicas-max-lag` (10 s): an old
 *   primary cut off from its replicas, but not from some clients, stops
 *   taking writes that the failover would discard. WAIT does not cover that
 *   case (its writes fail, but they were applied); min-replicas-to-write
 *   bounds how long it lasts. Neither makes Redis strongly consistent.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import session, { type SessionData } from 'express-session';
import type { Redis } from 'ioredis';
import {
  createSessionStore,
  loadedFrom,
  SessionStoreError,
  type TetherSessionStore,
} from 'tether/session-store';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { freePort } from '../../tools/free-port.ts';
import { type RedisStore, startRedisStore } from '../../tools/redis-store.ts';
import { Client } from '../helpers/proxy-process.ts';

declare module 'express-session' {
  interface SessionData {
    count: number;
    n: number;
  }
}

const children = new ChildProcesses();
process.once('exit', () => children.killAllNow());

/**
 * Short Sentinel timings, so a failover takes a few seconds (defaults: 30 s,
 * 3 min), and a password and master name of this file's own: should a free
 * port be taken by another test's store in between (tools/free-port.ts),
 * AUTH fails loudly instead of two stores mixing.
 */
const STORE_TIMINGS = {
  downAfterMs: 1_000,
  failoverTimeoutMs: 3_000,
  password: randomBytes(16).toString('hex'),
  masterName: `tether-lib-${randomBytes(4).toString('hex')}`,
} as const;

/** A session as express-session hands it to a store: the cookie's expiry drives the TTL. */
function sessionData(fields: Partial<SessionData>, maxAgeMs: number | null): SessionData {
  const cookie =
    maxAgeMs === null
      ? { originalMaxAge: null, expires: null }
      : { originalMaxAge: maxAgeMs, expires: new Date(Date.now() + maxAgeMs) };
  return { cookie, ...fields } as unknown as SessionData;
}

/** A node:http server running express-session on `store`, counting per session. */
async function startApp(store: TetherSessionStore, name: string): Promise<{ server: Server; url: string }> {
  const mw = session({ store, secret: 'test-secret', name: 'sid', resave: false, saveUninitialized: false });
  const server = createServer((req, res) => {
    mw(req as never, res as never, (err?: unknown) => {
      const r = req as typeof req & { session: session.Session & Partial<SessionData> };
      // A failed touch at the end of a response comes through next(err) after the answer.
      if (err && res.headersSent) return;
      if (err) return void res.writeHead(503).end(String((err as Error).message));
      r.session.count = (r.session.count ?? 0) + 1;
      r.session.save((saveErr) => {
        if (saveErr) {
          const code = (saveErr as { code?: string }).code ?? 'ERROR';
          res.writeHead(503, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ error: code, message: (saveErr as Error).message }));
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ endpoint: name, count: r.session.count }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function closeApp(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('tether/session-store on a loopback store', () => {
  let store: RedisStore;
  const opened: TetherSessionStore[] = [];
  const open = (o: Parameters<typeof createSessionStore>[0]): TetherSessionStore => {
    const s = createSessionStore(o);
    opened.push(s);
    return s;
  };

  beforeAll(async () => {
    store = await startRedisStore(children, { ...STORE_TIMINGS, minReplicasToWrite: 1, writeMode: 'Sync' });
  }, 30_000);
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await store?.stop();
  });

  it('is imported by the package name, from the sources without a build', () => {
    expect(loadedFrom).toMatch(/\/(dist\/proxy\/src\/session-store\/index\.js|index\.ts)$/);
    expect(typeof createSessionStore).toBe('function');
  });

  it('gets, sets, touches and destroys sessions, with the TTL from the cookie', async () => {
    const s = open({ connection: store.connection(), ttlSeconds: 120, prefix: 'lib:' });
    expect(s.writeConcern).toEqual({ writeMode: 'Sync', waitReplicas: 1, waitTimeoutMs: 500 });
    const raw = store.clientOf(await store.primaryPort());

    expect(await s.get('a')).toBeNull();
    await s.set('a', sessionData({ count: 1 }, 30_000));
    expect(await s.get('a')).toMatchObject({ count: 1 });
    const ttlA = await raw.ttl('lib:a');
    expect(ttlA).toBeGreaterThanOrEqual(29);
    expect(ttlA).toBeLessThanOrEqual(30);

    // No expiry on the cookie (a browser-session cookie): the store's default TTL.
    await s.set('b', sessionData({ count: 2 }, null));
    expect(await raw.ttl('lib:b')).toBeGreaterThan(110);

    // touch: a later expiry moves the TTL, the data stays.
    await s.touch('a', sessionData({ count: 1 }, 90_000));
    expect(await raw.ttl('lib:a')).toBeGreaterThan(80);
    expect(await s.get('a')).toMatchObject({ count: 1 });

    // A cookie already expired: connect-redis deletes instead of writing.
    await s.set('a', sessionData({ count: 3 }, -1_000));
    expect(await s.get('a')).toBeNull();

    await s.destroy('b');
    expect(await s.get('b')).toBeNull();
    // Sync: each of those writes waited for a replica; the callback API works too.
    await new Promise<void>((resolve, reject) =>
      s.set('c', sessionData({ count: 4 }, 10_000), (err?: unknown) => (err ? reject(err) : resolve())),
    );
    expect(s.stats()).toEqual({ acknowledged: 6, notReplicated: 0, failed: 0 });
    // connect-redis' SCAN-based calls work through the WAIT wrapper too.
    expect(await s.ids()).toEqual(['c']);
    expect(await s.length()).toBe(1);
    // A replica holds what the primary acknowledged.
    const replica = store.servers.find((x) => x.port !== raw.options.port) as { port: number };
    expect(await store.clientOf(replica.port).get('lib:c')).toContain('"count":4');
  });

  it('serves express-session on node:http: the counter lives in the store, shared by two apps', async () => {
    const a = await startApp(open({ connection: store.connection() }), 'app-a');
    const b = await startApp(open({ connection: store.connection() }), 'app-b');
    try {
      const client = new Client();
      const counts: number[] = [];
      for (const url of [a.url, a.url, b.url, a.url, b.url]) {
        const r = await client.get(`${url}/`);
        expect(r.status).toBe(200);
        counts.push((JSON.parse(r.text) as { count: number }).count);
      }
      expect(counts).toEqual([1, 2, 3, 4, 5]);
      expect(client.jar.get('sid')).toMatch(/^s%3A/);
    } finally {
      await Promise.all([closeApp(a.server), closeApp(b.server)]);
    }
  });

  it('reads its connection from a mounted Secret directory and from envFrom variables', async () => {
    const fromDir = open({ secretDir: store.writeSecretDir() });
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(store.secretValues())) env[`SESSION_STORE_${k}`] = v;
    const fromEnv = open({ env, envPrefix: 'SESSION_STORE_', writeMode: 'Async' });
    await fromDir.set('shared', sessionData({ count: 7 }, 60_000));
    expect(await fromEnv.get('shared')).toMatchObject({ count: 7 });
    expect(fromDir.writeConcern.writeMode).toBe('Sync');
    expect(fromEnv.writeConcern.writeMode).toBe('Async');
  });

  it.each([
    {
      desc: 'a Secret without sentinels',
      values: { masterName: 'tether-test' },
      want: /^session store environment \(prefix S_\): S_sentinels: missing$/,
    },
    {
      desc: 'a sentinel list that is no address list',
      values: { sentinels: 'redis-sentinel.svc', masterName: 'tether-test' },
      want: /S_sentinels: sentinels: "redis-sentinel\.svc" is not host:port/,
    },
    {
      desc: 'an unknown write mode',
      values: { sentinels: '127.0.0.1:1', masterName: 'tether-test', writeMode: 'sync' },
      want: /S_writeMode: /,
    },
  ])('refuses $desc with a clear error, before connecting', ({ values, want }) => {
    const env = Object.fromEntries(Object.entries(values).map(([k, v]) => [`S_${k}`, v]));
    try {
      createSessionStore({ env, envPrefix: 'S_' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(SessionStoreError);
      expect((err as SessionStoreError).code).toBe('TETHER_SESSION_STORE_CONFIG');
      expect((err as Error).message).toMatch(want);
    }
  });

  it('close() ends every connection it opened, failoverDetector subscriptions to the Sentinels included', async () => {
    const sentinelClients = async (): Promise<number> => {
      let n = 0;
      for (const port of store.sentinelPorts) {
        const c = store.clientOf(port);
        // Lines of CLIENT LIST, minus the asking connection itself.
        n += ((await c.call('CLIENT', 'LIST')) as string).trim().split('\n').length - 1;
        c.disconnect();
      }
      return n;
    };
    const before = await sentinelClients();
    const s = createSessionStore({
      connection: store.connection(),
      redisOptions: { failoverDetector: true },
    });
    await s.set('d', sessionData({ count: 1 }, 10_000));
    await vi.waitFor(async () => expect(await sentinelClients()).toBeGreaterThan(before), { timeout: 5_000 });
    await s.close();
    // At most: \`before\` may have counted a short-lived connection of someone else.
    await vi.waitFor(async () => expect(await sentinelClients()).toBeLessThanOrEqual(before), {
      timeout: 5_000,
    });
    expect(s.redis.status).toBe('end');
  });

  it('with no store reachable, a request fails within commandTimeoutMs through the callback, never an error event', async () => {
    const deadPort = await freePort();
    const clientErrors: Error[] = [];
    const s = open({
      connection: { sentinels: `127.0.0.1:${deadPort}`, masterName: 'nowhere' },
      connectTimeoutMs: 200,
      commandTimeoutMs: 400,
      onClientError: (err) => clientErrors.push(err),
    });
    const storeErrors: unknown[] = [];
    s.on('error', (err) => storeErrors.push(err));
    const app = await startApp(s, 'app-alone');
    try {
      const t0 = Date.now();
      const r = await new Client().get(`${app.url}/`);
      const ms = Date.now() - t0;
      expect(r.status).toBe(503);
      expect(r.text).toMatch(/timed out/i);
      expect(ms).toBeLessThan(5_000);
      expect(clientErrors.length).toBeGreaterThan(0);
      expect(storeErrors).toEqual([]);
    } finally {
      await closeApp(app.server);
    }
  });

  it('Sync: a write too few replicas acknowledge fails with TETHER_SESSION_NOT_REPLICATED, up to the app', async () => {
    // 5 replicas wanted, 2 exist: WAIT returns 2 after its 100 ms.
    const s = open({ connection: store.connection(), waitReplicas: 5, waitTimeoutMs: 100 });
    const err = await s.set('x', sessionData({ count: 1 }, 60_000)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SessionStoreError);
    expect(err).toMatchObject({ code: 'TETHER_SESSION_NOT_REPLICATED', acked: 2, wanted: 5 });
    expect((err as Error).message).toBe('set: 2 of 5 replicas acknowledged within 100 ms');
    expect(s.stats()).toEqual({ acknowledged: 0, notReplicated: 1, failed: 0 });

    // Through express-session: the explicit save's callback gets it, the app answers 503.
    const app = await startApp(s, 'app-sync');
    try {
      const r = await new Client().get(`${app.url}/`);
      expect(r.status).toBe(503);
      expect(JSON.parse(r.text)).toMatchObject({ error: 'TETHER_SESSION_NOT_REPLICATED' });
    } finally {
      await closeApp(app.server);
    }
  });
});

/** What one run of {@link writeThroughFailover} saw. */
interface FailoverRun {
  readonly mode: 'Sync' | 'Async';
  readonly minReplicasToWrite: number;
  readonly attempted: number;
  readonly acked: number;
  readonly ackedAfterFailover: number;
  readonly failed: number;
  readonly failures: Record<string, number>;
  /** Acknowledged writes missing on the new primary. */
  readonly lost: number;
  /** From the SIGKILL to the Sentinels reporting a new primary, ms. */
  readonly failoverMs: number;
  /** From the SIGKILL to the first write acknowledged after the old primary was gone, ms. */
  readonly firstAckAfterKillMs: number;
}

/** Writers; each awaits its write before the next (like requests of distinct users). */
const WRITERS = 8;
/** Bounds of one run: writes, and wall time, ms. */
const MAX_WRITES = 30_000;
const MAX_RUN_MS = 40_000;
/** Acknowledged writes wanted before the kill, and after the failover. */
const ACKS_BEFORE = 300;
const ACKS_AFTER = 300;
/** How long the primary runs without replica links before it is killed, ms. */
const LINK_DOWN_MS = 200;

/**
 * Steady session writes (each a new session, so every acknowledged one can
 * be looked up afterwards) while the primary is SIGKILLed and Sentinel
 * promotes a replica; then every acknowledged write is read back from the
 * new primary.
 */
async function writeThroughFailover(
  store: RedisStore,
  mode: 'Sync' | 'Async',
  minReplicasToWrite: number,
): Promise<FailoverRun> {
  const lib = createSessionStore({
    connection: store.connection(),
    writeMode: mode,
    waitReplicas: 1,
    waitTimeoutMs: 500,
    commandTimeoutMs: 2_000,
  });
  const started = Date.now();
  const acked: { sid: string; at: number }[] = [];
  const failures: Record<string, number> = {};
  let attempted = 0;
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    for (let i = 0; !stop && attempted < MAX_WRITES && Date.now() - started < MAX_RUN_MS; i++) {
      attempted++;
      const sid = `${mode}-${w}-${i}`;
      try {
        await lib.set(sid, sessionData({ n: i }, 600_000));
        acked.push({ sid, at: Date.now() });
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).message.slice(0, 40);
        failures[code] = (failures[code] ?? 0) + 1;
        // A failed write is retried by the user, not in a tight loop.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
  try {
    const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
      const end = Date.now() + ms;
      while (!cond()) {
        if (Date.now() > end)
          throw new Error(
            `${mode}: timed out after ${ms} ms waiting for ${what}; ${acked.length} acknowledged, failures ${JSON.stringify(failures)}`,
          );
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => acked.length >= ACKS_BEFORE, 10_000, `${ACKS_BEFORE} acknowledged writes`);
    const old = await store.primary();
    // The primary loses its replicas first, then dies: the writes of those
    // moments reach no replica (replication lag at its worst). Async
    // acknowledges them anyway; Sync's WAIT must not. A new password makes
    // the replicas' reconnects fail (connections already open, ours
    // included, stay authenticated), so the window is not closed by a quick
    // partial resync.
    const primaryClient = store.clientOf(old.port);
    await primaryClient.call('CONFIG', 'SET', 'requirepass', 'not-the-replicas-password');
    await primaryClient.call('CLIENT', 'KILL', 'TYPE', 'replica');
    await new Promise((r) => setTimeout(r, LINK_DOWN_MS));
    const killedAt = Date.now();
    await store.killServer(old);
    const deadAt = Date.now();
    const newPort = await store.waitForFailover(old.port, 20_000);
    const failoverMs = Date.now() - killedAt;
    const promotedAt = Date.now();
    await until(
      () => acked.filter((a) => a.at > promotedAt).length >= ACKS_AFTER,
      15_000,
      `${ACKS_AFTER} acknowledged writes after the failover`,
    );
    stop = true;
    await Promise.all(writers);

    const reader: Redis = store.clientOf(newPort);
    let lost = 0;
    for (let i = 0; i < acked.length; i += 500) {
      const keys = acked.slice(i, i + 500).map((a) => `sess:${a.sid}`);
      lost += (await reader.mget(keys)).filter((v) => v === null).length;
    }
    const firstAfter = acked.find((a) => a.at > deadAt);
    return {
      mode,
      minReplicasToWrite,
      attempted,
      acked: acked.length,
      ackedAfterFailover: acked.filter((a) => a.at > promotedAt).length,
      failed: Object.values(failures).reduce((s, n) => s + n, 0),
      failures,
      lost,
      failoverMs,
      firstAckAfterKillMs: firstAfter === undefined ? -1 : firstAfter.at - killedAt,
    };
  } finally {
    stop = true;
    await Promise.all(writers);
    await lib.close();
  }
}

function describeRun(r: FailoverRun): string {
  const fails = Object.entries(r.failures)
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ');
  return `${r.mode} (min-replicas-to-write ${r.minReplicasToWrite}): ${r.attempted} writes, ${r.acked} acknowledged (${r.ackedAfterFailover} after the failover), ${r.lost} of them lost; ${r.failed} failed (${fails || 'none'}); failover ${r.failoverMs} ms, first ack ${r.firstAckAfterKillMs} ms after the kill`;
}

describe('the store primary is SIGKILLed under steady session writes', () => {
  const runs: FailoverRun[] = [];

  // Sync without min-replicas-to-write: WAIT alone must keep every
  // acknowledged write. Async twice, counted only: without
  // min-replicas-to-write it acknowledges the writes of the lagging moments
  // (and loses them); with it, the primary refuses them (NOREPLICAS) once no
  // replica is connected.
  it.each([
    { mode: 'Sync', minReplicasToWrite: 0 },
    { mode: 'Async', minReplicasToWrite: 0 },
    { mode: 'Async', minReplicasToWrite: 1 },
  ] as const)(
    '$mode, min-replicas-to-write $minReplicasToWrite: a replica is promoted and writes go on; acknowledged writes are counted',
    async ({ mode, minReplicasToWrite }) => {
      const store = await startRedisStore(children, { ...STORE_TIMINGS, minReplicasToWrite });
      try {
        const run = await writeThroughFailover(store, mode, minReplicasToWrite);
        runs.push(run);
        process.stdout.write(`session store failover: ${describeRun(run)}\n`);
        expect(run.ackedAfterFailover).toBeGreaterThanOrEqual(ACKS_AFTER);
        if (mode === 'Sync') expect(run.lost, describeRun(run)).toBe(0);
        // Async: the loss is reported, not judged.
        else expect(run.lost).toBeGreaterThanOrEqual(0);
      } finally {
        await store.stop();
      }
    },
    90_000,
  );

  afterAll(() => {
    if (runs.length > 0)
      process.stdout.write(
        `session store failover, side by side:\n${runs.map((r) => `  ${describeRun(r)}`).join('\n')}\n`,
      );
  });
});
