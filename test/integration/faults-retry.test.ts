/**
 * Fault suite: an idempotent request whose connection breaks before any
 * response byte is retried once on a new connection, and a broken reused
 * keep-alive connection is not held against the endpoint (issue 7, item 4).
 * Bounded: a few thousand requests each. `bench/faults-under-load.ts`
 * measures the same at ~100k requests.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compileTable } from '../../proxy/src/routing/compiled-table.ts';
import { decideByKey } from '../../proxy/src/routing/pick-endpoint.ts';
import {
  type ChildEndpoint,
  type FaultBackend,
  type FaultBehaviour,
  startBackendProcess,
  startFaultBackend,
} from '../helpers/fault-backend.ts';
import { drive } from '../helpers/load-driver.ts';
import { testTable } from '../helpers/pools.ts';
import {
  get,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';

let backends: FaultBackend[] = [];
let children: ChildEndpoint[] = [];
let proxy: ProxyProcess | undefined;
let s: Scratch | undefined;

afterEach(async () => {
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.stop()));
  await Promise.all(children.map((c) => c.kill()));
  s?.cleanup();
  proxy = undefined;
  backends = [];
  children = [];
});

/** maxFails 1 and a long failTimeout: one failure wrongly counted takes an endpoint out for the rest of the test. */
const STRICT = { healthCheck: { passive: { maxFails: 1, failTimeout: '60s' } } };

async function proxyFor(ports: number[], spec: Record<string, unknown> = STRICT): Promise<ProxyProcess> {
  s = scratch();
  const keys = s.write('keys', `${Buffer.alloc(32, 7).toString('base64')}\n`);
  const config = s.write(
    'pool.yaml',
    poolYaml(
      ports.map((port, i) => ({ name: `ep-${i}`, port })),
      spec,
    ),
  );
  proxy = await startProxy(['--config', config, '--cookie-keys-file', keys]);
  return proxy;
}

async function healthy(p: ProxyProcess): Promise<number> {
  const m = (await get(`${p.adminUrl}/metrics`)).text;
  return m.split('\n').filter((l) => l.startsWith('tether_proxy_endpoint_healthy{') && l.endsWith(' 1'))
    .length;
}

async function retries(p: ProxyProcess): Promise<number> {
  const m = (await get(`${p.adminUrl}/metrics`)).text;
  return Number(/^tether_proxy_retries_total\{[^}]*\} (\d+)/m.exec(m)?.[1] ?? 0);
}

/** Answers, except that every `every`-th request arriving on a reused connection meets `fate` instead. */
function raceOnReuse(id: string, every: number, fate: 'close' | 'reset'): FaultBehaviour {
  let reused = 0;
  return (req) => {
    if (req.indexOnConnection > 0 && ++reused % every === 0) return { kind: fate };
    return { kind: 'respond', body: { endpoint: id, path: req.url } };
  };
}

