/**
 * `make demo`: Tether's sticky proxy on one machine, no cluster.
 *
 * Starts three demo backends (separate processes, so one can really die),
 * two `tether-proxy` processes on the same pool file and cookie keys, and
 * drives real traffic through them, printing a report:
 *
 * 1. Cookie affinity: every client stays on one endpoint; clients spread.
 * 2. Failover: one backend SIGKILLed; only its clients move, with a new
 *    cookie and no error (redispatch).
 * 3. A second proxy makes the same decisions, re-pins included.
 * 4. ClientIP affinity from 127.0.0.2 … 127.0.0.9; both proxies agree.
 * 5. Draining: pinned clients stay, new clients never land there.
 * 6. Metrics from `/metrics`.
 * 7. Session store (demo/session-demo.ts): real redis-server + redis-sentinel;
 *    an app endpoint, then the store's primary, SIGKILLed: the session
 *    counter goes on.
 *
 * Exits 0 when every claim held, 1 otherwise (or on any failure), 2 on a
 * Node.js older than 24. Whatever happens, it stops every process it started
 * and removes its temp dir. Loopback only.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChildProcesses } from '../tools/child-processes.ts';
import { pollUntil } from '../tools/poll.ts';
import type { TetherProxy } from '../tools/tether-proxy-process.ts';
import { isReady, metricLines, metricSum, metricsText, tableRevision } from './admin.ts';
import { CookieClient, getReply, isOk, type Reply } from './http-client.ts';
import { type Backend, startBackend, startProxy } from './processes.ts';
import { Claims, heading, say, table } from './report.ts';
import { partSessionStore, prepareSessionStore } from './session-demo.ts';

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
if (NODE_MAJOR < 24) {
  process.stderr.write(`demo: needs Node.js 24 or newer, this is ${process.version} (run: make demo)\n`);
  process.exit(2);
}

const ENDPOINT_IDS = ['shop-a', 'shop-b', 'shop-c'] as const;
const POOL = 'default/shop';
const COOKIE_NAME = 'route';
/** Clients of part 1; more join only while an endpoint has none (see {@link partCookieAffinity}). */
const FIRST_CLIENTS = 6;
const MAX_CLIENTS = 40;
const REQUESTS_PER_CLIENT = 20;
const REQUESTS_AFTER_KILL = 10;
const CLIENT_IP_ADDRESSES = [
  '127.0.0.2',
  '127.0.0.3',
  '127.0.0.4',
  '127.0.0.5',
  '127.0.0.6',
  '127.0.0.7',
  '127.0.0.8',
  '127.0.0.9',
];
const NEW_CLIENTS_WHILE_DRAINING = 30;
/** The whole run takes about 5 s, 20 s with part 7; past this something hangs, and the demo gives up. */
const DEADLINE_MS = 90_000;
/** How long a proxy may take to notice a pool file change (it settles 100 ms after the write). */
const RELOAD_WAIT_MS = 5_000;

const started = Date.now();
const children = new ChildProcesses();
const tmp = mkdtempSync(join(tmpdir(), 'tether-demo-'));
const agents: Agent[] = [];

/** Last resort, synchronous: runs on every exit path, including signals and crashes. */
function cleanupNow(): void {
  children.killAllNow();
  for (const a of agents) a.destroy();
  rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanupNow);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\ndemo: ${signal}, stopping everything it started\n`);
    process.exit(130);
  });
}
setTimeout(() => {
  process.stderr.write(`\ndemo: still running after ${DEADLINE_MS / 1000} s, giving up\n`);
  process.exit(1);
}, DEADLINE_MS).unref();

/** What the pool file says; rewritten to switch affinity and to drain an endpoint. */
interface PoolState {
  affinity: 'Cookie' | 'ClientIP';
  draining: string | undefined;
}

/** Everything the parts share. */
interface Demo {
  readonly claims: Claims;
  readonly backends: Map<string, Backend>;
  readonly ports: Map<string, number>;
  readonly poolFile: string;
  readonly p1: TetherProxy;
  readonly p2: TetherProxy;
  readonly clients: CookieClient[];
}

/**
 * The pool file, as a user would write it. `ipv4PrefixLength: 32` so that
 * 127.0.0.2 … 127.0.0.9 are distinct keys (nginx `ip_hash`'s /24 would make
 * them one client). Active checks every second so the demo sees health
 * change quickly; the rest is the documented default.
 */
function poolYaml(ports: Map<string, number>, state: PoolState): string {
  const endpoints = ENDPOINT_IDS.map(
    (id) =>
      `      - { name: ${id}, address: 127.0.0.1, port: ${ports.get(id)}, draining: ${id === state.draining} }`,
  ).join('\n');
  return `apiVersion: tether.dev/v1alpha1
