import { describe, expect, it } from 'vitest';
import { RateLimitedLog } from './rate-limited-log.ts';

describe('RateLimitedLog', () => {
  it('logs the first occurrence, then at most one per interval with the count left out', () => {
    const l = new RateLimitedLog(10_000);
    const taken: Array<[number, number]> = [];
    for (let t = 0; t <= 25_000; t += 1_000) {
      const r = l.take(t);
      if (r !== undefined) taken.push([t, r.suppressed]);
    }
    expect(taken).toEqual([
      [0, 0],
      [10_000, 9],
      [20_000, 9],
    ]);
  });

  it('counts every occurrence between lines, however many', () => {
    const l = new RateLimitedLog(1_000);
    l.take(0);
    for (let i = 0; i < 5_000; i++) expect(l.take(500)).toBeUndefined();
    expect(l.take(1_000)).toEqual({ suppressed: 5_000 });
  });
});
