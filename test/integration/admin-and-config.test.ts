import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoutingTable } from '../../proxy/src/api/routing-table.ts';
import { type Backend, startBackends } from '../helpers/backends.ts';
import { testTable } from '../helpers/pools.ts';
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

let backends: Backend[];
let s: Scratch;
let pushed: ProxyProcess;
const TOKEN = 's3cret-token-for-tests';

function tableOf(revision: number, ids: string[] = backends.map((b) => b.id)): RoutingTable {
  const eps = backends.filter((b) => ids.includes(b.id)).map((b) => ({ name: b.id, port: b.port }));
  return testTable(revision, eps, {}, 'team/api');
}

async function put(body: unknown, token: string | null = TOKEN, contentType = 'application/json') {
  return get(`${pushed.adminUrl}/v1/routing-table`, {
    method: 'PUT',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'content-type': contentType, ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
  });
}

beforeAll(async () => {
  backends = await startBackends(2, 'adm');
  s = scratch();
  const tokenFile = s.write('token', `${TOKEN}\n`);
  pushed = await startProxy(['--admin-token-file', tokenFile]);
});

afterAll(async () => {
  await pushed?.stop();
  await Promise.all(backends.map((b) => b.kill()));
  s.cleanup();
});

describe('admin API (a proxy fed by the operator)', () => {
  it('before a table: not ready, 503 on the data plane, 404 on GET', async () => {
    expect((await get(`${pushed.adminUrl}/healthz`)).status).toBe(200);
    expect((await get(`${pushed.adminUrl}/readyz`)).status).toBe(503);
    const r = await get(`${pushed.url}/`);
    expect(r.status).toBe(503);
    expect(r.headers['x-tether-error']).toBe('TETHER_NO_TABLE');
    expect((await get(`${pushed.adminUrl}/v1/routing-table`)).status).toBe(404);
  });

  it.each([
    { desc: 'no token', token: null },
    { desc: 'wrong token', token: 'nope' },
    { desc: 'token prefix', token: TOKEN.slice(0, 5) },
  ])('PUT with $desc → 401', async ({ token }) => {
    const r = await put(tableOf(1), token);
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
  });

  it.each([
    { desc: 'not JSON', body: '{nope', want: /not JSON/ },
    { desc: 'wrong schema version', body: { ...{ schemaVersion: 2 } }, want: /schemaVersion/ },
    { desc: 'negative revision', body: 'NEGREV', want: /revision/ },
    { desc: 'duplicate endpoint ids', body: 'DUP', want: /duplicate endpoint id/ },
    // This proxy runs without --session-store: Learn's pins would have nowhere to live.
    { desc: 'Learn without --session-store', body: 'LEARN', want: /Learn needs the session store/ },
  ])('PUT of a bad table ($desc) → 400 with the validation error', async ({ body, want }) => {
    let payload: unknown = body;
    if (body === 'NEGREV') payload = { ...tableOf(1), revision: -3 };
    if (body === 'DUP')
      payload = { ...tableOf(1), endpoints: [tableOf(1).endpoints[0], tableOf(1).endpoints[0]] };
    if (body === 'LEARN') payload = { ...tableOf(1), affinity: { ...tableOf(1).affinity, type: 'Learn' } };
    const r = await put(payload);
    expect(r.status).toBe(400);
    expect(r.text).toMatch(want);
  });

  it('PUT of a non-JSON content type → 415', async () => {
    expect((await put(tableOf(1), TOKEN, 'text/yaml')).status).toBe(415);
  });

  it('a good table is served; the same again is idempotent; an older one is 409 and the newer stays', async () => {
    const r = await put(tableOf(5));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toEqual({ pool: 'team/api', revision: 5, changed: true });
    expect((await get(`${pushed.adminUrl}/readyz`)).status).toBe(200);
    expect((await get(`${pushed.url}/`)).status).toBe(200);
    expect(JSON.parse((await put(tableOf(5))).text).changed).toBe(false);
    const stale = await put(tableOf(4, [backends[0]!.id]));
    expect(stale.status).toBe(409);
    expect((await put(tableOf(5, [backends[0]!.id]))).status).toBe(409);
    expect(await servedRevision(pushed)).toBe(5);
    expect(JSON.parse((await get(`${pushed.adminUrl}/v1/routing-table`)).text).endpoints).toHaveLength(2);
    const m = (await get(`${pushed.adminUrl}/metrics`)).text;
    expect(m).toMatch(/tether_proxy_routing_table_rejections_total\{source="admin",reason="stale"\} 2/);
    expect(m).toMatch(/tether_proxy_routing_table_revision\{pool="team\/api"\} 5/);
  });

  it('a table of another pool is refused (409)', async () => {
    const other = { ...tableOf(9), pool: 'team/other' };
    expect((await put(other)).status).toBe(409);
  });

  it("an endpoint's metric series go when it leaves the table", async () => {
    const gone = backends[1]!.id;
    for (let i = 0; i < 20; i++) await get(`${pushed.url}/`);
    expect((await get(`${pushed.adminUrl}/metrics`)).text).toContain(`endpoint="${gone}"`);
    expect((await put(tableOf(6, [backends[0]!.id]))).status).toBe(200);
    expect((await get(`${pushed.adminUrl}/metrics`)).text).not.toContain(`endpoint="${gone}"`);
  });
});

