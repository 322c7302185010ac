/**
 * Learn affinity against a real loopback store (redis-server primary + 2
 * replicas, 3 redis-sentinel): pins learned from the app's JSESSIONID are
 * shared by two proxy processes, slide and expire, follow a killed
 * endpoint, and survive a failover of the store's primary. The sharing
 * and following run through both engines (`--engine native`, the default,
 * and `--engine node`): the lookup and the response hook are one code in
 * request-flow.ts, but each engine calls it.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeKeyOf } from '../../proxy/src/routing/learn.ts';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { type RedisStore, startRedisStore } from '../../tools/redis-store.ts';
import { type Backend, startBackend, startBackends } from '../helpers/backends.ts';
import type { TestEndpoint } from '../helpers/pools.ts';
import {
  get,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';
import { RawConnection, rawExchange, upgradeRequest } from '../helpers/raw-client.ts';
import {
  hashChoice,
  loginOffHash,
  metricValue,
  newSid,
  sessionApp,
  withSession,
} from './session-store-helpers.ts';

const children = new ChildProcesses();
let store: RedisStore;
let backends: Backend[] = [];
let eps: TestEndpoint[] = [];
let s: Scratch;
let secretDir: string;
const proxies: ProxyProcess[] = [];

beforeAll(async () => {
  store = await startRedisStore(children, { replicas: 2, sentinels: 3 });
  secretDir = store.writeSecretDir();
  backends = await startBackends(3, 'app', sessionApp);
  eps = backends.map((b) => ({ name: b.id, port: b.port }));
  s = scratch();
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all(backends.map((b) => b.kill().catch(() => {})));
  await store?.stop();
  await children.stopAll();
  s?.cleanup();
});

/** A proxy of a Learn pool over the backends, with the store. */
async function learnProxy(
  file: string,
  timeout = '30m',
  engine: 'native' | 'node' = 'native',
  extra: readonly string[] = [],
): Promise<ProxyProcess> {
  const config = s.write(
    file,
    poolYaml(eps, { affinity: { type: 'Learn', learn: { cookieName: 'JSESSIONID', timeout } } }),
  );
  // A generous store timeout: these tests are about the pins, and a loaded 2-core machine can
  // delay a lookup past the 50 ms default (the fallback is session-store-down.test.ts's subject).
  const p = await startProxy([
    '--config',
    config,
    '--session-store',
    secretDir,
    '--session-store-timeout',
    '1s',
    '--engine',
    engine,
    ...extra,
  ]);
  proxies.push(p);
  await waitFor(
    async () => (await metricValue(p, 'tether_proxy_session_store_up')) === 1,
    10_000,
    'store up',
  );
  return p;
}

/** Waits until the store holds `sid` → `endpoint`: writes are fire-and-forget, after the response. */
async function waitStored(sid: string, endpoint: string | null): Promise<void> {
  await waitFor(
    async () => (await storedEndpoint(sid)) === endpoint,
    3_000,
    `${sid} → ${endpoint} in the store`,
  );
}

async function storedEndpoint(sid: string): Promise<string | null> {
  const c = store.clientOf(await store.primaryPort());
  try {
    return await c.get(storeKeyOf('default/shop', 'learn', sid));
  } finally {
    c.disconnect();
  }
}

