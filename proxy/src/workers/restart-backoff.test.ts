import { describe, expect, it } from 'vitest';
import { RestartBackoff } from './restart-backoff.ts';

describe('RestartBackoff', () => {
  it('doubles the delay while the worker keeps dying soon after its start, up to the cap', () => {
    const b = new RestartBackoff();
    const delays = Array.from({ length: 10 }, () => b.onExit(1_000));
    expect(delays).toEqual([100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000]);
    expect(b.consecutiveQuickExits).toBe(10);
  });

  it('re-forks at once after a healthy run, and starts counting again', () => {
    const b = new RestartBackoff();
    b.onExit(50);
    b.onExit(50);
    expect(b.onExit(10_000)).toBe(0);
    expect(b.consecutiveQuickExits).toBe(0);
    expect(b.onExit(50)).toBe(100);
  });

  it('takes its settings, and never overflows however long the loop', () => {
    const b = new RestartBackoff({ initialMs: 10, maxMs: 50, healthyAfterMs: 1_000 });
    expect([b.onExit(0), b.onExit(0), b.onExit(0), b.onExit(0)]).toEqual([10, 20, 40, 50]);
    for (let i = 0; i < 2_000; i++) b.onExit(0);
    expect(b.onExit(999)).toBe(50);
    expect(b.onExit(1_000)).toBe(0);
  });
});