kind: StickyBackendPool
metadata: { name: shop }
spec:
  backend:
    endpoints:
${endpoints}
  affinity:
    type: ${state.affinity}
    cookie: { name: ${COOKIE_NAME}, lifetimeType: Session, absoluteTimeout: 24h, idleTimeout: 30m }
    clientIP: { ipv4PrefixLength: 32, trustedProxies: [] }
  onEndpointFailure: Repin
  draining: { keepSessions: true, timeout: 5m }
  healthCheck:
    passive: { maxFails: 1, failTimeout: 10s }
    active: { path: /healthz, interval: 1s, timeout: 500ms, healthyThreshold: 1, unhealthyThreshold: 1 }
`;
}

/** Writes a file atomically (write, then rename), so a watching proxy never reads half of it. */
function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/**
 * Rewrites the pool file and waits until both proxies serve a newer
 * revision of the routing table.
 *
 * @returns the new revisions and the ms the slower proxy took.
 * @throws {Error} when a proxy does not reload within {@link RELOAD_WAIT_MS}.
 */
async function rewritePool(d: Demo, state: PoolState): Promise<{ revisions: number[]; ms: number }> {
  const before = await Promise.all([tableRevision(d.p1), tableRevision(d.p2)]);
  const t0 = Date.now();
  writeAtomically(d.poolFile, poolYaml(d.ports, state));
  const revisions = [0, 0];
  const ok = await pollUntil(async () => {
    const now = await Promise.all([tableRevision(d.p1), tableRevision(d.p2)]);
    revisions.splice(0, 2, ...now);
    return now.every((r, i) => r > (before[i] ?? 0));
  }, RELOAD_WAIT_MS);
  if (ok === undefined)
    throw new Error(
      `pool file rewritten, but the proxies still serve revisions ${revisions.join(', ')} after ${RELOAD_WAIT_MS} ms (were ${before.join(', ')})`,
    );
  return { revisions, ms: Date.now() - t0 };
}

/** `n` requests in a row from one client (it keeps its cookie between them). */
async function drive(client: CookieClient, baseUrl: string, n: number): Promise<Reply[]> {
  const replies: Reply[] = [];
  for (let i = 0; i < n; i++) replies.push(await client.get(baseUrl));
  return replies;
}

/** The distinct endpoints that answered, in order of first answer; `-` for none. */
function endpointsOf(replies: readonly Reply[]): string[] {
  return [...new Set(replies.map((r) => r.endpoint ?? '-'))];
}

/** The failed replies of a client, for a FAIL line: "client-3 request 1: got 502 TETHER_UPSTREAM_REFUSED, …". */
function describeErrors(who: string, replies: readonly Reply[]): string[] {
  return replies.flatMap((r, i) =>
    isOk(r)
      ? []
      : [
          `${who} request ${i + 1}: got ${r.status} ${r.error ?? '(no endpoint in body)'}, want 200 from a backend`,
        ],
  );
}

/** At most a few items of a list, for FAIL lines. */
function some(items: readonly string[], max = 4): string {
  return items.length <= max
    ? items.join('; ')
    : `${items.slice(0, max).join('; ')}; … (${items.length} in all)`;
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of items) m.set(key(t), (m.get(key(t)) ?? 0) + 1);
  return m;
}

async function setup(claims: Claims): Promise<Demo> {
  heading('Setup');
  const list = await Promise.all(ENDPOINT_IDS.map((id) => startBackend(children, id, 0)));
  const backends = new Map(list.map((b) => [b.id, b]));
  const ports = new Map(list.map((b) => [b.id, b.port]));
  const poolFile = join(tmp, 'pool.yaml');
  const keysFile = join(tmp, 'cookie-keys');
  writeAtomically(poolFile, poolYaml(ports, { affinity: 'Cookie', draining: undefined }));
  // One base64 key of 32 random bytes: both proxies sign and verify with it.
  writeFileSync(keysFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  const [p1, p2] = await Promise.all([
    startProxy(children, 'proxy 1', poolFile, keysFile),
    startProxy(children, 'proxy 2', poolFile, keysFile),
  ]);
  for (const p of [p1, p2]) {
    if ((await pollUntil(() => isReady(p), 5_000)) === undefined)
      throw new Error(`${p.name}: GET ${p.adminUrl}/readyz never answered 200`);
  }
  table(
    ['process', 'listens on', 'pid'],
    [
      ...list.map((b) => [`backend ${b.id}`, `127.0.0.1:${b.port}`, b.child.proc.pid]),
      ...[p1, p2].map((p) => [
        `tether-proxy (${p.name})`,
        `${p.url.slice(7)}, admin ${p.adminUrl.slice(7)}`,
        p.child.proc.pid,
      ]),
    ],
  );
  say('', `pool file ${poolFile}: Cookie affinity (cookie "${COOKIE_NAME}"), onEndpointFailure: Repin`);
  say(`both proxies: same pool file, same cookie keys file; both ready (GET /readyz → 200)`);
  return { claims, backends, ports, poolFile, p1, p2, clients: [] };
}

/**
 * Part 1. Rendezvous hashing of random session ids spreads clients only
 * statistically: 6 clients leave one of 3 endpoints empty about one run in
 * four. Clients keep arriving while an endpoint has none (40 at most), so
 * the failover below always has someone to move.
 */
async function partCookieAffinity(d: Demo): Promise<Map<string, string>> {
  d.claims.enter('cookie affinity');
  heading(
    `1. Cookie affinity: each client keeps its cookie jar (proxy 1, ${REQUESTS_PER_CLIENT} requests each)`,
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  agents.push(agent);
  const replies = new Map<string, Reply[]>();
  const join = async (): Promise<void> => {
    const c = new CookieClient(`client-${d.clients.length + 1}`, COOKIE_NAME, agent);
    d.clients.push(c);
    replies.set(c.id, await drive(c, d.p1.url, 1));
  };
  await Promise.all(Array.from({ length: FIRST_CLIENTS }, join));
  const firstEndpoint = (c: CookieClient): string => replies.get(c.id)?.[0]?.endpoint ?? '-';
  while (
    d.clients.length < MAX_CLIENTS &&
    ENDPOINT_IDS.some((id) => !d.clients.some((c) => firstEndpoint(c) === id))
  )
    await join();
  const extra = d.clients.length - FIRST_CLIENTS;
  await Promise.all(
    d.clients.map(async (c) => {
      replies.get(c.id)?.push(...(await drive(c, d.p1.url, REQUESTS_PER_CLIENT - 1)));
    }),
  );

  const pinned = new Map<string, string>();
  const rows = d.clients.map((c) => {
    const rs = replies.get(c.id) ?? [];
    const eps = endpointsOf(rs);
    if (eps.length === 1 && eps[0] !== '-') pinned.set(c.id, eps[0] as string);
    return [
      c.id,
      eps.join(', '),
      rs.length,
      rs.at(-1)?.count ?? '-',
      rs.filter((r) => r.setCookies.length > 0).length,
      rs.filter((r) => !isOk(r)).length,
    ];
  });
  table(['client', 'endpoint(s) seen', 'requests', 'backend count', 'Set-Cookie', 'errors'], rows);
  if (extra > 0)
    say(`(${extra} client(s) joined after the first ${FIRST_CLIENTS}, until every endpoint had one)`);
  const perEndpoint = countBy([...pinned.values()], (e) => e);
  say(
    '',
    `clients per endpoint: ${ENDPOINT_IDS.map((id) => `${id} ${perEndpoint.get(id) ?? 0}`).join(', ')}`,
    '',
  );

  const all = [...replies.entries()];
  const errors = all.flatMap(([id, rs]) => describeErrors(id, rs));
  d.claims.check(errors.length === 0, 'every request answered 200 by a backend', some(errors));
  const wandering = all
    .filter(([, rs]) => endpointsOf(rs).length !== 1)
    .map(([id, rs]) => `${id} saw ${endpointsOf(rs).join(', ')}`);
  d.claims.check(
    wandering.length === 0,
    `every client stayed on one endpoint for all ${REQUESTS_PER_CLIENT} requests`,
    some(wandering),
  );
  const counts = all
    .filter(([, rs]) => rs.at(-1)?.count !== REQUESTS_PER_CLIENT)
    .map(([id, rs]) => `${id}: ${rs.at(-1)?.count}`);
  d.claims.check(
    counts.length === 0,
    `each backend counted ${REQUESTS_PER_CLIENT} requests for each of its clients (the session stayed whole)`,
    some(counts),
  );
  const cookies = all.filter(
    ([, rs]) => rs[0]?.setCookies.length !== 1 || rs.slice(1).some((r) => r.setCookies.length > 0),
  );
  d.claims.check(
    cookies.length === 0,
    'the proxy set the cookie on the first response only',
    some(
      cookies.map(
        ([id, rs]) =>
          `${id}: Set-Cookie on responses ${rs.flatMap((r, i) => (r.setCookies.length > 0 ? [i + 1] : [])).join(',') || 'none'}`,
      ),
    ),
  );
  const unused = ENDPOINT_IDS.filter((id) => !perEndpoint.has(id));
  d.claims.check(
    unused.length === 0,
    'clients spread over all 3 endpoints',
    `no client on ${unused.join(', ')}`,
  );
  return pinned;
}

/** Part 2: the busiest backend dies for real; its clients, and only they, move. */
async function partFailover(
  d: Demo,
  pinned: Map<string, string>,
): Promise<{ victim: Backend; moved: Map<string, string>; preKill: Map<string, string | undefined> }> {
  d.claims.enter('failover');
  const perEndpoint = countBy([...pinned.values()], (e) => e);
  const victimId = [...ENDPOINT_IDS].sort(
    (a, b) => (perEndpoint.get(b) ?? 0) - (perEndpoint.get(a) ?? 0),
  )[0] as string;
  const victim = d.backends.get(victimId) as Backend;
  heading(`2. Failover: backend ${victimId} (pid ${victim.child.proc.pid}) killed with SIGKILL`);
  const preKill = new Map(d.clients.map((c) => [c.id, c.cookie]));
  victim.child.proc.kill('SIGKILL');
  await victim.child.exited;
  say(
    `${victimId} is gone (signal ${victim.child.proc.signalCode}); the same clients go on, ${REQUESTS_AFTER_KILL} requests each:`,
    '',
  );
  const before = await metricsText(d.p1);

  const replies = new Map<string, Reply[]>();
  await Promise.all(
    d.clients.map(async (c) => replies.set(c.id, await drive(c, d.p1.url, REQUESTS_AFTER_KILL))),
  );

  const moved = new Map<string, string>();
  const rows = d.clients.map((c) => {
    const rs = replies.get(c.id) ?? [];
    const eps = endpointsOf(rs);
    const was = pinned.get(c.id) ?? '-';
    const now = eps.join(', ');
    if (now !== was) moved.set(c.id, now);
    const newCookie = c.cookie !== preKill.get(c.id);
    return [
      c.id,
      was,
      now,
      now === was ? '' : 'moved',
      newCookie ? 'yes' : 'no',
      rs.filter((r) => !isOk(r)).length,
    ];
  });
  table(['client', 'before', 'after', '', 'new cookie', 'errors'], rows);
  const movedFrom = [...new Set([...moved.keys()].map((id) => pinned.get(id) ?? '-'))];
  say(
    '',
    `moved: ${moved.size} of ${d.clients.length}, ${movedFrom.length === 0 ? 'none' : `all from ${movedFrom.join(', ')}`}`,
  );
  const after = await metricsText(d.p1);
  const redispatched =
    metricSum(after, 'tether_proxy_redispatches_total') -
    metricSum(before, 'tether_proxy_redispatches_total');
  say(
    `requests redispatched by proxy 1 (connect to ${victimId} failed, retried once on the re-pin): ${redispatched}`,
    '',
  );

  const all = [...replies.entries()];
  const errors = all.flatMap(([id, rs]) => describeErrors(id, rs));
  d.claims.check(errors.length === 0, 'no client saw an error', some(errors));
  const victims = d.clients.filter((c) => pinned.get(c.id) === victimId).map((c) => c.id);
  const wrongMoves = [
    ...victims
      .filter((id) => !moved.has(id) || moved.get(id) === victimId)
      .map((id) => `${id} was on ${victimId} and did not move`),
    ...[...moved.keys()]
      .filter((id) => pinned.get(id) !== victimId)
      .map((id) => `${id} moved from ${pinned.get(id)}, which is alive`),
  ];
  d.claims.check(
    wrongMoves.length === 0,
    `exactly the ${victims.length} client(s) of ${victimId} moved`,
    some(wrongMoves),
  );
  const split = [...moved.entries()]
    .filter(([, eps]) => eps.includes(','))
    .map(([id, eps]) => `${id} saw ${eps}`);
  d.claims.check(
    split.length === 0,
    'each moved client landed on one endpoint and stayed there',
    some(split),
  );
  const cookieWrong = d.clients.flatMap((c) => {
    const changed = c.cookie !== preKill.get(c.id);
    if (moved.has(c.id) && !changed) return [`${c.id} moved but kept its old cookie`];
    if (!moved.has(c.id) && changed) return [`${c.id} stayed but got a new cookie`];
    return [];
  });
  d.claims.check(
    cookieWrong.length === 0,
    'moved clients got a new cookie; the others kept theirs',
    some(cookieWrong),
  );
  return { victim, moved, preKill };
}

/**
 * Part 3: the second proxy never saw these clients. Given the same cookie it
 * must pick the same endpoint; given a cookie pinned to the dead endpoint it
 * must re-pin exactly as proxy 1 did (rendezvous over the same healthy set).
 */
async function partAgreement(
  d: Demo,
  victim: Backend,
  moved: Map<string, string>,
  preKill: Map<string, string | undefined>,
): Promise<void> {
  d.claims.enter('two proxies agree');
  heading('3. A second proxy process, same pool file and cookie keys: same decisions');
  // Both proxies must see the dead endpoint as down before their re-pins can be compared.
  const down = await pollUntil(async () => {
    const texts = await Promise.all([metricsText(d.p1), metricsText(d.p2)]);
    return texts.every(
      (t) =>
        metricSum(t, 'tether_proxy_health_checks_total', { endpoint: victim.id, result: 'failure' }) >= 1,
    );
  }, 5_000);
  d.claims.check(
    down !== undefined,
    `both proxies' active health checks mark ${victim.id} down`,
    'no failed check within 5 s',
  );
  say("each client's cookie sent to both proxies: the current one, and the one it held before the kill", '');

  const mismatches: string[] = [];
  const errors: string[] = [];
  const rows = await Promise.all(
    d.clients.map(async (c) => {
      const old = preKill.get(c.id);
      const [p1Now, p2Now, p1Old, p2Old] = await Promise.all([
        c.getWith(d.p1.url, c.cookie),
        c.getWith(d.p2.url, c.cookie),
        c.getWith(d.p1.url, old),
        c.getWith(d.p2.url, old),
      ]);
      errors.push(...describeErrors(`${c.id} (4 requests)`, [p1Now, p2Now, p1Old, p2Old]));
      const current = moved.get(c.id) ?? p1Now.endpoint;
      if (p1Now.endpoint !== p2Now.endpoint || p1Now.endpoint !== current)
        mismatches.push(`${c.id} current cookie: proxy 1 → ${p1Now.endpoint}, proxy 2 → ${p2Now.endpoint}`);
      if (p1Old.endpoint !== p2Old.endpoint)
        mismatches.push(`${c.id} pre-kill cookie: proxy 1 → ${p1Old.endpoint}, proxy 2 → ${p2Old.endpoint}`);
      if (moved.has(c.id) && p2Old.endpoint !== moved.get(c.id))
        mismatches.push(
          `${c.id} pre-kill cookie on proxy 2 → ${p2Old.endpoint}, proxy 1 had re-pinned it to ${moved.get(c.id)}`,
        );
      const agree = p1Now.endpoint === p2Now.endpoint && p1Old.endpoint === p2Old.endpoint;
      return [
        c.id,
        p1Now.endpoint ?? '-',
        p2Now.endpoint ?? '-',
        p1Old.endpoint ?? '-',
        p2Old.endpoint ?? '-',
        moved.has(c.id) ? 're-pinned' : '',
        agree ? 'yes' : 'NO',
      ];
    }),
  );
  table(
    ['client', 'now: proxy 1', 'now: proxy 2', 'pre-kill: proxy 1', 'pre-kill: proxy 2', '', 'same'],
    rows,
  );
  say('');
  d.claims.check(errors.length === 0, 'no errors from either proxy', some(errors));
  d.claims.check(
    mismatches.length === 0,
    `both proxies picked the same endpoint for all ${d.clients.length} clients, re-pinned ones included`,
    some(mismatches),
  );
}