describe.each(['native', 'node'] as const)(
  'Learn affinity with the session store (--engine %s)',
  (engine) => {
    let a: ProxyProcess;
    let b: ProxyProcess;

    beforeAll(async () => {
      [a, b] = await Promise.all([
        learnProxy(`a-${engine}.yaml`, '30m', engine),
        learnProxy(`b-${engine}.yaml`, '30m', engine),
      ]);
    }, 30_000);

    it('a pin learned through proxy A is honoured by proxy B; the proxy never sets a cookie of its own', async () => {
      const { sid, endpoint } = await loginOffHash(a, eps);
      await waitStored(sid, endpoint);
      for (let i = 0; i < 5; i++) {
        expect(await withSession(b, sid)).toBe(endpoint);
        expect(await withSession(a, sid)).toBe(endpoint);
      }
      const r = await get(`${b.url}/`, { headers: { cookie: `JSESSIONID=${sid}` } });
      expect(r.headers['set-cookie']).toBeUndefined();
      // The store keeps a hash of the cookie, never the cookie itself.
      const c = store.clientOf(await store.primaryPort());
      try {
        const keys = await c.keys('tether:*');
        expect(keys.some((k) => k.includes(sid))).toBe(false);
        expect(keys).toContain(storeKeyOf('default/shop', 'learn', sid));
      } finally {
        c.disconnect();
      }
      expect(
        await metricValue(b, 'tether_proxy_affinity_decisions_total', { outcome: 'hit' }),
      ).toBeGreaterThan(0);
      expect(
        await metricValue(a, 'tether_proxy_session_store_writes_total', { result: 'ok' }),
      ).toBeGreaterThan(0);
    });

    it('a WebSocket handshake carrying the learned cookie reaches the learned endpoint', async () => {
      const { sid, endpoint } = await loginOffHash(a, eps);
      const r = await rawExchange(b.port, upgradeRequest('/ws', [`Cookie: JSESSIONID=${sid}`]), 1_000);
      expect(r.text).toMatch(/^HTTP\/1\.1 101 /);
      // The backend's one frame names it.
      for (const e of eps) expect(r.text.includes(e.name), e.name).toBe(e.name === endpoint);
    });

    it('pipelined requests of different sessions wait for their lookups and are answered in order', async () => {
      const sessions = [await loginOffHash(a, eps), await loginOffHash(a, eps), await loginOffHash(a, eps)];
      for (const x of sessions) await waitStored(x.sid, x.endpoint);
      const payload = sessions
        .map((x, i) => `GET /p${i} HTTP/1.1\r\nHost: shop.example\r\nCookie: JSESSIONID=${x.sid}\r\n\r\n`)
        .join('');
      const c = await RawConnection.open(b.port);
      try {
        c.write(payload);
        expect(await c.waitResponses(sessions.length)).toBe(true);
        const got = c
          .responses()
          .map((r) => JSON.parse(r.body.toString()) as { endpoint: string; path: string });
        expect(got.map((r) => r.path)).toEqual(['/p0', '/p1', '/p2']);
        expect(got.map((r) => r.endpoint)).toEqual(sessions.map((x) => x.endpoint));
      } finally {
        c.destroy();
      }
    });

    it('an unknown cookie is pinned by its consistent hash and learned; a logout removes the pin', async () => {
      const sid = newSid();
      const want = hashChoice(eps, sid);
      expect(await withSession(a, sid)).toBe(want);
      await waitStored(sid, want);
      expect(await withSession(b, sid)).toBe(want);
      await withSession(b, sid, '/logout');
      await waitStored(sid, null);
    });

    it('the endpoint a client is pinned to dies: the client moves, and sticks to the new one on both proxies', async () => {
      const { sid, endpoint } = await loginOffHash(a, eps);
      const victim = backends.find((x) => x.id === endpoint) as Backend;
      await victim.kill();
      try {
        const moved = await withSession(a, sid);
        expect(moved).toBeDefined();
        expect(moved).not.toBe(endpoint);
        await waitStored(sid, moved as string);
        for (let i = 0; i < 5; i++) {
          expect(await withSession(b, sid)).toBe(moved);
          expect(await withSession(a, sid)).toBe(moved);
        }
      } finally {
        const i = backends.indexOf(victim);
        backends[i] = await startBackend(victim.id, victim.port, sessionApp);
      }
    });
  },
);

describe('Learn affinity with --workers 2 (native engine)', () => {
  it('every worker honours a pin learned elsewhere, and pins learned through the workers are stored', async () => {
    const [single, workers] = await Promise.all([
      learnProxy('w-single.yaml'),
      learnProxy('w-workers.yaml', '30m', 'native', ['--workers', '2']),
    ]);
    const learned = await loginOffHash(single, eps);
    await waitStored(learned.sid, learned.endpoint);
    // New connections are spread over the workers (node:cluster round robin): each must follow the store.
    for (let i = 0; i < 8; i++) {
      const r = await get(`${workers.url}/`, {
        headers: { cookie: `JSESSIONID=${learned.sid}`, connection: 'close' },
      });
      expect(r.endpoint).toBe(learned.endpoint);
    }
    const viaWorkers = await loginOffHash(workers, eps);
    await waitStored(viaWorkers.sid, viaWorkers.endpoint);
    expect(await withSession(single, viaWorkers.sid)).toBe(viaWorkers.endpoint);
  }, 30_000);
});

