/**
 * Fault suite: routing-table swaps and bad tables (issue 7, items 2 and 3).
 * A swap while a request waits on a connect must not crash the process; a
 * table that cannot be applied leaves the last good one serving.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compileTable } from '../../proxy/src/routing/compiled-table.ts';
import { decideByKey } from '../../proxy/src/routing/pick-endpoint.ts';
import {
  type ChildEndpoint,
  type FaultBackend,
  fillBacklog,
  startBlackhole,
  startFaultBackend,
} from '../helpers/fault-backend.ts';
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

let backends: FaultBackend[] = [];
let holes: ChildEndpoint[] = [];
let proxy: ProxyProcess | undefined;
let s: Scratch | undefined;
const TOKEN = 'swap-token';
const HEADER_AFFINITY = { affinity: { type: 'Header', header: { name: 'X-Key' } } };

afterEach(async () => {
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.stop()));
  await Promise.all(holes.map((h) => h.kill()));
  s?.cleanup();
  proxy = undefined;
  backends = [];
  holes = [];
});

async function put(p: ProxyProcess, table: unknown): Promise<{ status: number; text: string }> {
  const r = await get(`${p.adminUrl}/v1/routing-table`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(table),
  });
  return { status: r.status, text: r.text };
}

async function adminProxy(extra: string[] = []): Promise<ProxyProcess> {
  s = scratch();
  proxy = await startProxy(['--admin-token-file', s.write('token', TOKEN), ...extra]);
  return proxy;
}

/** A Header-affinity key whose first choice in the table of `eps` is `want` (the pure routing core decides). */
function keyLandingOn(eps: TestEndpoint[], want: string): string {
  const t = compileTable(testTable(1, eps, HEADER_AFFINITY), undefined, Date.now());
  const all = { isHealthy: () => true, inflight: () => 0 };
  for (let i = 0; i < 1000; i++) {
    if (decideByKey(t, `k${i}`, undefined, all, Date.now(), () => 'r').endpoint?.id === want) return `k${i}`;
  }
  throw new Error(`no key lands on ${want}`);
}

describe('table swaps in the middle of a connect', () => {
  it('the table shrinks while a connect is pending, then the connect fails: no crash, the request is served', async () => {
    const a = await startFaultBackend('sw-a');
    const b = await startFaultBackend('sw-b');
    backends.push(a, b);
    const hole = await startBlackhole();
    holes.push(hole);
    await fillBacklog(hole.port);
    const p = await adminProxy(['--connect-timeout', '1500ms']);
    // The blackhole is last: its index is beyond the shrunk table.
    const eps = [
      { name: 'sw-a', port: a.port },
      { name: 'sw-b', port: b.port },
      { name: 'sw-hole', port: hole.port },
    ];
    expect((await put(p, testTable(1, eps, HEADER_AFFINITY))).status).toBe(200);
    const key = keyLandingOn(eps, 'sw-hole');
    const pending = get(`${p.url}/pending`, { headers: { 'x-key': key } });
    await new Promise((r) => setTimeout(r, 300));
    expect((await put(p, testTable(2, [{ name: 'sw-a', port: a.port }], HEADER_AFFINITY))).status).toBe(200);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(r.endpoint).toBe('sw-a');
    // Still alive and serving.
    expect((await get(`${p.url}/after`, { headers: { 'x-key': key } })).status).toBe(200);
    expect(p.child.exitCode).toBeNull();
  }, 30_000);

  it('the table grows and reorders while a connect is pending: the redispatch lands on a live endpoint', async () => {
    const a = await startFaultBackend('sw-a');
    const c = await startFaultBackend('sw-c');
    backends.push(a, c);
    const hole = await startBlackhole();
    holes.push(hole);
    await fillBacklog(hole.port);
    const p = await adminProxy(['--connect-timeout', '1500ms']);
    const eps = [
      { name: 'sw-hole', port: hole.port },
      { name: 'sw-a', port: a.port },
    ];
    expect((await put(p, testTable(1, eps, HEADER_AFFINITY))).status).toBe(200);
    const key = keyLandingOn(eps, 'sw-hole');
    const pending = get(`${p.url}/pending`, { headers: { 'x-key': key } });
    await new Promise((r) => setTimeout(r, 300));
    // A new endpoint appears in front and the hole takes sw-a's old index:
    // an index of the old table would now name the hole.
    const next = [{ name: 'sw-c', port: c.port }, eps[0] as TestEndpoint, { name: 'sw-a', port: a.port }];
    expect((await put(p, testTable(2, next, HEADER_AFFINITY))).status).toBe(200);
    const r = await pending;
    expect(r.status).toBe(200);
    expect(['sw-a', 'sw-c']).toContain(r.endpoint);
    expect(p.child.exitCode).toBeNull();
  }, 30_000);
});

describe('a table is applied whole or not at all', () => {
  it.each([
    { desc: 'a URL', address: 'http://evil/' },
    { desc: 'an IPv6 address with a zone', address: 'fe80::1%eth0' },
    { desc: 'a host name', address: 'localhost' },
    { desc: 'an IPv4 address with a port', address: '127.0.0.1:80' },
  ])(
    'admin PUT of $desc as an address: 400 naming the field, the last good table keeps serving',
    async ({ address }) => {
      const a = await startFaultBackend('ok-a');
      backends.push(a);
      const p = await adminProxy();
      expect((await put(p, testTable(1, [{ name: 'ok-a', port: a.port }]))).status).toBe(200);
      const bad = testTable(1, [{ name: 'ok-a', port: a.port }]);
      const table = { ...bad, revision: 2, endpoints: [{ ...bad.endpoints[0], address }] };
      const r = await put(p, table);
      expect(r.status).toBe(400);
      expect(r.text).toContain('endpoints[0].address');
      expect(await servedRevision(p)).toBe(1);
      for (let i = 0; i < 5; i++) expect((await get(`${p.url}/still${i}`)).endpoint).toBe('ok-a');
      expect(p.child.exitCode).toBeNull();
    },
  );

  it('a pool file with a zoned IPv6 address is rejected and logged; the last good table keeps serving', async () => {
    const a = await startFaultBackend('file-a');
    backends.push(a);
    s = scratch();
    const config = s.write('pool.yaml', poolYaml([{ name: 'file-a', port: a.port }]));
    proxy = await startProxy(['--config', config]);
    const p = proxy;
    expect(await servedRevision(p)).toBe(1);
    s.write('pool.yaml', poolYaml([{ name: 'file-a', port: a.port, address: 'fe80::1%eth0' }]));
    await waitFor(() => p.logs.some((l) => l.includes('pool file rejected')), 5_000, 'the rejection');
    expect(await servedRevision(p)).toBe(1);
    for (let i = 0; i < 5; i++) expect((await get(`${p.url}/still${i}`)).endpoint).toBe('file-a');
    expect(p.child.exitCode).toBeNull();
  });
});
