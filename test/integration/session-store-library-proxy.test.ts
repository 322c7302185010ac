/**
 * The session outlives its endpoint: tether-proxy (Cookie affinity) in
 * front of three app processes (node:http + express-session +
 * `tether/session-store`, demo/session-backend.ts) on a real loopback store
 * in `Sync` mode. The endpoint a client is pinned to is SIGKILLed; the
 * client is re-pinned and its session counter goes on where it was.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startSessionBackend } from '../../demo/processes.ts';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { type RedisStore, startRedisStore } from '../../tools/redis-store.ts';
import {
  Client,
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
} from '../helpers/proxy-process.ts';

const children = new ChildProcesses();
process.once('exit', () => children.killAllNow());

const CLIENTS = 9;
const REQUESTS = 5;

interface Answer {
  status: number;
  endpoint: string | undefined;
  count: number | undefined;
  session: string | undefined;
  error: string | undefined;
}

async function ask(client: Client, url: string, id: string): Promise<Answer> {
  const r = await client.get(`${url}/cart`, { 'x-client-id': id });
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(r.text) as Record<string, unknown>;
  } catch {
    // A proxy error page: judged by the status.
  }
  return {
    status: r.status,
    endpoint: typeof body.endpoint === 'string' ? body.endpoint : undefined,
    count: typeof body.count === 'number' ? body.count : undefined,
    session: typeof body.session === 'string' ? body.session : undefined,
    error: typeof body.error === 'string' ? body.error : undefined,
  };
}

describe('kill the endpoint a client is pinned to: its session goes on elsewhere', () => {
  let store: RedisStore;
  let s: Scratch;
  let backends: Backend[] = [];
  let proxy: ProxyProcess;

  beforeAll(async () => {
    store = await startRedisStore(children, {
      // Its own password and master name: a port taken by another test's store fails AUTH, loudly.
      password: randomBytes(16).toString('hex'),
      masterName: `tether-lib-proxy-${randomBytes(4).toString('hex')}`,
      downAfterMs: 1_000,
      failoverTimeoutMs: 3_000,
      minReplicasToWrite: 1,
      writeMode: 'Sync',
    });
    s = scratch();
    const secretDir = store.writeSecretDir();
    const cookieSecret = randomBytes(24).toString('base64');
    backends = await Promise.all(
      // 30 s each: three Node processes importing ioredis on 2 busy cores can take 10.
      ['shop-a', 'shop-b', 'shop-c'].map((id) =>
        startSessionBackend(children, id, secretDir, cookieSecret, 30_000),
      ),
    );
    const keys = s.write('keys', `${newCookieKey()}\n`);
    const config = s.write(
      'pool.yaml',
      poolYaml(
        backends.map((b) => ({ name: b.id, port: b.port })),
        { affinity: { type: 'Cookie', cookie: { name: 'route' } }, onEndpointFailure: 'Repin' },
      ),
    );
    proxy = await startProxy(['--config', config, '--cookie-keys-file', keys]);
  }, 90_000);

  afterAll(async () => {
    await proxy?.stop();
    await children.stopAll(2_000);
    await store?.stop();
    s?.cleanup();
  });

  it('re-pins the clients of the dead endpoint, whose counters continue with no reset and no error', async () => {
    const clients = Array.from({ length: CLIENTS }, (_, i) => ({ id: `client-${i + 1}`, jar: new Client() }));
    const before = new Map<string, Answer[]>();
    for (const c of clients) {
      const answers: Answer[] = [];
      for (let i = 0; i < REQUESTS; i++) answers.push(await ask(c.jar, proxy.url, c.id));
      before.set(c.id, answers);
      expect(answers.map((a) => a.status)).toEqual(Array(REQUESTS).fill(200));
      expect(answers.map((a) => a.count)).toEqual([1, 2, 3, 4, 5]);
      expect(new Set(answers.map((a) => a.endpoint)).size).toBe(1);
      expect(c.jar.jar.has('route') && c.jar.jar.has('sid')).toBe(true);
    }
    const pinnedTo = (id: string): string => before.get(id)?.[0]?.endpoint as string;

    // The endpoint of the first client dies for real (SIGKILL: no goodbye, sessions in flight cut).
    const victim = backends.find((b) => b.id === pinnedTo('client-1')) as Backend;
    victim.child.proc.kill('SIGKILL');
    await victim.child.exited;

    for (const c of clients) {
      const answers: Answer[] = [];
      for (let i = 0; i < REQUESTS; i++) answers.push(await ask(c.jar, proxy.url, c.id));
      const where = new Set(answers.map((a) => a.endpoint));
      expect(
        answers.map((a) => a.status),
        `${c.id}: ${JSON.stringify(answers)}`,
      ).toEqual(Array(REQUESTS).fill(200));
      // The counter is the session's: it goes on from 5, wherever the client lands.
      expect(answers.map((a) => a.count)).toEqual([6, 7, 8, 9, 10]);
      // Same session id: the session moved, it was not recreated.
      expect(new Set(answers.map((a) => a.session))).toEqual(new Set([before.get(c.id)?.[0]?.session]));
      expect(where.size).toBe(1);
      if (pinnedTo(c.id) === victim.id) expect([...where][0]).not.toBe(victim.id);
      else expect([...where][0]).toBe(pinnedTo(c.id));
    }
  });
});
