import { describe, expect, it } from 'vitest';
import { pollUntil } from './poll.ts';

describe('pollUntil', () => {
  it('returns the first answer that is neither undefined nor false', async () => {
    let calls = 0;
    const got = await pollUntil(
      () => (++calls === 3 ? { calls } : calls === 1 ? undefined : false),
      5_000,
      1,
    );
    expect(got).toEqual({ calls: 3 });
  });

  it('returns undefined once the time is up, after at least one call', async () => {
    let calls = 0;
    const t0 = Date.now();
    expect(
      await pollUntil(
        () => {
          calls++;
          return false;
        },
        100,
        10,
      ),
    ).toBeUndefined();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(calls).toBeGreaterThan(1);
    let once = 0;
    expect(
      await pollUntil(async () => {
        once++;
        return undefined;
      }, 0),
    ).toBeUndefined();
    expect(once).toBe(1);
  });

  it('lets an error of the probe through', async () => {
    await expect(
      pollUntil(() => {
        throw new Error('probe broke');
      }, 1_000),
    ).rejects.toThrow('probe broke');
  });
});
