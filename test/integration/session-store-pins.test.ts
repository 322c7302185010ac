/**
 * Persisted ClientIP and Header pins (`sessionStore.persistPins`) against
 * a real loopback store: a scale-up moves no pinned client, new clients
 * spread onto the new endpoints; and a proxy without `--session-store`
 * refuses what needs the store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoutingTable } from '../../proxy/src/api/routing-table.ts';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { type RedisStore, startRedisStore } from '../../tools/redis-store.ts';
import { type Backend, startBackends } from '../helpers/backends.ts';
import { type TestEndpoint, testTable } from '../helpers/pools.ts';
import {
  get,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  servedRevision,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';
import { metricValue } from './session-store-helpers.ts';

const TOKEN = 'pins-test-token';
const children = new ChildProcesses();
let store: RedisStore;
let backends: Backend[] = [];
let s: Scratch;
let tokenFile: string;
const proxies: ProxyProcess[] = [];

beforeAll(async () => {
  store = await startRedisStore(children, { replicas: 1, sentinels: 1 });
  backends = await startBackends(4, 'pin');
  s = scratch();
  tokenFile = s.write('token', `${TOKEN}\n`);
}, 60_000);

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await Promise.all(backends.map((b) => b.kill().catch(() => {})));
  await store?.stop();
  await children.stopAll();
  s?.cleanup();
});

function endpoints(n: number): TestEndpoint[] {
  return backends.slice(0, n).map((b) => ({ name: b.id, port: b.port }));
}

function table(revision: number, n: number, spec: Record<string, unknown>): RoutingTable {
  return testTable(revision, endpoints(n), spec);
}

async function put(p: ProxyProcess, t: RoutingTable) {
  return get(`${p.adminUrl}/v1/routing-table`, {
    method: 'PUT',
    body: JSON.stringify(t),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
  });
}

/** The endpoint the stateless hash would pick for `key` in `t` (what a proxy without persisted pins does). */
async function statelessChoice(t: RoutingTable, key: string): Promise<string> {
  const { compileTable } = await import('../../proxy/src/routing/compiled-table.ts');
  const { digest, pickTop } = await import('../../proxy/src/routing/rendezvous.ts');
  const c = compileTable(t, undefined, Date.now());
  return (c.endpoints[pickTop(digest(key), c.endpoints, () => true)] as { id: string }).id;
}

describe('persisted pins survive a scale-up', () => {
  let p: ProxyProcess;
  beforeAll(async () => {
    // A generous store timeout, so a loaded machine cannot turn a lookup into a fallback here.
    p = await startProxy([
      '--admin-token-file',
      tokenFile,
      '--session-store',
      store.writeSecretDir(),
      '--session-store-timeout',
      '1s',
    ]);
    proxies.push(p);
  });

  it.each([
    {
      desc: 'Header',
      spec: { affinity: { type: 'Header' } },
      clients: Array.from({ length: 30 }, (_, i) => `user-${i}`),
      fresh: Array.from({ length: 30 }, (_, i) => `newcomer-${i}`),
      send: (url: string, c: string) => get(url, { headers: { 'x-session-id': c } }),
      keyOf: (c: string) => c,
      revision: 1,
    },
    {
      desc: 'ClientIP',
      spec: { affinity: { type: 'ClientIP', clientIP: { ipv4PrefixLength: 32 } } },
      clients: Array.from({ length: 16 }, (_, i) => `127.0.1.${i + 1}`),
      fresh: Array.from({ length: 16 }, (_, i) => `127.0.2.${i + 1}`),
      send: (url: string, c: string) => get(url, { from: c }),
      keyOf: (c: string) => c,
      revision: 3,
    },
  ])('$desc: pinned clients stay after endpoints are added; new clients reach the new ones', async (t) => {
    const spec = { ...t.spec, sessionStore: { persistPins: true, pinTimeout: '10m' } };
    const small = table(t.revision, 2, spec);
    const big = table(t.revision + 1, 4, spec);
    expect((await put(p, small)).status).toBe(200);
    const writes = () => metricValue(p, 'tether_proxy_session_store_writes_total', { result: 'ok' });
    const writesBefore = await writes();
    const pinned = new Map<string, string>();
    for (const c of t.clients) {
      const r = await t.send(`${p.url}/`, c);
      expect(r.status).toBe(200);
      pinned.set(c, r.endpoint as string);
    }
    // Pins are written after each response, fire-and-forget: all of them are in before the scale-up.
    await waitFor(
      async () => (await writes()) - writesBefore >= t.clients.length,
      5_000,
      'every pin written',
    );
    // Without the store some of these clients would move: the stateless hash over 4 endpoints differs.
    let wouldMove = 0;
    for (const [c, ep] of pinned) if ((await statelessChoice(big, t.keyOf(c))) !== ep) wouldMove++;
    expect(wouldMove).toBeGreaterThan(0);

    expect((await put(p, big)).status).toBe(200);
    expect(await servedRevision(p)).toBe(t.revision + 1);
    for (const [c, ep] of pinned) expect((await t.send(`${p.url}/`, c)).endpoint, c).toBe(ep);
    const added = new Set(
      endpoints(4)
        .slice(2)
        .map((e) => e.name),
    );
    let onNew = 0;
    for (const c of t.fresh) {
      const r = await t.send(`${p.url}/`, c);
      expect(r.status).toBe(200);
      if (added.has(r.endpoint as string)) onNew++;
    }
    // About half of the newcomers (2 of 4 endpoints are new); 4 is far below that.
    expect(onNew).toBeGreaterThanOrEqual(4);
    expect(await metricValue(p, 'tether_proxy_session_store_fallbacks_total')).toBe(0);
  });
});

