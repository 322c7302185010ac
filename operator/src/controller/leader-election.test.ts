import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock.ts';
import {
  LeaderElector,
  type LeaseRecord,
  type LeaseStore,
  planLease,
  type StoredLease,
} from './leader-election.ts';

const rec = (holder: string, renewTime = 'r1', transitions = 0): LeaseRecord => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  acquireTime: 'a',
  renewTime,
  leaseTransitions: transitions,
});
const opts = { identity: 'me', leaseDurationMs: 15_000 };

describe('planLease', () => {
  it.each([
    { desc: 'no Lease: create', cur: undefined, obs: undefined, now: 0, want: 'create' },
    { desc: 'mine: renew', cur: rec('me'), obs: undefined, now: 0, want: 'update' },
    { desc: 'other, first seen now: held', cur: rec('a'), obs: undefined, now: 100_000, want: 'held' },
    {
      desc: 'other, unchanged for less than the lease: held',
      cur: rec('a'),
      obs: { record: rec('a'), at: 100_000 },
      now: 114_999,
      want: 'held',
    },
    {
      desc: 'other, unchanged for the lease: take over',
      cur: rec('a'),
      obs: { record: rec('a'), at: 100_000 },
      now: 115_000,
      want: 'update',
    },
    {
      desc: 'other renewed since last seen: held (silence restarts)',
      cur: rec('a', 'r2'),
      obs: { record: rec('a', 'r1'), at: 0 },
      now: 115_000,
      want: 'held',
    },
    { desc: 'released (holder empty): take', cur: rec(''), obs: undefined, now: 0, want: 'update' },
  ])('$desc', ({ cur, obs, now, want }) => {
    expect(planLease(cur, obs, opts, now, 'W').kind).toBe(want);
  });

  it('a takeover counts a transition and sets acquireTime; a renew keeps both', () => {
    const take = planLease(rec('a', 'r', 4), { record: rec('a', 'r', 4), at: 0 }, opts, 20_000, 'W');
    expect(take).toMatchObject({
      kind: 'update',
      record: { holderIdentity: 'me', leaseTransitions: 5, acquireTime: 'W' },
    });
    const renew = planLease({ ...rec('me', 'r', 5), acquireTime: 'A' }, undefined, opts, 0, 'W2');
    expect(renew).toMatchObject({ record: { leaseTransitions: 5, acquireTime: 'A', renewTime: 'W2' } });
  });
});

/** An in-memory Lease with resourceVersion checks; `fail` makes calls throw (apiserver unreachable). */
class MemoryStore implements LeaseStore {
  lease: StoredLease | undefined;
  fail = false;
  private rv = 0;
  async get() {
    if (this.fail) throw new Error('down');
    return this.lease;
  }
  async create(r: LeaseRecord) {
    if (this.fail) throw new Error('down');
    if (this.lease) throw new Error('409');
    this.lease = { record: r, resourceVersion: String(++this.rv) };
    return this.lease;
  }
  async update(r: LeaseRecord, rv: string) {
    if (this.fail) throw new Error('down');
    if (this.lease?.resourceVersion !== rv) throw new Error('409');
    this.lease = { record: r, resourceVersion: String(++this.rv) };
    return this.lease;
  }
}

const flush = () => new Promise((r) => setImmediate(r));
async function advance(c: FakeClock, ms: number, step = 100) {
  for (let t = 0; t < ms; t += step) {
    c.advance(step);
    await flush();
  }
}

/**
 * The wall clock that goes with a fake clock. With the real one, a whole
 * simulated minute passes in a few real milliseconds, successive renews carry
 * the same renewTime, and a candidate takes an unchanged record for a silent
 * holder.
 */
function wallOf(c: FakeClock): () => Date {
  return () => new Date(Date.UTC(2026, 0, 1) + c.now());
}

describe('LeaderElector', () => {
  const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

  it('one of two leads; the other takes over only after the leader stops renewing for the lease', async () => {
    const c = new FakeClock();
    const store = new MemoryStore();
    const log: string[] = [];
    const mk = (id: string) =>
      new LeaderElector(
        store,
        { identity: id, ...timing },
        { onStartedLeading: () => log.push(`${id} leads`), onStoppedLeading: () => log.push(`${id} stops`) },
        c,
        wallOf(c),
      );
    const a = mk('a');
    const b = mk('b');
    void a.run();
    await flush();
    void b.run();
    await advance(c, 30_000);
    expect(log).toEqual(['a leads']);
    // a's process hangs (no renew, no release): simulate by stopping its loop without release.
    (a as unknown as { stopped: boolean }).stopped = true;
    // b counts the lease from when it last saw a renew, not from the hang: a
    // renewed up to one retry period (2 s) before it, and b polls every 2–2.4 s
    // (client-go's jitter). So b takes over between 13 s and 15 + 2.4 + 2.4 s
    // after the hang, never earlier.
    await advance(c, 12_900);
    expect(log).toEqual(['a leads']);
    await advance(c, 7_000);
    expect(log).toEqual(['a leads', 'b leads']);
    expect(store.lease?.record).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await b.stop();
  });

  it('a leader that cannot renew stops leading once the renew deadline passes', async () => {
    const c = new FakeClock();
    const store = new MemoryStore();
    const log: Array<[string, number]> = [];
    const a = new LeaderElector(
      store,
      { identity: 'a', ...timing },
      {
        onStartedLeading: () => log.push(['leads', c.now()]),
        onStoppedLeading: () => log.push(['stops', c.now()]),
      },
      c,
      wallOf(c),
    );
    void a.run();
    await advance(c, 4_000);
    store.fail = true;
    const failedAt = c.now();
    await advance(c, 20_000);
    expect(log.map((x) => x[0])).toEqual(['leads', 'stops']);
    const stoppedAt = log[1]?.[1] as number;
    // Last renew ≤ failedAt; stop comes by the deadline (+ one retry period of granularity).
    expect(stoppedAt - failedAt).toBeLessThanOrEqual(timing.renewDeadlineMs + timing.retryPeriodMs);
    expect(a.isLeader).toBe(false);
  });

  it('stop() releases the Lease so a successor takes it without waiting', async () => {
    const c = new FakeClock();
    const store = new MemoryStore();
    const a = new LeaderElector(
      store,
      { identity: 'a', ...timing },
      { onStartedLeading() {}, onStoppedLeading() {} },
      c,
      wallOf(c),
    );
    void a.run();
    await advance(c, 1_000);
    await a.stop();
    expect(store.lease?.record.holderIdentity).toBe('');
    let bLeads = false;
    const b = new LeaderElector(
      store,
      { identity: 'b', ...timing },
      {
        onStartedLeading: () => {
          bLeads = true;
        },
        onStoppedLeading() {},
      },
      c,
      wallOf(c),
    );
    void b.run();
    await advance(c, 500);
    expect(bLeads).toBe(true);
    await b.stop();
  });

  it('refuses timings client-go refuses', () => {
    expect(
      () =>
        new LeaderElector(
          new MemoryStore(),
          { identity: 'a', leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
          { onStartedLeading() {}, onStoppedLeading() {} },
          new FakeClock(),
        ),
    ).toThrow(RangeError);
  });
});