/** Part 4: the pool file switches to ClientIP; the key is the source address (/32). */
async function partClientIp(d: Demo): Promise<void> {
  d.claims.enter('ClientIP affinity');
  heading('4. ClientIP affinity: clients from 127.0.0.2 … 127.0.0.9 (ipv4PrefixLength 32)');
  const reload = await rewritePool(d, { affinity: 'ClientIP', draining: undefined });
  say(
    `pool file rewritten (affinity.type: ClientIP); both proxies reloaded it in ${reload.ms} ms (revisions ${reload.revisions.join(', ')})`,
    '',
  );
  const n = 10;
  const results = await Promise.all(
    CLIENT_IP_ADDRESSES.map(async (address) => {
      // One keep-alive agent per source address: its connections leave from that address.
      const agent = new Agent({ keepAlive: true, localAddress: address });
      agents.push(agent);
      const one = async (baseUrl: string): Promise<Reply[]> => {
        const rs: Reply[] = [];
        for (let i = 0; i < n; i++) rs.push(await getReply(`${baseUrl}/cart`, agent));
        return rs;
      };
      const [r1, r2] = await Promise.all([one(d.p1.url), one(d.p2.url)]);
      return { address, r1, r2 };
    }),
  );
  table(
    ['source address', `proxy 1 (${n} requests)`, `proxy 2 (${n} requests)`, 'backend saw client', 'errors'],
    results.map(({ address, r1, r2 }) => [
      address,
      endpointsOf(r1).join(', '),
      endpointsOf(r2).join(', '),
      [...new Set([...r1, ...r2].map((r) => r.client ?? '-'))].join(', '),
      [...r1, ...r2].filter((r) => !isOk(r)).length,
    ]),
  );
  const per = countBy(results, (r) => endpointsOf(r.r1).join(', '));
  say('', `addresses per endpoint: ${[...per.entries()].map(([e, k]) => `${e} ${k}`).join(', ')}`, '');

  const errors = results.flatMap((r) => [
    ...describeErrors(`${r.address} via proxy 1`, r.r1),
    ...describeErrors(`${r.address} via proxy 2`, r.r2),
  ]);
  d.claims.check(errors.length === 0, 'every request answered 200 by a backend', some(errors));
  const wandering = results.flatMap((r) =>
    [r.r1, r.r2].flatMap((rs, i) =>
      endpointsOf(rs).length === 1
        ? []
        : [`${r.address} via proxy ${i + 1} saw ${endpointsOf(rs).join(', ')}`],
    ),
  );
  d.claims.check(wandering.length === 0, 'each source address stayed on one endpoint', some(wandering));
  const disagree = results
    .filter((r) => endpointsOf(r.r1).join() !== endpointsOf(r.r2).join())
    .map(
      (r) =>
        `${r.address}: proxy 1 → ${endpointsOf(r.r1).join(', ')}, proxy 2 → ${endpointsOf(r.r2).join(', ')}`,
    );
  d.claims.check(
    disagree.length === 0,
    'both proxies chose the same endpoint for every address',
    some(disagree),
  );
  const xff = results
    .filter((r) => [...r.r1, ...r.r2].some((x) => x.client !== r.address))
    .map((r) => r.address);
  d.claims.check(
    xff.length === 0,
    'backends saw the real client address (X-Forwarded-For)',
    `wrong for ${xff.join(', ')}`,
  );
}

