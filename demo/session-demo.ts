/**
 * `make demo`, part 7: sessions that outlive their endpoint and their store
 * node. A real replicated store on loopback (Debian's redis-server: a
 * primary and 2 replicas; 3 redis-sentinel), three app processes
 * (node:http + express-session + `tether/session-store` in `Sync` mode,
 * demo/session-backend.ts), tether-proxy in front with Cookie affinity.
 *
 * One client increments its session counter; the endpoint it is pinned to
 * is SIGKILLed, and the counter goes on at the next endpoint; then the
 * store's primary is SIGKILLed, Sentinel promotes a replica, and the counter
 * goes on again, with no acknowledged increment lost.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcesses } from '../tools/child-processes.ts';
import { httpGet, setCookiePairs } from '../tools/http-get.ts';
import { pollUntil } from '../tools/poll.ts';
import { type RedisStore, startRedisStore } from '../tools/redis-store.ts';
import type { TetherProxy } from '../tools/tether-proxy-process.ts';
import { isReady } from './admin.ts';
import { type Backend, startProxy, startSessionBackend } from './processes.ts';
import { type Claims, heading, say, table } from './report.ts';

const ENDPOINTS = ['cart-a', 'cart-b', 'cart-c'] as const;
const REQUESTS = 5;
/** How long the client keeps retrying while the store has no primary, ms. */
const STORE_FAILOVER_BUDGET_MS = 15_000;

/** One answer of an app endpoint through the proxy. */
interface Answer {
  readonly n: number;
  readonly status: number;
  readonly endpoint: string;
  readonly count: number | undefined;
  readonly session: string;
  readonly error: string;
}

/** A browser: keeps every cookie it is given (the proxy's `route`, the app's `sid`). */
class Browser {
  private readonly jar = new Map<string, string>();
  private n = 0;

  async get(url: string): Promise<Answer> {
    const n = ++this.n;
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    try {
      const res = await httpGet(url, {
        headers: { 'x-client-id': 'shopper', ...(cookie === '' ? {} : { cookie }) },
        timeoutMs: 5_000,
      });
      for (const [k, v] of setCookiePairs(res.headers['set-cookie'])) this.jar.set(k, v);
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(res.body) as Record<string, unknown>;
      } catch {
        // The proxy's own error page.
      }
      const proxyError = res.headers['x-tether-error'];
      return {
        n,
        status: res.status,
        endpoint: typeof body.endpoint === 'string' ? body.endpoint : '-',
        count: typeof body.count === 'number' ? body.count : undefined,
        session: typeof body.session === 'string' ? `${body.session.slice(0, 8)}…` : '-',
        error:
          typeof body.error === 'string'
            ? `${body.error}${typeof body.message === 'string' ? `: ${body.message.slice(0, 60)}` : ''}`
            : typeof proxyError === 'string'
              ? proxyError
              : '',
      };
    } catch (err) {
      return {
        n,
        status: 0,
        endpoint: '-',
        count: undefined,
        session: '-',
        error: (err as NodeJS.ErrnoException).code ?? (err as Error).message,
      };
    }
  }
}

function rows(answers: readonly Answer[]): (string | number)[][] {
  return answers.map((a) => [a.n, a.status, a.endpoint, a.count ?? '-', a.session, a.error]);
}

const HEADER = ['request', 'status', 'endpoint', 'session counter', 'session id', 'error'];

/** What part 7 runs on, started ahead (see {@link prepareSessionStore}). */
export interface SessionStage {
  readonly store: RedisStore;
  readonly secretDir: string;
  readonly backends: Backend[];
  readonly proxy: TetherProxy;
  /** ms it took to start everything. */
  readonly startMs: number;
}

/**
 * Starts part 7's processes: the store, then the three apps (each waits
 * for the store), then the proxy. Everything goes through `children` (stopped by
 * the demo's shutdown and exit hooks); on failure the store is stopped here.
 *
 * @throws {Error} when a process does not come up.
 */
