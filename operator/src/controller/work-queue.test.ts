import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock.ts';
import { RateLimiter } from './rate-limiter.ts';
import { WorkQueue } from './work-queue.ts';

/** Takes every key available now (the queue hands them out synchronously when queued). */
async function drain(q: WorkQueue): Promise<string[]> {
  const got: string[] = [];
  while (q.depth > 0) got.push((await q.get()) as string);
  return got;
}

describe('WorkQueue', () => {
  it('de-duplicates keys added before a worker takes them', async () => {
    const q = new WorkQueue(new FakeClock());
    q.add('a');
    q.add('b');
    q.add('a');
    expect(await drain(q)).toEqual(['a', 'b']);
  });

  it('never hands a key being processed to a second worker; re-queues it on done', async () => {
    const q = new WorkQueue(new FakeClock());
    q.add('a');
    const first = await q.get();
    q.add('a'); // while processing: dirty, not queued
    expect(q.depth).toBe(0);
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(first as string);
    await Promise.resolve();
    expect(second).toBe('a');
  });

  it('wakes a waiting worker when a key arrives; shutDown releases waiters', async () => {
    const q = new WorkQueue(new FakeClock());
    const w1 = q.get();
    const w2 = q.get();
    q.add('x');
    expect(await w1).toBe('x');
    q.shutDown();
    expect(await w2).toBeUndefined();
    q.add('y');
    expect(q.depth).toBe(0);
  });

  it('addAfter waits on the clock; the earlier of two delays wins', async () => {
    const c = new FakeClock();
    const q = new WorkQueue(c);
    q.addAfter('a', 100);
    q.addAfter('a', 50);
    q.addAfter('a', 500);
    c.advance(49);
    expect(q.depth).toBe(0);
    c.advance(1);
    expect(await drain(q)).toEqual(['a']);
    c.advance(1000);
    expect(q.depth).toBe(0);
  });

  it('reports depth and latency', async () => {
    const c = new FakeClock();
    const depths: number[] = [];
    const latencies: number[] = [];
    const q = new WorkQueue(c, undefined, {
      onDepth: (d) => depths.push(d),
      onLatency: (ms) => latencies.push(ms),
    });
    q.add('a');
    q.add('b');
    c.advance(30);
    await drain(q);
    expect(depths).toEqual([1, 2, 1, 0]);
    expect(latencies).toEqual([30, 30]);
  });
});

describe('RateLimiter', () => {
  it('backs off per key 5 ms · 2^n up to 1000 s, and forget resets', () => {
    const r = new RateLimiter(new FakeClock(), {
      baseDelayMs: 5,
      maxDelayMs: 1_000_000,
      qps: 1e9,
      burst: 1e9,
    });
    const delays = Array.from({ length: 20 }, () => r.when('a'));
    expect(delays.slice(0, 4)).toEqual([5, 10, 20, 40]);
    expect(delays[19]).toBe(1_000_000);
    expect(r.when('b')).toBe(5);
    r.forget('a');
    expect(r.when('a')).toBe(5);
  });

  it('the token bucket (10 qps, burst 100) limits a storm of first failures', () => {
    const c = new FakeClock();
    const r = new RateLimiter(c);
    const delays = Array.from({ length: 110 }, (_, i) => r.when(`k${i}`));
    expect(delays.slice(0, 100).every((d) => d === 5)).toBe(true);
    expect(delays[100]).toBeCloseTo(100);
    expect(delays[109]).toBeCloseTo(1000);
    c.advance(10_000); // refills to the burst
    expect(r.when('later')).toBe(5);
  });
});