describe('Learn pins time out', () => {
  it('a learned pin slides with use and expires after its timeout without', async () => {
    // 3 s, with 1.5 s of margin on each side of every step: a loaded machine may stall a step for a while.
    const p = await learnProxy('short.yaml', '3s');
    const { sid, endpoint } = await loginOffHash(p, eps);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await withSession(p, sid)).toBe(endpoint);
    await new Promise((r) => setTimeout(r, 1_500));
    // 3 s after the login, 1.5 s after the last use: still pinned (sliding).
    expect(await withSession(p, sid)).toBe(endpoint);
    await new Promise((r) => setTimeout(r, 4_500));
    expect(await storedEndpoint(sid)).toBeNull();
    // Forgotten: the cookie is pinned afresh by its hash.
    expect(await withSession(p, sid)).toBe(hashChoice(eps, sid));
  }, 30_000);
});

describe('the store primary is killed', () => {
  it('Sentinel promotes a replica and learning resumes; pins learned before survive', async () => {
    const p = await learnProxy('failover.yaml');
    const before = await loginOffHash(p, eps);
    await waitStored(before.sid, before.endpoint);
    await store.waitForReplicas(2);
    const old = await store.primary();
    // Both replicas have the pin before the primary dies (replication is asynchronous).
    const c = store.clientOf(old.port);
    try {
      expect(await c.call('WAIT', 2, 2_000)).toBe(2);
    } finally {
      c.disconnect();
    }
    await store.killServer(old);
    await store.waitForFailover(old.port);
    await waitFor(
      async () => (await metricValue(p, 'tether_proxy_session_store_up')) === 1,
      15_000,
      'the proxy reconnected to the new primary',
    ).catch((err: Error) => {
      // Say what the proxy saw, should this ever time out.
      throw new Error(`${err.message}; the proxy's last log lines:\n${p.logs.slice(-15).join('\n')}`);
    });
    const after = await loginOffHash(p, eps);
    await waitStored(after.sid, after.endpoint);
    expect(await withSession(p, after.sid)).toBe(after.endpoint);
    expect(await withSession(p, before.sid)).toBe(before.endpoint);
    await store.restartServer(old);
  }, 60_000);
});

describe("the store's Secret before the operator published a Sentinel", () => {
  it('a proxy started with an empty sentinels list serves by consistent hashing, then connects when the Secret fills in', async () => {
    // The operator writes `sentinels: ""` until the first Sentinel pod has an IP; a managed
    // proxy started then exited 2 (`sentinels: expected string`) and crash-looped.
    const dir = join(s.dir, 'unpublished-secret');
    mkdirSync(dir);
    for (const f of readdirSync(secretDir)) copyFileSync(join(secretDir, f), join(dir, f));
    const published = readFileSync(join(secretDir, 'sentinels'), 'utf8');
    writeFileSync(join(dir, 'sentinels'), '');
    const config = s.write(
      'unpublished.yaml',
      poolYaml(eps, { affinity: { type: 'Learn', learn: { cookieName: 'JSESSIONID', timeout: '30m' } } }),
    );
    const p = await startProxy(['--config', config, '--session-store', dir, '--session-store-timeout', '1s']);
    proxies.push(p);
    const sid = newSid();
    expect(await withSession(p, sid)).toBe(hashChoice(eps, sid));
    expect(await metricValue(p, 'tether_proxy_session_store_up')).toBe(0);
    expect(
      await metricValue(p, 'tether_proxy_session_store_fallbacks_total', { reason: 'not_connected' }),
    ).toBeGreaterThan(0);
    // The Secret fills in (a rename, as the kubelet swaps a volume's files).
    writeFileSync(join(dir, '.sentinels.tmp'), published);
    renameSync(join(dir, '.sentinels.tmp'), join(dir, 'sentinels'));
    await waitFor(
      async () => (await metricValue(p, 'tether_proxy_session_store_up')) === 1,
      10_000,
      'store up after the Secret filled in',
    );
    const learned = await loginOffHash(p, eps);
    await waitStored(learned.sid, learned.endpoint);
    for (let i = 0; i < 3; i++) expect(await withSession(p, learned.sid)).toBe(learned.endpoint);
    // Emptied again (no Sentinel pod with an IP for a moment): the connection it has stays.
    writeFileSync(join(dir, '.sentinels.tmp'), '');
    renameSync(join(dir, '.sentinels.tmp'), join(dir, 'sentinels'));
    await new Promise((r) => setTimeout(r, 500));
    expect(await metricValue(p, 'tether_proxy_session_store_up')).toBe(1);
    expect(await withSession(p, learned.sid)).toBe(learned.endpoint);
  });
});
