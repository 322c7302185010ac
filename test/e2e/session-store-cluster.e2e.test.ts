// The replicated session store on the test cluster (issue 11): the operator
// provisions Valkey servers and Sentinels (played by Debian's redis-server and
// redis-sentinel, bound to their pod IPs by the pod runner), wires them by pod
// IP, repairs the wiring when the primary's pod is replaced, and publishes it
// all in the pool's status and Secret. The operator runs as a process of this
// test (inside the cluster's network namespace) under exactly operator/rbac.yaml.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeKeyOf } from '../../proxy/src/routing/learn.ts';
import {
  createSessionStoreClient,
  parseSessionStoreConnection,
  type SessionStoreConnection,
} from '../../proxy/src/session-store/connection.ts';
import {
  apply,
  assertPodAddress,
  cluster,
  listPods,
  type PodJson,
  podLog,
  podPids,
  runnerDir,
  TETHER_IMAGE,
  testBackendDeployment,
} from './cluster-support.ts';
import { installCrd, type OperatorProcess, operatorIdentity, startOperator } from './operator-harness.ts';
import { eventually, type Identity, kubectl } from './support.ts';

const NS = `sst-${Math.random().toString(36).slice(2, 7)}`;
const POOL = 'cart';
let id: Identity;
let op: OperatorProcess;
const k = (args: string[]) => kubectl(cluster(), ['-n', NS, ...args]);
const json = async <T>(args: string[]): Promise<T> =>
  JSON.parse((await k([...args, '-o', 'json'])).stdout) as T;

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface StoreStatus {
  secretName: string;
  masterName: string;
  primary?: { pod: string; ip?: string };
  replicas?: Array<{ pod: string; ip?: string; linked: boolean }>;
  sentinels?: Array<{ pod: string; ip?: string; monitoring: boolean }>;
  conditions?: Cond[];
}
interface Pool {
  metadata: { uid: string };
  status?: {
    conditions?: Cond[];
    sessionStore?: StoreStatus;
    proxies?: { desired: number; inSync: number };
    endpoints?: { ready: number };
  };
}
const getPool = () => json<Pool>(['get', 'sbp', POOL]);
const storeReady = (p: Pool) => p.status?.sessionStore?.conditions?.find((c) => c.type === 'Ready');

/** A plain client to one pod (no Sentinel), bounded; the caller quits it. */
function podClient(ip: string, port: number, password: string): Redis {
  assertPodAddress(ip);
  const c = new Redis({
    host: ip,
    port,
    password,
    lazyConnect: true,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on('error', () => {});
  return c;
}
async function ask<T>(ip: string, port: number, password: string, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = podClient(ip, port, password);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}
const field = (info: string, name: string) => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim();

/** The Secret's values, decoded. */
async function secretValues(): Promise<Record<string, string>> {
  const s = await json<{ data: Record<string, string> }>(['get', 'secret', `${POOL}-session-store`]);
  return Object.fromEntries(
    Object.entries(s.data).map(([key, v]) => [key, Buffer.from(v, 'base64').toString()]),
  );
}

const livePods = async (component: string): Promise<PodJson[]> =>
  (await listPods(NS, `tether.dev/session-store=${POOL},app.kubernetes.io/component=${component}`))
    .filter((p) => !p.metadata.deletionTimestamp && p.status.podIP)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));

/** Roles as the pods themselves report them: primary pod, replicas linked to it, Sentinels naming it. */
async function rolesFromPods(password: string): Promise<{
  primary: string | undefined;
  linked: string[];
  sentinelsAgreeing: number;
}> {
  const servers = await livePods('server');
  const infos = await Promise.all(
    servers.map((p) =>
      ask(p.status.podIP as string, 6379, password, (c) => c.info('replication')).catch(() => ''),
    ),
  );
  const primaries = servers.filter((_, i) => field(infos[i] as string, 'role') === 'master');
  const primary = primaries.length === 1 ? primaries[0] : undefined;
  const linked = servers
    .filter(
      (_, i) =>
        field(infos[i] as string, 'role') === 'slave' &&
        field(infos[i] as string, 'master_host') === primary?.status.podIP &&
        field(infos[i] as string, 'master_link_status') === 'up',
    )
    .map((p) => p.metadata.name);
  const sentinels = await livePods('sentinel');
  const views = await Promise.all(
    sentinels.map((p) =>
      ask(p.status.podIP as string, 26379, password, (c) =>
        c.call('SENTINEL', 'get-master-addr-by-name', `${NS}-${POOL}`),
      ).catch(() => null),
    ),
  );
  const sentinelsAgreeing = views.filter(
    (v) => Array.isArray(v) && v[0] === primary?.status.podIP && v[1] === '6379',
  ).length;
  return { primary: primary?.metadata.name, linked, sentinelsAgreeing };
}