describe('stale keep-alive connections', () => {
  it.each([
    { fate: 'close' as const, what: 'FIN' },
    { fate: 'reset' as const, what: 'RST' },
  ])(
    'endpoints that close ($what) a reused connection as a request arrives: 0 failed GETs, none marked down',
    async ({ fate }) => {
      backends = await Promise.all([0, 1, 2].map((i) => startFaultBackend(`ep-${i}`)));
      backends.forEach((b, i) => {
        b.setBehaviour(raceOnReuse(`ep-${i}`, 3, fate));
      });
      const p = await proxyFor(backends.map((b) => b.port));
      const r = await drive({ url: p.url, clients: 16, total: 3000, deadlineMs: 60_000 });
      expect(r.failures).toEqual({});
      expect(r.ok).toBe(3000);
      expect(await healthy(p)).toBe(3);
      expect(await retries(p)).toBeGreaterThan(0);
    },
    90_000,
  );

  it('a POST on a connection that breaks is not sent again: 502, and the endpoint saw it once', async () => {
    const b = await startFaultBackend('ep-0');
    backends = [b];
    b.setBehaviour((req) =>
      req.method === 'POST' && req.indexOnConnection > 0
        ? { kind: 'close' }
        : { kind: 'respond', body: { endpoint: 'ep-0', path: req.url } },
    );
    const p = await proxyFor([b.port]);
    // One GET opens a keep-alive connection; the POST reuses it.
    expect((await get(`${p.url}/warm`)).status).toBe(200);
    const r = await get(`${p.url}/order`, { method: 'POST', body: 'qty=1' });
    expect(r.status).toBe(502);
    expect(b.requests.filter((q) => q.method === 'POST')).toHaveLength(1);
    // A stale reused connection is no evidence against the endpoint.
    expect(await healthy(p)).toBe(1);
  });

  it('a new connection that the endpoint resets does count against it', async () => {
    const b = await startFaultBackend('ep-0', () => ({ kind: 'reset' }));
    backends = [b];
    const p = await proxyFor([b.port]);
    expect((await get(`${p.url}/x`)).status).toBe(502);
    expect(await healthy(p)).toBe(0);
  });
});

describe('an endpoint that dies as the retry goes out', () => {
  it('the retry on a new connection breaks too: the endpoint is marked down and the GET moves to the re-pin', async () => {
    const dying = await startFaultBackend('ep-0');
    const fine = await startFaultBackend('ep-1');
    backends = [dying, fine];
    // Answers its first request, then resets every later one, on any connection.
    let answered = 0;
    dying.setBehaviour((req) =>
      answered++ === 0 ? { kind: 'respond', body: { endpoint: 'ep-0', path: req.url } } : { kind: 'reset' },
    );
    const spec = { ...STRICT, affinity: { type: 'Header', header: { name: 'X-Key' } } };
    const p = await proxyFor([dying.port, fine.port], spec);
    const eps = [
      { name: 'ep-0', port: dying.port },
      { name: 'ep-1', port: fine.port },
    ];
    const t = compileTable(testTable(1, eps, spec), undefined, Date.now());
    const all = { isHealthy: () => true, inflight: () => 0 };
    const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find(
      (k) => decideByKey(t, k, undefined, all, Date.now(), () => 'r').endpoint?.id === 'ep-0',
    ) as string;
    expect((await get(`${p.url}/first`, { headers: { 'x-key': key } })).endpoint).toBe('ep-0');
    const r = await get(`${p.url}/second`, { headers: { 'x-key': key } });
    expect(r.status).toBe(200);
    expect(r.endpoint).toBe('ep-1');
    // Sent three times at most: the reused connection, one new connection, the re-pin.
    expect(dying.requests.filter((q) => q.url === '/second')).toHaveLength(2);
    expect(fine.requests.filter((q) => q.url === '/second')).toHaveLength(1);
  });
});

describe('an endpoint SIGKILLed under load', () => {
  it('32 keep-alive clients, 3 endpoint processes, one killed mid-run: 0 failed GETs', async () => {
    // 20 ms per answer keeps requests in flight on the victim when it dies.
    children = await Promise.all([0, 1, 2].map((i) => startBackendProcess(`ep-${i}`, 20)));
    const p = await proxyFor(
      children.map((c) => c.port),
      {},
    );
    let killed = false;
    const victim = children[1] as ChildEndpoint;
    const r = await drive({
      url: p.url,
      clients: 32,
      total: 4000,
      deadlineMs: 60_000,
      onProgress: (sent) => {
        if (!killed && sent >= 1500) {
          killed = true;
          void victim.kill('SIGKILL');
        }
      },
    });
    expect(killed).toBe(true);
    expect(r.failures).toEqual({});
    expect(r.ok).toBe(r.sent);
    expect(r.byEndpoint['ep-1']).toBeGreaterThan(0);
  }, 90_000);
});