export async function prepareSessionStore(children: ChildProcesses, tmp: string): Promise<SessionStage> {
  const t0 = Date.now();
  const store = await startRedisStore(children, {
    password: randomBytes(16).toString('hex'),
    masterName: 'default-cart',
    downAfterMs: 1_000,
    failoverTimeoutMs: 3_000,
    minReplicasToWrite: 1,
    writeMode: 'Sync',
  });
  try {
    const secretDir = store.writeSecretDir();
    const cookieSecret = randomBytes(24).toString('base64');
    const backends = await Promise.all(
      ENDPOINTS.map((id) => startSessionBackend(children, id, secretDir, cookieSecret)),
    );
    const poolFile = join(tmp, 'session-pool.yaml');
    const keysFile = join(tmp, 'session-cookie-keys');
    writeFileSync(
      poolFile,
      `apiVersion: tether.dev/v1alpha1
kind: StickyBackendPool
metadata: { name: cart }
spec:
  backend:
    endpoints:
${backends.map((b) => `      - { name: ${b.id}, address: 127.0.0.1, port: ${b.port} }`).join('\n')}
  affinity: { type: Cookie, cookie: { name: route } }
  onEndpointFailure: Repin
`,
    );
    writeFileSync(keysFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const proxy = await startProxy(children, 'proxy (cart)', poolFile, keysFile);
    if ((await pollUntil(() => isReady(proxy), 5_000)) === undefined)
      throw new Error(`${proxy.name}: GET ${proxy.adminUrl}/readyz never answered 200`);
    return { store, secretDir, backends, proxy, startMs: Date.now() - t0 };
  } catch (err) {
    await store.stop();
    throw err;
  }
}

/** Runs part 7 on what `prepare` ({@link prepareSessionStore}) starts, and stops the store. */
export async function partSessionStore(prepare: () => Promise<SessionStage>, claims: Claims): Promise<void> {
  claims.enter('session store');
  heading('7. Session store: the session survives its endpoint and its store node (Sync mode)');
  const t0 = Date.now();
  const { store, secretDir, backends, proxy, startMs } = await prepare();
  try {
    const primary = await store.primary();
    table(
      ['process', 'listens on', 'role'],
      [
        ...store.servers.map((s) => [
          `redis-server ${s.name}`,
          `127.0.0.1:${s.port}`,
          s === primary ? 'primary' : 'replica',
        ]),
        ...store.sentinelPorts.map((p, i) => [`redis-sentinel ${i}`, `127.0.0.1:${p}`, 'quorum 2 of 3']),
        ...backends.map((b) => [
          `app ${b.id}`,
          `127.0.0.1:${b.port}`,
          'node:http + express-session + tether/session-store',
        ]),
        [`tether-proxy`, proxy.url.slice(7), 'Cookie affinity over the 3 apps'],
      ],
    );
    const secret = store.secretValues();
    say(
      '',
      `the apps read the store's Secret from ${secretDir}/ (what the operator mounts):`,
      `  sentinels=${secret.sentinels} masterName=${secret.masterName} writeMode=${secret.writeMode} waitReplicas=${secret.waitReplicas} waitTimeoutMs=${secret.waitTimeoutMs}`,
      `  (and password); each write is followed by WAIT ${secret.waitReplicas} ${secret.waitTimeoutMs}; min-replicas-to-write 1`,
      `all started in ${(startMs / 1000).toFixed(1)} s`,
      '',
    );

    const browser = new Browser();
    const url = `${proxy.url}/cart`;
    const first: Answer[] = [];
    for (let i = 0; i < REQUESTS; i++) first.push(await browser.get(url));
    const pinned = first[0]?.endpoint ?? '-';
    table(HEADER, rows(first));
    claims.check(
      first.every((a) => a.status === 200 && a.endpoint === pinned) &&
        first.map((a) => a.count).join() === '1,2,3,4,5',
      `the client is pinned to ${pinned}; its session counter went 1 → ${REQUESTS}`,
      first.map((a) => `${a.status} ${a.endpoint} ${a.count ?? a.error}`).join('; '),
    );

    // Act 1: the endpoint dies.
    const victim = backends.find((b) => b.id === pinned) as Backend | undefined;
    if (victim === undefined) throw new Error(`the client was answered by "${pinned}", none of the apps`);
    say('', `SIGKILL app ${victim.id} (pid ${victim.child.proc.pid}), the endpoint the client is pinned to:`);
    victim.child.proc.kill('SIGKILL');
    await victim.child.exited;
    const second: Answer[] = [];
    for (let i = 0; i < REQUESTS; i++) second.push(await browser.get(url));
    table(HEADER, rows(second));
    const movedTo = second[0]?.endpoint ?? '-';
    claims.check(
      second.every((a) => a.status === 200) &&
        movedTo !== pinned &&
        second.every((a) => a.endpoint === movedTo),
      `every request answered 200; the client moved to ${movedTo} and stayed there`,
      second.map((a) => `${a.status} ${a.endpoint} ${a.error}`).join('; '),
    );
    claims.check(
      second.map((a) => a.count).join() === '6,7,8,9,10' &&
        second.every((a) => a.session === first[0]?.session),
      `the session moved with it: same session id, counter went on 6 → 10 (no reset to 1)`,
      second.map((a) => `${a.count} (${a.session})`).join(', '),
    );

    // Act 2: the store's primary dies.
    const lastAcked = second.at(-1)?.count ?? 0;
    say(
      '',
      `SIGKILL the store's primary ${primary.name} (127.0.0.1:${primary.port}); the client keeps asking (a 503 is retried after 250 ms):`,
    );
    const killedAt = Date.now();
    await store.killServer(primary);
    const third: Answer[] = [];
    let ok = 0;
    let firstOkAt: number | undefined;
    while (ok < REQUESTS && Date.now() - killedAt < STORE_FAILOVER_BUDGET_MS) {
      const a = await browser.get(url);
      third.push(a);
      if (a.status === 200) {
        ok++;
        firstOkAt ??= Date.now();
      } else await new Promise((r) => setTimeout(r, 250));
    }
    const promoted = await store.primaryPort().catch(() => undefined);
    const failedRows = third.filter((a) => a.status !== 200);
    table(HEADER, rows(third));
    const okCounts = third.filter((a) => a.status === 200).map((a) => a.count ?? 0);
    say(
      '',
      `the Sentinels promoted 127.0.0.1:${promoted ?? '?'}; ${failedRows.length} request(s) answered 503 while no primary was reachable; the first 200 came ${
        firstOkAt === undefined ? 'never' : `${((firstOkAt - killedAt) / 1000).toFixed(1)} s after the kill`
      }`,
    );
    claims.check(
      ok === REQUESTS && promoted !== undefined && promoted !== primary.port,
      `Sentinel promoted a replica and the app answered again (${ok} answers of 200 after the failover)`,
      `${ok} answers of 200 within ${STORE_FAILOVER_BUDGET_MS / 1000} s; primary now ${promoted ?? 'unknown'}`,
    );
    claims.check(
      okCounts.length > 0 &&
        (okCounts[0] ?? 0) > lastAcked &&
        okCounts.every((c, i) => i === 0 || c === (okCounts[i - 1] ?? 0) + 1),
      `no acknowledged write lost: the counter went on from ${lastAcked} (${okCounts.join(', ')})`,
      `last acknowledged ${lastAcked}, then ${okCounts.join(', ') || 'nothing'}`,
    );
    say(`part 7 took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await store.stop();
  }
}