/** The pool's live proxy pods with an IP, by name. */
const proxyPods = async (): Promise<PodJson[]> =>
  (await listPods(NS, `tether.dev/pool=${POOL}`))
    .filter((p) => !p.metadata.deletionTimestamp && p.status.podIP)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));

/** GET a text body from a pod (inside the cluster's network namespace only), 2 s bound. */
async function getText(ip: string, port: number, path: string): Promise<string> {
  assertPodAddress(ip);
  const res = await fetch(`http://${ip}:${port}${path}`, { signal: AbortSignal.timeout(2_000) });
  return res.text();
}

/** One request through a proxy pod, with the client's session cookie when it has one. */
async function viaProxy(
  ip: string,
  cookie?: string,
): Promise<{ status: number; endpoint: string; setCookie: string[] }> {
  assertPodAddress(ip);
  const res = await fetch(`http://${ip}:8080/`, {
    headers: cookie === undefined ? {} : { cookie },
    signal: AbortSignal.timeout(5_000),
  });
  const body = (await res.json().catch(() => ({}))) as { endpoint?: string };
  return { status: res.status, endpoint: body.endpoint ?? '', setCookie: res.headers.getSetCookie() };
}

/**
 * Expects a request with `cookie` through the proxy at `ip` to reach `want`. On a miss, the
 * message carries the proxy's store fallbacks: a lookup slower than the proxy's 50 ms store
 * timeout (a loaded machine) is pinned by consistent hashing, by design.
 */
async function expectPinned(ip: string, cookie: string, want: string): Promise<void> {
  const got = (await viaProxy(ip, cookie)).endpoint;
  if (got === want) return;
  const fallbacks = (await getText(ip, 9901, '/metrics'))
    .split('\n')
    .filter((l) => l.startsWith('tether_proxy_session_store_fallbacks_total'))
    .join('; ');
  expect(got, `through ${ip}; store fallbacks: ${fallbacks || 'none'}`).toBe(want);
}

/**
 * A learned client sending a GET every 100 ms through each proxy in turn, until stopped (at
 * most 1,000 requests and 120 s, also when the test fails before stopping it): what it got,
 * for a test that breaks the store meanwhile.
 */
function startTraffic(ips: string[]): {
  stop: () => Promise<{ answers: number; failures: string[]; maxMs: number; offPin: number }>;
} {
  let stopped = false;
  const result = { answers: 0, failures: [] as string[], maxMs: 0, offPin: 0 };
  const until = Date.now() + 120_000;
  const loop = (async () => {
    const first = await viaProxy(ips[0] as string);
    const cookie = first.setCookie.find((c) => c.startsWith('JSESSIONID='))?.split(';')[0] as string;
    for (let i = 0; !stopped && i < 1_000 && Date.now() < until; i++) {
      const ip = ips[i % ips.length] as string;
      const t = Date.now();
      try {
        const r = await viaProxy(ip, cookie);
        if (r.status !== 200) result.failures.push(`${ip}: ${r.status}`);
        else if (r.endpoint !== first.endpoint) result.offPin++;
      } catch (err) {
        result.failures.push(`${ip}: ${(err as Error).message}`);
      }
      result.answers++;
      result.maxMs = Math.max(result.maxMs, Date.now() - t);
      await new Promise((r) => setTimeout(r, 100));
    }
  })().catch((err: unknown) => {
    result.failures.push(`the first request: ${(err as Error).message}`);
  });
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return result;
    },
  };
}

/** Cordons a Node (new pods go elsewhere, with IPs from the other Node's range); returns the undo. */
async function cordon(node: string): Promise<() => Promise<void>> {
  await kubectl(cluster(), ['cordon', node]);
  return async () => {
    await kubectl(cluster(), ['uncordon', node]);
  };
}

beforeAll(async () => {
  await installCrd();
  await kubectl(cluster(), ['create', 'namespace', NS]);
  id = await operatorIdentity(NS);
  op = await startOperator({
    kubeconfig: id.kubeconfig,
    leaseNamespace: NS,
    identity: 'op-store',
    args: [`--namespaces=${NS}`, `--proxy-image=${TETHER_IMAGE}`, '--leader-elect=false'],
  });
  // The app issues its own session cookie, as a Java app does JSESSIONID: what Learn pins on.
  await apply(...testBackendDeployment('shop', NS, 2, { args: ['--session-cookie=JSESSIONID'] }));
});

afterAll(async () => {
  await op?.stop();
  // The operator's log beside the pods' (kept with TETHER_E2E_KEEP=1).
  if (op) writeFileSync(join(cluster().runDir, `operator-${NS}.log`), `${op.logs.join('\n')}\n`);
  await kubectl(cluster(), ['delete', 'namespace', NS, '--wait=false']).catch(() => {});
});

