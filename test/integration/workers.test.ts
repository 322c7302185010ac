/**
 * `tether-proxy --workers 2` (issue 12): real worker processes behind one
 * port. Every claim is proved per worker, from each worker's own report
 * (`GET /v1/workers` asks each one over IPC) and from its own request
 * counters, never from which worker happened to answer one request.
 */
import { spawnSync } from 'node:child_process';
import { createSecretKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAffinityCookie } from '../../proxy/src/routing/cookie-codec.ts';
import { httpGet, setCookieValue } from '../../tools/http-get.ts';
import { type Backend, startBackends } from '../helpers/backends.ts';
import { testTable } from '../helpers/pools.ts';
import {
  get,
  NODE,
  newCookieKey,
  PROXY_BIN,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';
import { RawConnection, type RawResponse } from '../helpers/raw-client.ts';

const TOKEN = 'workers-token';
const POOL = 'default/shop';

interface WorkerRow {
  slot: number;
  state: string;
  pid: number | undefined;
  revision: number | undefined;
  answered: boolean;
  status?: { requests: number; openConnections: number; revision: number | undefined };
}

async function workers(p: ProxyProcess): Promise<WorkerRow[]> {
  const r = await get(`${p.adminUrl}/v1/workers`);
  expect(r.status).toBe(200);
  return (JSON.parse(r.text) as { workers: WorkerRow[] }).workers;
}

/** Each worker's own count of answered requests, by slot. */
async function requestsBySlot(p: ProxyProcess): Promise<number[]> {
  return (await workers(p)).map((w) => w.status?.requests ?? Number.NaN);
}

/** The sum of every series of `name` on a /metrics page. */
function sumSeries(page: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of page.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eE]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** `n` requests, each on its own new connection (the primary deals connections round-robin). */
async function freshRequests(
  p: ProxyProcess,
  n: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; endpoint: string | undefined; setCookie: string | undefined }[]> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await httpGet(`${p.url}/`, { headers });
    let endpoint: string | undefined;
    try {
      endpoint = (JSON.parse(r.body) as { endpoint?: string }).endpoint;
    } catch {
      endpoint = undefined;
    }
    out.push({ status: r.status, endpoint, setCookie: setCookieValue(r.headers['set-cookie'], 'route') });
  }
  return out;
}

/** Waits until every worker reports `revision` itself. */
async function waitForRevision(p: ProxyProcess, revision: number, ms = 10_000): Promise<void> {
  await waitFor(
    async () => (await workers(p)).every((w) => w.state === 'serving' && w.revision === revision),
    ms,
    `every worker at revision ${revision}`,
  );
}