/**
 * Part 5: the dead backend comes back (same port), then the pool file
 * marks the busiest live endpoint draining, as Kubernetes does with a
 * terminating pod.
 */
async function partDraining(
  d: Demo,
  victim: Backend,
  pinned: Map<string, string>,
  moved: Map<string, string>,
): Promise<string> {
  d.claims.enter('draining');
  heading('5. Draining: pinned clients stay, new clients go elsewhere');
  const revived = await startBackend(children, victim.id, victim.port);
  d.backends.set(victim.id, revived);
  const healthy = await pollUntil(async () => {
    const texts = await Promise.all([metricsText(d.p1), metricsText(d.p2)]);
    return texts.every((t) => metricSum(t, 'tether_proxy_endpoint_healthy', { endpoint: victim.id }) === 1);
  }, 5_000);
  d.claims.check(
    healthy !== undefined,
    `${victim.id} restarted on port ${victim.port} (pid ${revived.child.proc.pid}); both proxies see it healthy again`,
    'tether_proxy_endpoint_healthy stayed 0 for 5 s',
  );

  // Where each client's cookie pins it now: where part 2 left it (the pool
  // is on ClientIP at this point, so asking the proxy would answer by address).
  const pinnedNow = new Map(d.clients.map((c) => [c.id, moved.get(c.id) ?? pinned.get(c.id) ?? '-']));
  const load = countBy([...pinnedNow.values()], (e) => e);
  const drainId = ENDPOINT_IDS.filter((id) => id !== victim.id).sort(
    (a, b) => (load.get(b) ?? 0) - (load.get(a) ?? 0),
  )[0] as string;
  const reload = await rewritePool(d, { affinity: 'Cookie', draining: drainId });
  say(
    `pool file rewritten (affinity.type: Cookie, ${drainId} draining: true); both proxies reloaded it in ${reload.ms} ms (revisions ${reload.revisions.join(', ')})`,
  );
  const gauge = metricSum(await metricsText(d.p1), 'tether_proxy_endpoint_draining', { endpoint: drainId });
  say(`proxy 1: tether_proxy_endpoint_draining{endpoint="${drainId}"} ${gauge}`, '');

  const n = 5;
  const replies = new Map<string, Reply[]>();
  await Promise.all(d.clients.map(async (c) => replies.set(c.id, await drive(c, d.p1.url, n))));
  say(`the ${d.clients.length} existing clients, ${n} requests each (proxy 1):`);
  table(
    ['client', 'pinned to', `served by`, 'note'],
    d.clients.map((c) => {
      const was = pinnedNow.get(c.id) ?? '-';
      const now = endpointsOf(replies.get(c.id) ?? []).join(', ');
      let note = '';
      if (now !== was) note = 'MOVED';
      else if (was === drainId) note = 'kept by the draining endpoint';
      else if (moved.has(c.id)) note = `re-pinned in part 2; did not go back to ${victim.id}`;
      return [c.id, was, now, note];
    }),
  );

  const fresh = Array.from(
    { length: NEW_CLIENTS_WHILE_DRAINING },
    (_, i) => new CookieClient(`new-${i + 1}`, COOKIE_NAME, agents[0] as Agent),
  );
  const freshReplies = await Promise.all(fresh.map((c) => drive(c, d.p1.url, 3)));
  const landed = countBy(freshReplies, (rs) => endpointsOf(rs).join(', '));
  say('', `${NEW_CLIENTS_WHILE_DRAINING} new clients (no cookie), 3 requests each (proxy 1):`);
  table(
    ['endpoint', 'new clients', 'state'],
    ENDPOINT_IDS.map((id) => [id, landed.get(id) ?? 0, id === drainId ? 'draining' : 'ready']),
  );
  say('');

  const errors = [
    ...[...replies.entries()].flatMap(([id, rs]) => describeErrors(id, rs)),
    ...freshReplies.flatMap((rs, i) => describeErrors(`new-${i + 1}`, rs)),
  ];
  d.claims.check(errors.length === 0, 'every request answered 200 by a backend', some(errors));
  const drainers = d.clients.filter((c) => pinnedNow.get(c.id) === drainId);
  const left = drainers
    .filter((c) => endpointsOf(replies.get(c.id) ?? []).join() !== drainId)
    .map((c) => c.id);
  d.claims.check(
    drainers.length > 0 && left.length === 0,
    `the ${drainers.length} client(s) pinned to ${drainId} stayed on it while it drains`,
    drainers.length === 0 ? `no client was pinned to ${drainId}` : `left it: ${left.join(', ')}`,
  );
  const movedAgain = d.clients
    .filter(
      (c) =>
        pinnedNow.get(c.id) !== drainId &&
        endpointsOf(replies.get(c.id) ?? []).join() !== pinnedNow.get(c.id),
    )
    .map((c) => `${c.id}: ${pinnedNow.get(c.id)} → ${endpointsOf(replies.get(c.id) ?? []).join(', ')}`);
  d.claims.check(
    movedAgain.length === 0,
    `no other client moved (none went back to the revived ${victim.id})`,
    some(movedAgain),
  );
  const onDraining = landed.get(drainId) ?? 0;
  d.claims.check(
    onDraining === 0,
    `0 of ${NEW_CLIENTS_WHILE_DRAINING} new clients landed on the draining ${drainId}`,
    `${onDraining} did`,
  );
  const split = freshReplies.filter((rs) => endpointsOf(rs).length !== 1).length;
  d.claims.check(
    split === 0,
    'each new client stayed on its endpoint',
    `${split} new clients saw more than one endpoint`,
  );
  return drainId;
}