describe('the mounted Secret changes', () => {
  it('the proxy re-reads it and connects to the Sentinels it names now', async () => {
    const { mkdirSync, writeFileSync, renameSync } = await import('node:fs');
    const { freePort } = await import('../../tools/free-port.ts');
    const dir = `${s.dir}/secret-reload`;
    mkdirSync(dir);
    const values = store.secretValues();
    for (const [k, v] of Object.entries(values)) writeFileSync(`${dir}/${k}`, v);
    // First a Sentinel address where nothing listens (a replaced pod's old IP).
    writeFileSync(`${dir}/sentinels`, `127.0.0.1:${await freePort()}`);
    const p = await startProxy(['--session-store', dir]);
    proxies.push(p);
    await new Promise((r) => setTimeout(r, 500));
    expect(await metricValue(p, 'tether_proxy_session_store_up')).toBe(0);
    // As kubelet does: a new file renamed over the old one.
    writeFileSync(`${dir}/.sentinels.new`, values.sentinels as string);
    renameSync(`${dir}/.sentinels.new`, `${dir}/sentinels`);
    await waitFor(
      async () => (await metricValue(p, 'tether_proxy_session_store_up')) === 1,
      10_000,
      'connected through the new Sentinels',
    );
    expect(p.logs.some((l) => l.includes('session store connection reloaded'))).toBe(true);
  });
});

describe('a proxy without --session-store', () => {
  it('refuses Learn and persisted-pin tables with 400 and keeps serving the last good one', async () => {
    const p = await startProxy(['--admin-token-file', tokenFile]);
    proxies.push(p);
    expect((await put(p, table(1, 2, {}))).status).toBe(200);
    const learn = await put(p, table(2, 2, { affinity: { type: 'Learn' } }));
    expect(learn.status).toBe(400);
    expect(learn.text).toMatch(/Learn needs the session store/);
    const persisted = await put(
      p,
      table(2, 2, { affinity: { type: 'Header' }, sessionStore: { persistPins: true } }),
    );
    expect(persisted.status).toBe(400);
    expect(persisted.text).toMatch(/persistPins needs the session store/);
    expect(await servedRevision(p)).toBe(1);
    expect((await get(`${p.url}/`)).status).toBe(200);
    expect(await metricValue(p, 'tether_proxy_routing_table_rejections_total', { reason: 'invalid' })).toBe(
      2,
    );
  });

  it('exits 2 on a Learn pool file', async () => {
    const config = s.write('learn.yaml', poolYaml(endpoints(2), { affinity: { type: 'Learn' } }));
    await expect(startProxy(['--config', config])).rejects.toThrow(
      /exited with 2[\s\S]*Learn needs the session store/,
    );
  });

  it.each([
    {
      desc: 'a missing directory',
      files: undefined,
      want: /exited with 2[\s\S]*--session-store \S+: ENOENT/,
    },
    // Without sentinels (not published yet) the proxy waits for them, but only when the rest is right.
    {
      desc: 'a Secret without sentinels and with a bad masterName',
      files: { masterName: 'no spaces allowed' },
      want: /exited with 2[\s\S]*--session-store \S+:[\s\S]*masterName/,
    },
    {
      desc: 'a bad sentinel address',
      files: { masterName: 'm', sentinels: '127.0.0.1:26379,nope' },
      want: /exited with 2[\s\S]*"nope" is not host:port/,
    },
  ])('exits 2 on --session-store with $desc', async ({ files, want }) => {
    const dir = `${s.dir}/secret-${Math.random().toString(36).slice(2)}`;
    if (files !== undefined) {
      const { mkdirSync, writeFileSync } = await import('node:fs');
      mkdirSync(dir);
      for (const [k, v] of Object.entries(files)) writeFileSync(`${dir}/${k}`, v);
    }
    await expect(startProxy(['--session-store', dir])).rejects.toThrow(want);
  });
});
