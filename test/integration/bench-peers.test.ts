/**
 * The Node peers `make bench` measures Tether against (bench/peers/) must do
 * the same affinity job as Tether's cookie mode, or the ratios compare
 * unequal work: each is started as the bench starts it (a real process on
 * loopback, in front of real backends) and checked for new pins, pinned
 * requests, bad cookies, the endpoint's own cookies, bodies and a dead endpoint.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PEERS } from '../../bench/results.ts';
import { ChildProcesses, waitForLine } from '../../tools/child-processes.ts';
import { freePort } from '../../tools/free-port.ts';
import { httpGet, setCookiePairs } from '../../tools/http-get.ts';
import { REPO_ROOT } from '../../tools/tether-proxy-process.ts';
import { type Backend, startBackend, startBackends } from '../helpers/backends.ts';

const children = new ChildProcesses();
let backends: Backend[];

beforeAll(async () => {
  // `/session` answers with a session cookie of the endpoint's own, which the peer must pass on.
  backends = await startBackends(3, 'be', (req, res, id) => {
    if (req.url !== '/session') return false;
    res.setHeader('set-cookie', `sid=${id}-1; Path=/`);
    res.end(JSON.stringify({ endpoint: id }));
    return true;
  });
});

afterAll(async () => {
  await children.stopAll();
  await Promise.all(backends.map((b) => b.kill()));
});

/** The endpoint id a backend's JSON answer names. */
function endpointOf(body: string): string {
  return (JSON.parse(body) as { endpoint: string }).endpoint;
}

describe.each(PEERS)('$label ($script)', (peer) => {
  let url: string;
  /** An endpoint of this peer only, killed by the last test. */
  let doomed: Backend;

  beforeAll(async () => {
    doomed = await startBackend('be-doomed');
    const port = await freePort();
    const args = [
      '--no-deprecation',
      join(REPO_ROOT, peer.script),
      String(port),
      ...backends.map((b) => `${b.id}=${b.port}`),
      `${doomed.id}=${doomed.port}`,
    ];
    const child = children.spawn(peer.id, process.execPath, args, { cwd: REPO_ROOT });
    await waitForLine(child, 'it listened', 20_000, (line) =>
      line === `listening ${port}` ? true : undefined,
    );
    url = `http://127.0.0.1:${port}`;
  });

  it('a request without cookie is a new pin: the answer names its endpoint in Set-Cookie route', async () => {
    const res = await httpGet(`${url}/a`);
    expect(res.status).toBe(200);
    const setCookie = res.headers['set-cookie'] ?? [];
    expect(setCookie).toHaveLength(1);
    expect(setCookie[0]).toBe(`route=${endpointOf(res.body)}; Path=/; HttpOnly; SameSite=Lax`);
  });

  it('new pins go round robin over the endpoints', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 8; i++) seen.push(endpointOf((await httpGet(`${url}/rr`)).body));
    // Whatever the position the earlier tests left the round robin in: 4 endpoints, each twice.
    expect(seen.slice(0, 4).sort()).toEqual(['be-a', 'be-b', 'be-c', 'be-doomed']);
    expect(seen.slice(4)).toEqual(seen.slice(0, 4));
  });

  it('a valid cookie pins: every request reaches its endpoint, no Set-Cookie', async () => {
    for (const id of ['be-b', 'be-c', 'be-b']) {
      const res = await httpGet(`${url}/pinned`, { headers: { cookie: `theme=dark; route=${id}` } });
      expect(res.status).toBe(200);
      expect(endpointOf(res.body)).toBe(id);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
  });

  it.each([
    { desc: 'an unknown endpoint', cookie: 'route=be-zz' },
    { desc: 'an empty value', cookie: 'route=' },
    { desc: 'only other cookies', cookie: 'xroute=be-a; theme=dark' },
  ])('$desc is treated as no cookie: a new pin with Set-Cookie', async ({ cookie }) => {
    const res = await httpGet(`${url}/bad`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const route = setCookiePairs(res.headers['set-cookie']).find(([n]) => n === 'route')?.[1];
    expect(route).toBe(endpointOf(res.body));
  });

  it("keeps the endpoint's own Set-Cookie next to the route cookie", async () => {
    const res = await httpGet(`${url}/session`);
    const id = endpointOf(res.body);
    expect(setCookiePairs(res.headers['set-cookie'])).toEqual([
      ['sid', `${id}-1`],
      ['route', id],
    ]);
  });

  it('forwards the method, path, body and an X-Forwarded-For', async () => {
    const target = backends[0] as Backend;
    const before = target.seen.length;
    const res = await httpGet(`${url}/upload?x=1`, {
      method: 'POST',
      headers: { cookie: `route=${target.id}`, 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    expect(res.status).toBe(200);
    const seen = target.seen.slice(before).find((r) => r.url === '/upload?x=1');
    expect(seen).toMatchObject({ method: 'POST', body: '{"n":1}' });
    expect(seen?.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('answers 5xx for a dead endpoint and keeps serving', async () => {
    await doomed.kill();
    const res = await httpGet(`${url}/x`, { headers: { cookie: `route=${doomed.id}` } });
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(res.status).toBeLessThan(600);
    const next = await httpGet(`${url}/x`, { headers: { cookie: 'route=be-a' } });
    expect(endpointOf(next.body)).toBe('be-a');
  });
});