async function put(p: ProxyProcess, revision: number, eps: Backend[]) {
  return get(`${p.adminUrl}/v1/routing-table`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(
      testTable(
        revision,
        eps.map((b) => ({ name: b.id, port: b.port })),
      ),
    ),
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('--workers: flag validation', () => {
  it.each([
    { desc: 'zero', args: ['--workers', '0'], want: /between 1 and 1024 processes, or auto/ },
    { desc: 'negative', args: ['--workers=-1'], want: /a whole number of processes \(1 or more\), or auto/ },
    {
      desc: 'negative as a separate word',
      args: ['--workers', '-1'],
      want: /'--workers' argument is ambiguous/,
    },
    {
      desc: 'a word',
      args: ['--workers', 'abc'],
      want: /a whole number of processes \(1 or more\), or auto/,
    },
    { desc: 'a fraction', args: ['--workers', '1.5'], want: /a whole number of processes/ },
    { desc: 'too many', args: ['--workers', '5000'], want: /between 1 and 1024/ },
  ])('$desc → exit 2 with the reason and the usage', ({ args, want }) => {
    const r = spawnSync(NODE, [PROXY_BIN, ...args], { encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(want);
    expect(r.stderr).toContain('--workers N|auto');
  });
});

describe('--workers 2', () => {
  let backends: Backend[];
  let s: Scratch;
  let p: ProxyProcess;
  let poolFile: string;
  let keysFile: string;
  let oldKey: string;
  let revision = 1;

  beforeAll(async () => {
    backends = await startBackends(2, 'wk');
    s = scratch();
    poolFile = s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port }))));
    oldKey = newCookieKey();
    keysFile = s.write('keys', `${oldKey}\n`);
    p = await startProxy([
      '--workers',
      '2',
      '--config',
      poolFile,
      '--admin-token-file',
      s.write('token', TOKEN),
      '--cookie-keys-file',
      keysFile,
      '--worker-sync-timeout',
      '1s',
      '--shutdown-timeout',
      '10s',
    ]);
  }, 60_000);

  afterAll(async () => {
    await p?.stop();
    await Promise.all(backends.map((b) => b.kill()));
    s.cleanup();
  });

  it('starts two workers that agree on the table: /readyz names the revision', async () => {
    const ws = await workers(p);
    expect(ws.map((w) => [w.slot, w.state, w.revision])).toEqual([
      [0, 'serving', 1],
      [1, 'serving', 1],
    ]);
    expect(new Set(ws.map((w) => w.pid)).size).toBe(2);
    const r = await get(`${p.adminUrl}/readyz`);
    expect(r.status).toBe(200);
    expect(r.text).toBe('ready: revision 1 on 2 workers\n');
    expect(
      p.logs.some((l) => l.includes('"msg":"tether-proxy listening"') && l.includes('"workers":2')),
    ).toBe(true);
  });

  it('both workers get traffic, and /metrics sums their counters', async () => {
    const before = await requestsBySlot(p);
    const answers = await freshRequests(p, 20);
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const after = await requestsBySlot(p);
    const served = after.map((n, i) => n - (before[i] as number));
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
    expect((served[0] as number) + (served[1] as number)).toBe(20);
    const page = (await get(`${p.adminUrl}/metrics`)).text;
    // One page for the pod: the sum over workers equals what each worker counted.
    expect(sumSeries(page, 'tether_proxy_requests_total')).toBe((after[0] as number) + (after[1] as number));
    // The routing-table series come from the primary alone, not summed over workers.
    expect(sumSeries(page, 'tether_proxy_routing_table_revision', { pool: POOL })).toBe(1);
    expect(sumSeries(page, 'tether_proxy_routing_table_swaps_total')).toBe(1);
    expect(sumSeries(page, 'tether_proxy_workers')).toBe(2);
    // Health is per worker; the aggregate of a healthy endpoint stays 1 (the share of workers that see it healthy).
    expect(
      sumSeries(page, 'tether_proxy_endpoint_healthy', { pool: POOL, endpoint: backends[0]?.id as string }),
    ).toBe(1);
  });

  it('a cookie signed by one worker is honoured by every worker (shared keys)', async () => {
    const [first] = await freshRequests(p, 1);
    const cookie = first?.setCookie;
    expect(cookie).toBeDefined();
    const before = await requestsBySlot(p);
    const pinned = await freshRequests(p, 10, { cookie: `route=${cookie}` });
    const after = await requestsBySlot(p);
    expect(after[0]).toBeGreaterThan(before[0] as number);
    expect(after[1]).toBeGreaterThan(before[1] as number);
    // Every worker kept the pin: same endpoint, no new cookie.
    expect(new Set(pinned.map((a) => a.endpoint))).toEqual(new Set([first?.endpoint]));
    expect(pinned.every((a) => a.setCookie === undefined)).toBe(true);
  });

  it('an admin PUT reaches every worker: each reports the revision and serves the new endpoints', async () => {
    revision = 10;
    const r = await put(p, revision, [backends[1] as Backend]);
    expect(r.status).toBe(200);
    // Once the PUT answered, each worker already serves it (no waiting).
    const ws = await workers(p);
    expect(ws.map((w) => w.status?.revision)).toEqual([revision, revision]);
    const before = await requestsBySlot(p);
    const answers = await freshRequests(p, 10);
    const after = await requestsBySlot(p);
    expect(after[0]).toBeGreaterThan(before[0] as number);
    expect(after[1]).toBeGreaterThan(before[1] as number);
    expect(new Set(answers.map((a) => a.endpoint))).toEqual(new Set([backends[1]?.id]));
    expect((await get(`${p.adminUrl}/readyz`)).text).toBe(`ready: revision ${revision} on 2 workers\n`);
  });

  it('a pool-file reload reaches every worker', async () => {
    writeFileSync(
      poolFile,
      poolYaml([{ name: backends[0]?.id as string, port: backends[0]?.port as number }]),
    );
    revision = 11;
    await waitForRevision(p, revision);
    const before = await requestsBySlot(p);
    const answers = await freshRequests(p, 10);
    const after = await requestsBySlot(p);
    expect(after[0]).toBeGreaterThan(before[0] as number);
    expect(after[1]).toBeGreaterThan(before[1] as number);
    expect(new Set(answers.map((a) => a.endpoint))).toEqual(new Set([backends[0]?.id]));
  });

  it('a table refused by the primary (stale) changes no worker', async () => {
    const r = await put(p, 3, backends);
    expect(r.status).toBe(409);
    expect((await workers(p)).map((w) => w.status?.revision)).toEqual([revision, revision]);
  });

  it('a table one worker cannot take (it does not answer) is served by no worker: 503, all keep the last one', async () => {
    const [w0, w1] = await workers(p);
    const stopped = w1?.pid as number;
    process.kill(stopped, 'SIGSTOP');
    let r: Awaited<ReturnType<typeof put>>;
    try {
      r = await put(p, revision + 1, backends);
      // While it is stopped, the pod is not ready: one worker does not answer.
      const ready = await get(`${p.adminUrl}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.text).toContain('worker 1 does not answer');
    } finally {
      process.kill(stopped, 'SIGCONT');
    }
    expect(r.status).toBe(503);
    expect(JSON.parse(r.text).error).toMatch(/worker 1: .*did not answer prepare within 1000 ms/);
    // The worker that did stage it dropped it; the stopped one drops it once it runs again.
    await waitFor(async () => (await get(`${p.adminUrl}/readyz`)).status === 200, 10_000, 'ready again');
    const ws = await workers(p);
    expect(ws.map((w) => [w.pid, w.status?.revision])).toEqual([
      [w0?.pid, revision],
      [stopped, revision],
    ]);
    const answers = await freshRequests(p, 6);
    expect(new Set(answers.map((a) => a.endpoint))).toEqual(new Set([backends[0]?.id]));
    // The same revision, offered again, now goes through.
    revision += 1;
    expect((await put(p, revision, [backends[0] as Backend])).status).toBe(200);
    expect((await workers(p)).map((w) => w.status?.revision)).toEqual([revision, revision]);
  });

  it('a pool file one worker cannot take is served by no worker, and offered again until every worker takes it', async () => {
    const [, w1] = await workers(p);
    const stopped = w1?.pid as number;
    const logsBefore = p.logs.length;
    process.kill(stopped, 'SIGSTOP');
    try {
      writeFileSync(
        poolFile,
        poolYaml([{ name: backends[1]?.id as string, port: backends[1]?.port as number }]),
      );
      await waitFor(
        () =>
          p.logs
            .slice(logsBefore)
            .some((l) => l.includes('pool file rejected') && l.includes('did not answer prepare')),
        10_000,
        'the reload refused',
      );
      // (No traffic now: the primary would deal some connections to the stopped worker.)
      const [w0] = await workers(p);
      expect(w0?.status?.revision).toBe(revision);
    } finally {
      process.kill(stopped, 'SIGCONT');
    }
    // No edit, no SIGHUP: the primary offers the file again by itself.
    revision += 1;
    await waitForRevision(p, revision);
    const answers = await freshRequests(p, 6);
    expect(new Set(answers.map((a) => a.endpoint))).toEqual(new Set([backends[1]?.id]));
  });

  it('a rotated keys file reaches every worker: new cookies are signed with the new key, old ones still verify', async () => {
    const [first] = await freshRequests(p, 1);
    const oldCookie = first?.setCookie as string;
    const newKey = newCookieKey();
    writeFileSync(keysFile, `${newKey}\n${oldKey}\n`);
    const key = createSecretKey(Buffer.from(newKey, 'base64'));
    await waitFor(
      async () => {
        const [a] = await freshRequests(p, 1);
        return a?.setCookie !== undefined && decodeAffinityCookie(a.setCookie, [key], POOL).ok;
      },
      10_000,
      'a cookie signed with the new key',
    );
    const before = await requestsBySlot(p);
    const fresh = await freshRequests(p, 10);
    const pinned = await freshRequests(p, 10, { cookie: `route=${oldCookie}` });
    const after = await requestsBySlot(p);
    expect(after[0]).toBeGreaterThan((before[0] as number) + 1);
    expect(after[1]).toBeGreaterThan((before[1] as number) + 1);
    // Every new cookie, whichever worker signed it, verifies with the new key alone.
    expect(
      fresh.every((a) => a.setCookie !== undefined && decodeAffinityCookie(a.setCookie, [key], POOL).ok),
    ).toBe(true);
    expect(pinned.every((a) => a.status === 200 && a.setCookie === undefined)).toBe(true);
  });

  it('a killed worker is re-forked into its slot, gets the current table, and only then counts as serving', async () => {
    const [w0] = await workers(p);
    const killed = w0?.pid as number;
    process.kill(killed, 'SIGKILL');
    await waitFor(
      async () => {
        const [now] = await workers(p);
        return now?.pid !== killed && now?.state === 'serving';
      },
      15_000,
      'worker 0 replaced',
    );
    const ws = await workers(p);
    expect(ws.map((w) => [w.state, w.status?.revision])).toEqual([
      ['serving', revision],
      ['serving', revision],
    ]);
    expect((await get(`${p.adminUrl}/readyz`)).status).toBe(200);
    const page = (await get(`${p.adminUrl}/metrics`)).text;
    expect(sumSeries(page, 'tether_proxy_worker_restarts_total')).toBe(1);
    expect(
      p.logs.some((l) => l.includes('worker exited; re-forking it') && l.includes(`"pid":${killed}`)),
    ).toBe(true);
    const before = await requestsBySlot(p);
    const answers = await freshRequests(p, 10);
    const after = await requestsBySlot(p);
    expect(after[0]).toBeGreaterThan(before[0] as number);
    // The last table (from the pool file) has only the second backend.
    expect(new Set(answers.map((a) => a.endpoint))).toEqual(new Set([backends[1]?.id]));
  });

  it('SIGTERM drains every worker: a request in flight is answered, then all exit and the primary exits 0', async () => {
    const pids = (await workers(p)).map((w) => w.pid as number);
    const slow = httpGet(`${p.url}/slow?ms=1500`, { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    p.child.kill('SIGTERM');
    await waitFor(
      async () => (await get(`${p.adminUrl}/readyz`).catch(() => ({ status: 0 }))).status !== 200,
      2_000,
      'not ready',
    );
    const answer = await slow;
    expect(answer.status).toBe(200);
    expect(answer.headers.connection).toBe('close');
    expect(await p.exited).toBe(0);
    expect(pids.filter(alive)).toEqual([]);
  });
});

describe('--workers 2 without a keys file', () => {
  it("the random key is the primary's, shared by all; a worker that crashes during the drain does not hang the primary (exit 1, long before the timeout)", async () => {
    const backends = await startBackends(1, 'wc');
    const s = scratch();
    try {
      const p = await startProxy([
        '--workers',
        '2',
        '--config',
        s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port })))),
        '--shutdown-timeout',
        '20s',
      ]);
      // Without --cookie-keys-file each worker would otherwise sign with a key of its own.
      const [first] = await freshRequests(p, 1);
      const before = await requestsBySlot(p);
      const pinned = await freshRequests(p, 10, { cookie: `route=${first?.setCookie}` });
      const after = await requestsBySlot(p);
      expect(after[0]).toBeGreaterThan(before[0] as number);
      expect(after[1]).toBeGreaterThan(before[1] as number);
      expect(pinned.every((a) => a.status === 200 && a.setCookie === undefined)).toBe(true);

      const slow = httpGet(`${p.url}/slow?ms=15000`, { timeoutMs: 20_000 }).catch((e: Error) => e);
      let busy: WorkerRow | undefined;
      await waitFor(
        async () => {
          busy = (await workers(p)).find((w) => (w.status?.openConnections ?? 0) > 0);
          return busy !== undefined;
        },
        5_000,
        'a worker with the slow request',
      );
      const started = Date.now();
      p.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      process.kill(busy?.pid as number, 'SIGKILL');
      expect(await p.exited).toBe(1);
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(await slow).toBeInstanceOf(Error);
      expect(p.logs.some((l) => l.includes('worker ended badly during shutdown'))).toBe(true);
    } finally {
      await Promise.all(backends.map((b) => b.kill()));
      s.cleanup();
    }
  });
});

describe('--workers 2: passive health is per worker', () => {
  it("an endpoint's failure is seen by the worker that met it; /metrics shows the share of workers that see it healthy", async () => {
    const backends = await startBackends(2, 'wh');
    const [alive, doomed] = backends as [Backend, Backend];
    const s = scratch();
    try {
      const p = await startProxy([
        '--workers',
        '2',
        '--config',
        s.write(
          'pool.yaml',
          poolYaml(
            backends.map((b) => ({ name: b.id, port: b.port })),
            { healthCheck: { passive: { maxFails: 1, failTimeout: '60s' } } },
          ),
        ),
      ]);
      const healthy = async (): Promise<number> =>
        sumSeries((await get(`${p.adminUrl}/metrics`)).text, 'tether_proxy_endpoint_healthy', {
          pool: POOL,
          endpoint: doomed.id,
        });
      // A cookie pinned to the endpoint about to die.
      let cookie: string | undefined;
      for (let i = 0; i < 40 && cookie === undefined; i++) {
        const [a] = await freshRequests(p, 1);
        if (a?.endpoint === doomed.id) cookie = a.setCookie;
      }
      expect(cookie).toBeDefined();
      await doomed.kill();
      expect(await healthy()).toBe(1);
      // One request, one connection, one worker: only that worker meets the refused connect.
      const [first] = await freshRequests(p, 1, { cookie: `route=${cookie}` });
      expect(first?.endpoint).toBe(alive.id);
      expect(await healthy()).toBe(0.5);
      // Once both workers have met it, neither sends to it.
      await waitFor(
        async () => {
          await freshRequests(p, 1, { cookie: `route=${cookie}` });
          return (await healthy()) === 0;
        },
        10_000,
        'every worker to see the endpoint down',
      );
      await p.stop();
    } finally {
      await Promise.all(backends.map((b) => b.kill()));
      s.cleanup();
    }
  });
});

describe('--workers 2 --engine', () => {
  it('every worker runs the engine the command line names (native by default, node on request)', async () => {
    const backends = await startBackends(1, 'we');
    const s = scratch();
    const pool = s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port }))));
    const procs: ProxyProcess[] = [];
    try {
      const [native, node] = await Promise.all([
        startProxy(['--workers', '2', '--config', pool]),
        startProxy(['--workers', '2', '--config', pool, '--engine', 'node']),
      ]);
      procs.push(native, node);
      // node:http adds `Keep-Alive: timeout=5` to a kept-alive HTTP/1.1 response; the native engine adds
      // no header of its own (README, "The native engine"). Fresh connections reach both workers.
      const keptAlive = async (port: number): Promise<RawResponse | undefined> => {
        const c = await RawConnection.open(port);
        try {
          c.write('GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n');
          await c.waitResponses(1);
          return c.responses()[0];
        } finally {
          c.destroy();
        }
      };
      for (let i = 0; i < 4; i++) {
        const n = await keptAlive(native.port);
        const o = await keptAlive(node.port);
        expect(n?.status).toBe(200);
        expect(o?.status).toBe(200);
        expect(n?.headers['keep-alive']).toBeUndefined();
        expect(o?.headers['keep-alive']).toEqual(['timeout=5']);
      }
      expect(native.logs.some((l) => l.includes('"engine":"native"'))).toBe(true);
      expect(node.logs.some((l) => l.includes('"engine":"node"'))).toBe(true);
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await Promise.all(backends.map((b) => b.kill()));
      s.cleanup();
    }
  }, 30_000);
});