/** Part 6: the same story as Prometheus counters. */
async function partMetrics(d: Demo): Promise<void> {
  d.claims.enter('metrics');
  heading(`6. Metrics: GET ${d.p1.adminUrl}/metrics (proxy 1)`);
  const text = await metricsText(d.p1);
  for (const name of [
    'tether_proxy_affinity_decisions_total',
    'tether_proxy_requests_total',
    'tether_proxy_redispatches_total',
  ]) {
    for (const line of metricLines(text, name)) say(line);
  }
  say('');
  const decisions = (outcome: string): number =>
    metricSum(text, 'tether_proxy_affinity_decisions_total', { pool: POOL, outcome });
  d.claims.check(
    decisions('hit') > 0 && decisions('new') > 0 && decisions('repin') > 0,
    'affinity decisions counted: hits, new pins and re-pins',
    `hit ${decisions('hit')}, new ${decisions('new')}, repin ${decisions('repin')}`,
  );
  const ok2xx = metricSum(text, 'tether_proxy_requests_total', { pool: POOL, code_class: '2xx' });
  const bad5xx = metricSum(text, 'tether_proxy_requests_total', { pool: POOL, code_class: '5xx' });
  d.claims.check(
    ok2xx > 0 && bad5xx === 0,
    'requests counted by endpoint, no 5xx',
    `2xx ${ok2xx}, 5xx ${bad5xx}`,
  );
}