describe('pool file reloads', () => {
  it('a bad file is reported and the last good table keeps serving; a good one is picked up', async () => {
    const eps = backends.map((b) => ({ name: b.id, port: b.port }));
    const file = s.write('pool.yaml', poolYaml(eps));
    const p = await startProxy(['--config', file]);
    try {
      expect(await servedRevision(p)).toBe(1);
      for (const bad of [
        'spec: [unclosed',
        poolYaml(eps, { affinity: { type: 'Sticky' } }),
        poolYaml([{ name: 'x', port: 70000 }]),
        '',
      ]) {
        s.write('pool.yaml', bad);
        await waitFor(
          () => p.logs.some((l) => l.includes('pool file rejected') && !l.includes('"seen"')),
          5_000,
          'the rejection',
        );
        // Mark this rejection as seen so the next bad file must log afresh.
        for (let i = 0; i < p.logs.length; i++)
          if (p.logs[i]!.includes('pool file rejected')) p.logs[i] = '"seen"';
        expect(await servedRevision(p)).toBe(1);
        expect((await get(`${p.url}/`)).status).toBe(200);
      }
      s.write('pool.yaml', poolYaml([eps[0]!]));
      await waitFor(async () => (await servedRevision(p)) === 2, 5_000, 'the good reload');
      for (let i = 0; i < 10; i++) expect((await get(`${p.url}/`)).endpoint).toBe(eps[0]!.name);
      expect((await get(`${p.adminUrl}/metrics`)).text).toMatch(
        /tether_proxy_routing_table_rejections_total\{source="file",reason="invalid"\} 4/,
      );
    } finally {
      await p.stop();
    }
  });

  it('an unusable first file stops the proxy with exit code 2 and a clear message', async () => {
    const file = s.write(
      'broken.yaml',
      poolYaml([{ name: 'x', port: 1 }], { affinity: { cookie: { absoluteTimeout: 'forever' } } }),
    );
    await expect(startProxy(['--config', file])).rejects.toThrow(/exited with 2[\s\S]*absoluteTimeout/);
  });

  it.each([
    { desc: 'unknown flag', args: ['--nope'] },
    { desc: 'bad listen address', args: ['--listen', 'localhost'] },
    { desc: 'bad duration', args: ['--read-timeout', '5 seconds'] },
    { desc: 'short cookie key', args: ['--cookie-keys-file', 'SHORTKEY'] },
  ])('bad flags ($desc) exit 2 with usage', async ({ args }) => {
    const a = args.map((x) => (x === 'SHORTKEY' ? s.write('short', 'c2hvcnQ=\n') : x));
    await expect(startProxy(a)).rejects.toThrow(/exited with 2/);
  });
});