describe('the session store on the test cluster', () => {
  let conn: SessionStoreConnection;
  let password: string;

  it('a pool with the store on gets a primary, 2 linked replicas and 3 agreeing Sentinels; a write through the Secret works', async () => {
    const t0 = Date.now();
    await apply({
      apiVersion: 'tether.dev/v1alpha1',
      kind: 'StickyBackendPool',
      metadata: { name: POOL, namespace: NS },
      spec: {
        backend: { service: { name: 'shop', port: 'http' } },
        affinity: { type: 'Learn', learn: { cookieName: 'JSESSIONID', timeout: '10m' } },
        proxy: { mode: 'Managed', replicas: 2 },
        sessionStore: { enabled: true, replicas: 2, sentinels: 3, writeMode: 'Sync' },
      },
    });
    const pool = await eventually(
      async () => {
        const p = await getPool();
        return storeReady(p)?.status === 'True' ? p : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500, what: 'status.sessionStore Ready' },
    );
    process.stderr.write(`[e2e] session store Ready ${Date.now() - t0} ms after the pool was applied\n`);
    const st = pool.status?.sessionStore as StoreStatus;
    expect(st.secretName).toBe(`${POOL}-session-store`);
    expect(st.masterName).toBe(`${NS}-${POOL}`);
    expect(st.primary?.pod).toBe(`${POOL}-store-0`);
    expect(st.replicas?.map((r) => [r.pod, r.linked])).toEqual([
      [`${POOL}-store-1`, true],
      [`${POOL}-store-2`, true],
    ]);
    expect(st.sentinels?.every((s) => s.monitoring)).toBe(true);
    expect(st.sentinels).toHaveLength(3);

    // The Secret: the keys of connection.ts, Sentinel pod IPs, the majority WAIT.
    const values = await secretValues();
    conn = parseSessionStoreConnection(values);
    password = conn.password;
    expect(password.length).toBeGreaterThanOrEqual(24);
    expect(conn.masterName).toBe(`${NS}-${POOL}`);
    expect(conn.writeMode).toBe('Sync');
    expect(conn.waitReplicas).toBe(1);
    const sentinelIps = (await livePods('sentinel')).map((p) => p.status.podIP);
    expect(conn.sentinels.map((s) => `${s.host}:${s.port}`).sort()).toEqual(
      sentinelIps.map((ip) => `${ip}:26379`).sort(),
    );

    // The pods agree with the status.
    const roles = await rolesFromPods(password);
    expect(roles).toEqual({
      primary: `${POOL}-store-0`,
      linked: [`${POOL}-store-1`, `${POOL}-store-2`],
      sentinelsAgreeing: 3,
    });

    // A write through the Secret's connection (Sentinel-aware client), acknowledged by a replica.
    for (const s of conn.sentinels) assertPodAddress(s.host);
    const client = createSessionStoreClient(conn, { connectTimeoutMs: 2_000, commandTimeoutMs: 2_000 });
    client.on('error', () => {});
    try {
      await client.set('e2e:session', 'before-failover');
      const acked = Number(await client.call('WAIT', String(conn.waitReplicas), String(conn.waitTimeoutMs)));
      expect(acked).toBeGreaterThanOrEqual(conn.waitReplicas);
      expect(await client.get('e2e:session')).toBe('before-failover');
    } finally {
      client.disconnect();
    }
  });

  it('the provisioned objects have the expected shape and are owned by the pool; the proxies get the Secret', async () => {
    const { metadata } = await getPool();
    const owned = (o: { metadata: { ownerReferences?: Array<Record<string, unknown>> } }) =>
      expect(o.metadata.ownerReferences).toEqual([
        expect.objectContaining({
          kind: 'StickyBackendPool',
          name: POOL,
          uid: metadata.uid,
          controller: true,
        }),
      ]);
    type Sts = {
      metadata: { ownerReferences?: Array<Record<string, unknown>> };
      spec: {
        replicas: number;
        template: { spec: { affinity?: Record<string, unknown>; containers: Array<{ image: string }> } };
      };
    };
    const servers = await json<Sts>(['get', 'statefulset', `${POOL}-store`]);
    const sentinels = await json<Sts>(['get', 'statefulset', `${POOL}-sentinel`]);
    owned(servers);
    owned(sentinels);
    expect(servers.spec.replicas).toBe(3);
    expect(sentinels.spec.replicas).toBe(3);
    expect(servers.spec.template.spec.containers[0]?.image).toBe('docker.io/valkey/valkey:8.1');
    expect(servers.spec.template.spec.affinity).toHaveProperty(
      'podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution',
    );
    for (const svc of [`${POOL}-store`, `${POOL}-sentinel`]) {
      const s = await json<{ metadata: never; spec: { clusterIP: string } }>(['get', 'service', svc]);
      owned(s);
      expect(s.spec.clusterIP).toBe('None');
    }
    const cm = await json<{ metadata: never; data: Record<string, string> }>([
      'get',
      'configmap',
      `${POOL}-store`,
    ]);
    owned(cm);
    expect(cm.data['valkey.conf']).toMatch(/^min-replicas-to-write 1$/m);
    const pdb = await json<{ metadata: never; spec: { maxUnavailable: number } }>([
      'get',
      'poddisruptionbudget',
      `${POOL}-store`,
    ]);
    owned(pdb);
    expect(pdb.spec.maxUnavailable).toBe(1);
    owned(await json(['get', 'secret', `${POOL}-session-store`]));
    // Every server enforces it (set from the config, kept by CONFIG SET).
    for (const p of await livePods('server')) {
      const got = await ask(p.status.podIP as string, 6379, password, (c) =>
        c.call('CONFIG', 'GET', 'min-replicas-to-write'),
      );
      expect(got).toEqual(['min-replicas-to-write', '1']);
    }
    // The managed proxy: --session-store and the Secret's files where the flag points.
    const dep = await json<{
      spec: { template: { spec: { containers: Array<{ args: string[] }> } } };
    }>(['get', 'deployment', `${POOL}-proxy`]);
    expect(dep.spec.template.spec.containers[0]?.args).toContain('--session-store=/etc/tether/session-store');
    const proxy = await eventually(
      async () => {
        const [p] = await listPods(NS, `tether.dev/pool=${POOL}`);
        const dir = p && runnerDir(p.metadata);
        return dir && existsSync(join(dir, 'root/etc/tether/session-store/sentinels')) ? dir : undefined;
      },
      { timeoutMs: 30_000, what: 'the session store files in the proxy pod' },
    );
    const mounted = (key: string) => readFileSync(join(proxy, 'root/etc/tether/session-store', key), 'utf8');
    expect(mounted('masterName')).toBe(`${NS}-${POOL}`);
    expect(mounted('password')).toBe(password);
    expect(existsSync(join(proxy, 'root/etc/tether/admin-token'))).toBe(true);
  });

  it('the managed proxies start with --session-store, hold the table; the pool is Ready, never PushFailed', async () => {
    const t0 = Date.now();
    const pool = await eventually(
      async () => {
        const p = await getPool();
        const ready = p.status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.status === 'True' && p.status?.proxies?.inSync === 2 && p.status.endpoints?.ready === 2
          ? p
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'the pool Ready with 2 proxies in sync and 2 endpoints' },
    );
    process.stderr.write(
      `[e2e] Learn pool Ready, 2 proxies in sync, ${Date.now() - t0} ms after the store\n`,
    );
    expect(pool.status?.conditions?.find((c) => c.type === 'Degraded')).toMatchObject({ status: 'False' });
    const events = await json<{ items: Array<{ reason: string }> }>(['get', 'events']);
    expect(events.items.map((e) => e.reason)).not.toContain('PushFailed');
    for (const p of await proxyPods()) {
      // Not crash-looping: each proxy process was started once, and it is connected to the store.
      expect(podPids(p.metadata)).toHaveLength(1);
      const metrics = await getText(p.status.podIP as string, 9901, '/metrics');
      expect(metrics).toMatch(/^tether_proxy_session_store_up 1$/m);
    }
  });

  it('Learn: a pin learned from the app cookie is honoured by both proxy replicas and kept in the store; deleting the pinned pod moves the client, which then sticks', async () => {
    const [a, b] = (await proxyPods()).map((p) => p.status.podIP as string) as [string, string];
    const pool = `${NS}/${POOL}`;
    const client = createSessionStoreClient(parseSessionStoreConnection(await secretValues()), {
      connectTimeoutMs: 2_000,
      commandTimeoutMs: 2_000,
    });
    client.on('error', () => {});
    try {
      // Six clients (2 endpoints): the rendezvous choice of a cookie value alone would
      // agree with the endpoint that issued it for all six only once in 64.
      const clients: Array<{ cookie: string; issuer: string }> = [];
      for (let i = 0; i < 6; i++) {
        const first = await viaProxy(i % 2 === 0 ? a : b);
        const cookie = first.setCookie.find((c) => c.startsWith('JSESSIONID='))?.split(';')[0];
        expect(cookie, 'the app set its session cookie through the proxy').toBeDefined();
        clients.push({ cookie: cookie as string, issuer: first.endpoint });
      }
      const stored = async (cookie: string) =>
        client.get(storeKeyOf(pool, 'learn', cookie.slice('JSESSIONID='.length)));
      for (const c of clients) {
        // The proxy writes the learned pin after the response, fire-and-forget.
        await eventually(async () => (await stored(c.cookie)) === c.issuer, {
          timeoutMs: 10_000,
          what: `the learned pin of ${c.cookie} in the store`,
        });
        for (const ip of [a, b, a, b]) await expectPinned(ip, c.cookie, c.issuer);
      }
      // Keys are hashed: no cookie value is stored raw.
      const keys = await client.keys(`tether:{${pool}}:learn:*`);
      expect(keys.length).toBeGreaterThanOrEqual(clients.length);
      for (const c of clients) expect(keys.join(' ')).not.toContain(c.cookie.split('=')[1] as string);

      // The endpoint of the first client dies: the client moves, through either proxy, and stays.
      const victim = clients[0] as { cookie: string; issuer: string };
      const t0 = Date.now();
      await k(['delete', 'pod', victim.issuer, '--wait=false']);
      const moved = await eventually(
        async () => {
          const r = await viaProxy(a, victim.cookie).catch(() => undefined);
          return r !== undefined && r.status === 200 && r.endpoint !== victim.issuer ? r.endpoint : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100, what: 'the client answered by another endpoint' },
      );
      process.stderr.write(
        `[e2e] Learn: pinned pod deleted, client answered by ${moved} after ${Date.now() - t0} ms\n`,
      );
      await eventually(async () => (await stored(victim.cookie)) === moved, {
        timeoutMs: 10_000,
        what: 'the moved pin in the store',
      });
      for (const ip of [b, a, b, a]) await expectPinned(ip, victim.cookie, moved);
      // The Deployment replaces the pod: 2 endpoints again, and the moved client stays where it is.
      await eventually(
        async () => {
          const p = await getPool();
          return p.status?.endpoints?.ready === 2 && p.status.proxies?.inSync === 2;
        },
        { timeoutMs: 30_000, what: 'the replacement backend pod in the routing table' },
      );
      for (const ip of [a, b, a, b]) await expectPinned(ip, victim.cookie, moved);
      process.stderr.write(
        `[e2e] Learn: replacement pod in the table ${Date.now() - t0} ms after the delete; the moved client stayed\n`,
      );
    } finally {
      client.disconnect();
    }
  });

  it('deleting the primary pod: Sentinel promotes a replica, the operator wires the new pod back as a replica, the status follows', async () => {
    const before = await livePods('server');
    const old = before.find((p) => p.metadata.name === `${POOL}-store-0`) as PodJson;
    // Traffic through both proxies all along: the store's failover must never stall or fail it.
    const traffic = startTraffic((await proxyPods()).map((p) => p.status.podIP as string));
    const t0 = Date.now();
    // Its node cordoned, the new pod lands on the other node with a new IP: the Sentinels must
    // forget the old address. (Without, KWOK may hand the pod its old IP back: that path, a
    // detached server at the primary's address, is a unit test of the planner.)
    const release = await cordon(old.spec.nodeName as string);
    try {
      await k(['delete', 'pod', old.metadata.name, '--wait=false']);
      await eventually(async () => storeReady(await getPool())?.status === 'False', {
        timeoutMs: 30_000,
        intervalMs: 250,
        what: 'status.sessionStore Ready=False',
      });
      await eventually(
        async () =>
          (await livePods('server')).find(
            (p) => p.metadata.name === old.metadata.name && p.metadata.uid !== old.metadata.uid,
          ),
        { timeoutMs: 30_000, what: 'the StatefulSet recreating the pod' },
      );
    } finally {
      await release();
    }
    const degraded = await getPool();
    const reason = storeReady(degraded)?.reason;
    expect(['FailoverInProgress', 'StoreNotReady', 'ReplicasMissing', 'SentinelsDisagree']).toContain(reason);
    expect(degraded.status?.sessionStore?.conditions?.find((c) => c.type === 'Degraded')?.status).toBe(
      'True',
    );
    // The pool says so too (PushFailed comes first while a proxy cannot take its table).
    expect(degraded.status?.conditions?.find((c) => c.type === 'Degraded')?.status).toBe('True');
    process.stderr.write(
      `[e2e] store Degraded (${reason}) ${Date.now() - t0} ms after deleting the primary\n`,
    );

    const promoted = await eventually(
      async () => {
        const r = await rolesFromPods(password);
        return r.primary !== undefined && r.primary !== old.metadata.name && r.sentinelsAgreeing >= 2
          ? r.primary
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: 'a replica promoted by the Sentinels' },
    );
    process.stderr.write(`[e2e] ${promoted} promoted ${Date.now() - t0} ms after deleting the primary\n`);

    const pool = await eventually(
      async () => {
        const p = await getPool();
        return storeReady(p)?.status === 'True' ? p : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500, what: 'status.sessionStore Ready again' },
    );
    process.stderr.write(`[e2e] store Ready again ${Date.now() - t0} ms after deleting the primary\n`);
    const sent = await traffic.stop();
    process.stderr.write(
      `[e2e] during the failover: ${sent.answers} requests through the proxies, ${sent.failures.length} failed, slowest ${sent.maxMs} ms; ${sent.offPin} answered off the learned endpoint (store unavailable: consistent hashing)\n`,
    );
    expect(sent.failures).toEqual([]);
    expect(sent.answers).toBeGreaterThan(20);
    // Bounded by the store timeout (50 ms), never a connect timeout; 2 s leaves room for a loaded machine.
    expect(sent.maxMs).toBeLessThan(2_000);
    const st = pool.status?.sessionStore as StoreStatus;
    expect(st.primary?.pod).toBe(promoted);
    expect(st.replicas?.every((r) => r.linked)).toBe(true);
    expect(st.replicas?.map((r) => r.pod)).toContain(old.metadata.name);
    const after = await livePods('server');
    const recreated = after.find((p) => p.metadata.name === old.metadata.name) as PodJson;
    expect(recreated.metadata.uid).not.toBe(old.metadata.uid);
    expect(recreated.status.podIP).not.toBe(old.status.podIP);
    const roles = await rolesFromPods(password);
    expect(roles.primary).toBe(promoted);
    expect(roles.linked).toContain(old.metadata.name);
    expect(roles.linked).toHaveLength(2);
    expect(roles.sentinelsAgreeing).toBe(3);
    // The Sentinels forgot the dead address: each knows exactly the 2 live replicas.
    const liveAddrs = after.filter((p) => p.metadata.name !== promoted).map((p) => `${p.status.podIP}:6379`);
    for (const s of await livePods('sentinel')) {
      const reps = (await ask(s.status.podIP as string, 26379, password, (c) =>
        c.call('SENTINEL', 'REPLICAS', `${NS}-${POOL}`),
      )) as string[][];
      const addrs = reps.map((r) => `${r[r.indexOf('ip') + 1]}:${r[r.indexOf('port') + 1]}`);
      expect(addrs.sort()).toEqual([...liveAddrs].sort());
    }
    // Kubernetes Events say what happened.
    const events = await json<{ items: Array<{ reason: string; message: string }> }>(['get', 'events']);
    expect(events.items).toContainEqual(
      expect.objectContaining({
        reason: 'SessionStorePrimaryChanged',
        message: expect.stringContaining(promoted),
      }),
    );
    expect(events.items.map((e) => e.reason)).toContain('SessionStoreReady');
    // The Secret kept its password; the data written before the failover is there.
    const values = await secretValues();
    expect(values.password).toBe(password);
    const client = createSessionStoreClient(parseSessionStoreConnection(values), {
      connectTimeoutMs: 2_000,
      commandTimeoutMs: 2_000,
    });
    client.on('error', () => {});
    try {
      expect(await client.get('e2e:session')).toBe('before-failover');
    } finally {
      client.disconnect();
    }
  });

  it('a replaced Sentinel pod: the Secret lists the new IP, the Sentinels forget the old one, Ready again', async () => {
    const old = (await livePods('sentinel'))[0] as PodJson;
    const t0 = Date.now();
    const release = await cordon(old.spec.nodeName as string);
    let fresh: PodJson;
    try {
      await k(['delete', 'pod', old.metadata.name, '--wait=false']);
      fresh = await eventually(
        async () =>
          (await livePods('sentinel')).find(
            (p) => p.metadata.name === old.metadata.name && p.metadata.uid !== old.metadata.uid,
          ),
        { timeoutMs: 30_000, what: 'the StatefulSet recreating the Sentinel pod' },
      );
    } finally {
      await release();
    }
    expect(fresh.status.podIP).not.toBe(old.status.podIP);
    await eventually(
      async () => {
        const list = (await secretValues()).sentinels ?? '';
        return list.includes(`${fresh.status.podIP}:26379`) && !list.includes(`${old.status.podIP}:`);
      },
      { timeoutMs: 30_000, what: "the Secret's sentinels following the new IP" },
    );
    await eventually(async () => storeReady(await getPool())?.status === 'True', {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: 'status.sessionStore Ready after the Sentinel replacement',
    });
    process.stderr.write(`[e2e] Sentinel replaced: store Ready again after ${Date.now() - t0} ms\n`);
    // Every proxy followed each update of the Secret, to the final list of 3 Sentinels (its
    // directory is a symlink the kubelet swaps: a watch that stayed on the old one saw only one).
    for (const p of await proxyPods()) {
      await eventually(
        async () => {
          const reloads = [
            ...podLog(p.metadata, 'proxy').matchAll(/"session store connection reloaded","sentinels":(\d+)/g),
          ];
          return reloads.at(-1)?.[1] === '3';
        },
        { timeoutMs: 15_000, what: `${p.metadata.name} reloading the Secret's 3 Sentinels` },
      );
    }
    const sentinelIps = (await livePods('sentinel')).map((p) => p.status.podIP as string);
    for (const ip of sentinelIps) {
      const peers = (await ask(ip, 26379, password, (c) =>
        c.call('SENTINEL', 'SENTINELS', `${NS}-${POOL}`),
      )) as string[][];
      const addrs = peers.map((r) => r[r.indexOf('ip') + 1]).sort();
      expect(addrs).toEqual(sentinelIps.filter((x) => x !== ip).sort());
    }
  });

  it("the primary's process dies and restarts in its pod (same IP): it comes back detached, never as an empty master; a replica takes over within seconds; no write lost", async () => {
    const values = await secretValues();
    const client = createSessionStoreClient(parseSessionStoreConnection(values), {
      connectTimeoutMs: 2_000,
      commandTimeoutMs: 2_000,
    });
    client.on('error', () => {});
    try {
      await client.set('e2e:restart', 'acknowledged');
      expect(Number(await client.call('WAIT', '1', '2000'))).toBeGreaterThanOrEqual(1);
      const { primary } = await rolesFromPods(password);
      const pod = (await livePods('server')).find((p) => p.metadata.name === primary) as PodJson;
      const pid = podPids(pod.metadata).at(-1) as number;
      const t0 = Date.now();
      process.kill(pid, 'SIGKILL');
      // Sentinel alone notices a primary reporting itself a replica after ~25 s; the operator's
      // SENTINEL FAILOVER does it in a few.
      const promoted = await eventually(
        async () => {
          const r = await rolesFromPods(password);
          return r.primary !== undefined && r.primary !== primary && r.sentinelsAgreeing >= 2
            ? r.primary
            : undefined;
        },
        {
          timeoutMs: 20_000,
          intervalMs: 250,
          what: 'a replica promoted after the primary restarted in place',
        },
      );
      process.stderr.write(
        `[e2e] primary process killed: ${promoted} promoted after ${Date.now() - t0} ms\n`,
      );
      await eventually(async () => storeReady(await getPool())?.status === 'True', {
        timeoutMs: 60_000,
        intervalMs: 500,
        what: 'status.sessionStore Ready after the restart',
      });
      const again = (await livePods('server')).find((p) => p.metadata.name === primary) as PodJson;
      expect([again.metadata.uid, again.status.podIP]).toEqual([pod.metadata.uid, pod.status.podIP]);
      expect((await rolesFromPods(password)).linked).toContain(primary);
      expect(await client.get('e2e:restart')).toBe('acknowledged');
      expect(await client.get('e2e:session')).toBe('before-failover');
    } finally {
      client.disconnect();
    }
  });

  it('persisted Header pins (a small store: 1 server, 1 Sentinel): scaling the backend up from 2 to 4 moves no pinned client, new clients reach the new endpoints', async () => {
    await apply(...testBackendDeployment('grow', NS, 2));
    await apply({
      apiVersion: 'tether.dev/v1alpha1',
      kind: 'StickyBackendPool',
      metadata: { name: 'mini', namespace: NS },
      spec: {
        backend: { service: { name: 'grow', port: 'http' } },
        affinity: { type: 'Header', header: { name: 'X-Session-Id' } },
        proxy: { mode: 'Managed', replicas: 1 },
        sessionStore: { enabled: true, replicas: 0, sentinels: 1, persistPins: true, pinTimeout: '10m' },
      },
    });
    const t0 = Date.now();
    const miniReady = (endpoints: number) => async () => {
      const p = await json<Pool>(['get', 'sbp', 'mini']);
      return p.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' &&
        p.status.proxies?.inSync === 1 &&
        p.status.endpoints?.ready === endpoints &&
        storeReady(p)?.status === 'True'
        ? p
        : undefined;
    };
    await eventually(miniReady(2), {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: 'pool mini and its store Ready',
    });
    const [proxy] = (await listPods(NS, 'tether.dev/pool=mini')).filter(
      (p) => !p.metadata.deletionTimestamp && p.status.podIP,
    );
    const ip = proxy?.status.podIP as string;
    await eventually(
      async () => /^tether_proxy_session_store_up 1$/m.test(await getText(ip, 9901, '/metrics')),
      {
        timeoutMs: 20_000,
        what: 'the mini proxy connected to its store',
      },
    );
    process.stderr.write(
      `[e2e] persisted pins: pool and small store Ready, proxy connected ${Date.now() - t0} ms after the apply\n`,
    );
    const values = await json<{ data: Record<string, string> }>(['get', 'secret', 'mini-session-store']);
    const client = createSessionStoreClient(
      parseSessionStoreConnection(
        Object.fromEntries(
          Object.entries(values.data).map(([key, v]) => [key, Buffer.from(v, 'base64').toString()]),
        ),
      ),
      { connectTimeoutMs: 2_000, commandTimeoutMs: 2_000 },
    );
    client.on('error', () => {});
    const as = async (id: string) => {
      assertPodAddress(ip);
      const res = await fetch(`http://${ip}:8080/`, {
        headers: { 'x-session-id': id },
        signal: AbortSignal.timeout(5_000),
      });
      return ((await res.json()) as { endpoint: string }).endpoint;
    };
    try {
      const old = Array.from({ length: 20 }, (_, i) => `old-${i}`);
      const before = new Map<string, string>();
      for (const id of old) before.set(id, await as(id));
      await eventually(async () => (await client.keys(`tether:{${NS}/mini}:pin:*`)).length === old.length, {
        timeoutMs: 10_000,
        what: '20 persisted pins in the store',
      });
      await k(['scale', 'deployment', 'grow', '--replicas=4']);
      await eventually(miniReady(4), {
        timeoutMs: 60_000,
        intervalMs: 500,
        what: 'pool mini with 4 endpoints',
      });
      const after = new Map<string, string>();
      for (const id of old) after.set(id, await as(id));
      expect(after).toEqual(before);
      const grown = new Set([...before.values()]);
      const fresh = await Promise.all(Array.from({ length: 20 }, (_, i) => as(`new-${i}`)));
      // Rendezvous over 4 endpoints sends about half the new clients to the 2 new ones.
      expect(fresh.filter((e) => !grown.has(e)).length).toBeGreaterThan(0);
      process.stderr.write(
        `[e2e] persisted pins: 20 of 20 pinned clients kept their endpoint over 2 → 4; ${fresh.filter((e) => !grown.has(e)).length} of 20 new clients on the new endpoints\n`,
      );
    } finally {
      client.disconnect();
    }
    await k(['delete', 'deployment,service', 'grow', '--wait=false']);
  });

  it('turning the store off deletes its objects and takes --session-store from the proxies', async () => {
    const small = (enabled: boolean) => ({
      apiVersion: 'tether.dev/v1alpha1',
      kind: 'StickyBackendPool',
      metadata: { name: 'mini', namespace: NS },
      spec: {
        backend: { service: { name: 'shop', port: 'http' } },
        proxy: { mode: 'Managed', replicas: 1 },
        sessionStore: { enabled, replicas: 0, sentinels: 1 },
      },
    });
    const names = /mini-store|mini-sentinel|mini-session-store/;
    const listed = async () =>
      (await k(['get', 'statefulset,service,configmap,poddisruptionbudget,secret', '-o', 'name'])).stdout;
    await apply(small(true));
    await eventually(
      async () => {
        const p = await json<Pool>(['get', 'sbp', 'mini']);
        return p.status?.sessionStore !== undefined && (await listed()).match(/mini-sentinel/) !== null;
      },
      { timeoutMs: 30_000, what: 'the small store provisioned and in status' },
    );
    await apply(small(false));
    await eventually(async () => !names.test(await listed()), {
      timeoutMs: 30_000,
      what: 'the store objects deleted',
    });
    const p = await json<Pool>(['get', 'sbp', 'mini']);
    expect(p.status?.sessionStore).toBeUndefined();
    const dep = await json<{ spec: { template: { spec: { containers: Array<{ args: string[] }> } } } }>([
      'get',
      'deployment',
      'mini-proxy',
    ]);
    expect(dep.spec.template.spec.containers[0]?.args.join(' ')).not.toContain('--session-store');
    expect(await listed()).toMatch(/mini-tether/);
    await k(['delete', 'sbp', 'mini', '--wait=false']);
  });

  it('deleting the pool: the garbage collector removes the store objects and their pods', async () => {
    await k(['delete', 'sbp', POOL]);
    await eventually(
      async () => {
        const out = (
          await k(['get', 'statefulset,service,configmap,poddisruptionbudget,secret,pods', '-o', 'name'])
        ).stdout;
        return !/cart-store|cart-sentinel|cart-session-store/.test(out);
      },
      { timeoutMs: 60_000, what: 'store objects and pods gone' },
    );
  });
});
