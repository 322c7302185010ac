// The operator's push (operator/src/push.ts) against real tether-proxy
// processes on loopback: tables arrive, a proxy already holding the table is
// not asked again, a proxy holding a higher revision is outbid, a wrong token
// is reported.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashTableContent } from '../../operator/src/build/routing-table-for.ts';
import { OperatorMetrics } from '../../operator/src/metrics.ts';
import { type ProxyTarget, Pusher } from '../../operator/src/push.ts';
import { testTable } from '../helpers/pools.ts';
import {
  type ProxyProcess,
  type Scratch,
  scratch,
  servedRevision,
  startProxy,
} from '../helpers/proxy-process.ts';

const TOKEN = 'operator-push-test-token';
let s: Scratch;
let proxies: ProxyProcess[];
let targets: ProxyTarget[];
const metrics = new OperatorMetrics();
const pusher = new Pusher(metrics, 2_000);

const table = (revision: number, port = 1) => testTable(revision, [{ name: 'a', port }], {}, 'team/api');
const hashOf = (t: ReturnType<typeof table>) => {
  const { revision: _r, ...content } = t;
  return hashTableContent(content);
};
const pushCount = async (result: string) =>
  (await metrics.pushes.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

beforeAll(async () => {
  s = scratch();
  const tokenFile = s.write('token', `${TOKEN}\n`);
  proxies = await Promise.all([0, 1].map(() => startProxy(['--admin-token-file', tokenFile])));
  targets = proxies.map((p, i) => ({
    pod: `proxy-${i}`,
    address: '127.0.0.1',
    port: Number(new URL(p.adminUrl).port),
    incarnation: `uid-${i}/0`,
  }));
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  await pusher.close();
  s.cleanup();
});

describe('Pusher against real proxies', () => {
  it('puts the table on every proxy and skips proxies known to hold it', async () => {
    const t = table(3);
    const r = await pusher.push(t, hashOf(t), targets, TOKEN);
    expect(r).toEqual({ inSync: 2, errors: [], higherRevision: undefined, unauthorized: false });
    expect(await Promise.all(proxies.map(servedRevision))).toEqual([3, 3]);
    const okBefore = await pushCount('ok');
    expect((await pusher.push(t, hashOf(t), targets, TOKEN)).inSync).toBe(2);
    expect(await pushCount('ok')).toBe(okBefore);
  });

  it('a restarted proxy (new incarnation) is asked again', async () => {
    const t = table(3);
    const okBefore = await pushCount('ok');
    const moved = targets.map((x) => ({ ...x, incarnation: `${x.incarnation}-restarted` }));
    expect((await pusher.push(t, hashOf(t), moved, TOKEN)).inSync).toBe(2);
    expect(await pushCount('ok')).toBe(okBefore + 2);
  });

  it('reports the higher revision a proxy holds (409), so the next table outbids it', async () => {
    const t = table(2, 2);
    const r = await pusher.push(t, hashOf(t), targets, TOKEN);
    expect(r.inSync).toBe(0);
    expect(r.higherRevision).toBe(3);
    // Same revision, other content: also outbid (the revision is taken).
    const same = table(3, 2);
    expect((await pusher.push(same, hashOf(same), targets, TOKEN)).higherRevision).toBe(3);
    const next = table(4, 2);
    expect((await pusher.push(next, hashOf(next), targets, TOKEN)).inSync).toBe(2);
  });

  it('a wrong token is unauthorized; an unreachable proxy is an error, not a throw', async () => {
    const t = table(5);
    const r = await pusher.push(t, hashOf(t), targets, 'wrong');
    expect(r.unauthorized).toBe(true);
    expect(r.inSync).toBe(0);
    const gone = { pod: 'gone', address: '127.0.0.1', port: 1, incarnation: 'gone/0' };
    const r2 = await pusher.push(t, hashOf(t), [gone], TOKEN);
    expect(r2.errors).toHaveLength(1);
    expect(r2.errors[0]).toMatch(/^gone: /);
  });
});