async function main(): Promise<boolean> {
  process.stdout.write(
    `Tether demo: the sticky proxy on three local backends, no cluster (Node ${process.version})\n`,
  );
  const claims = new Claims();
  const d = await setup(claims);
  const pinned = await partCookieAffinity(d);
  const { victim, moved, preKill } = await partFailover(d, pinned);
  await partAgreement(d, victim, moved, preKill);
  await partClientIp(d);
  await partDraining(d, victim, pinned, moved);
  await partMetrics(d);
  // Not started alongside parts 1–6: on 2 busy cores its start slows their health checks past 500 ms.
  await partSessionStore(() => prepareSessionStore(children, tmp), claims);
  return claims.summarize();
}

/** Stops everything (gracefully first) and says so. */
async function shutdown(): Promise<void> {
  for (const a of agents) a.destroy();
  await children.stopAll(3_000);
  rmSync(tmp, { recursive: true, force: true });
}

let ok = false;
try {
  ok = await main();
} catch (err) {
  process.stdout.write(`\ndemo aborted: ${(err as Error).stack ?? err}\n`);
}
await shutdown();
const left = children.running();
process.stdout.write(
  `\nstopped every process the demo started${left.length === 0 ? '' : ` (still running: ${left.join(', ')})`}, removed ${tmp}; ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
);
process.exit(ok && left.length === 0 ? 0 : 1);
