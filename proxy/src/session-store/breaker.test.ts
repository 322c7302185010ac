import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from './breaker.ts';

const opts = { failureThreshold: 3, openMs: 500, maxOpenMs: 2_000 };

describe('CircuitBreaker', () => {
  it('stays closed below the threshold, and a success resets the count', () => {
    const b = new CircuitBreaker(opts);
    expect(b.fail(0)).toBe(false);
    expect(b.fail(0)).toBe(false);
    b.succeed();
    expect(b.fail(0)).toBe(false);
    expect(b.fail(0)).toBe(false);
    expect(b.state).toBe('closed');
    expect(b.allow(0)).toBe(true);
  });

  it('opens at the threshold, refuses for openMs, then lets exactly one probe through', () => {
    const b = new CircuitBreaker(opts);
    b.fail(0);
    b.fail(0);
    expect(b.fail(100)).toBe(true);
    expect(b.state).toBe('open');
    expect(b.probeAtMs).toBe(600);
    expect(b.allow(599)).toBe(false);
    expect(b.allow(600)).toBe(true);
    expect(b.state).toBe('half-open');
    expect(b.allow(601)).toBe(false);
    b.succeed();
    expect(b.state).toBe('closed');
    expect(b.allow(602)).toBe(true);
  });

  it('a failed probe reopens for twice as long, up to the maximum; a success resets it', () => {
    const b = new CircuitBreaker(opts);
    for (let i = 0; i < 3; i++) b.fail(0);
    const periods: number[] = [];
    let now = 0;
    for (let round = 0; round < 4; round++) {
      let t = now;
      while (!b.allow(t)) t += 50;
      periods.push(t - now);
      expect(b.fail(t)).toBe(true);
      now = t;
    }
    expect(periods).toEqual([500, 1_000, 2_000, 2_000]);
    while (!b.allow(now)) now += 50;
    b.succeed();
    for (let i = 0; i < 3; i++) b.fail(now);
    expect(b.allow(now + 499)).toBe(false);
    expect(b.allow(now + 500)).toBe(true);
  });

  it('failures reported while open (calls started before it opened) change nothing', () => {
    const b = new CircuitBreaker(opts);
    for (let i = 0; i < 3; i++) b.fail(0);
    expect(b.fail(10)).toBe(false);
    expect(b.allow(500)).toBe(true);
  });
});
