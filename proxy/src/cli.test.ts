import { describe, expect, it } from 'vitest';
import { flagsSchema } from './data-plane.ts';

describe('session store flags', () => {
  it('defaults the store timeout to 50ms and leaves the store off', () => {
    const f = flagsSchema.parse({});
    expect(f['session-store-timeout']).toBe('50ms');
    expect(f['session-store']).toBeUndefined();
  });

  it.each([
    { desc: 'zero', value: '0s', ok: false },
    { desc: 'above a second', value: '1500ms', ok: false },
    { desc: 'no unit', value: '50', ok: false },
    { desc: 'the least', value: '1ms', ok: true },
    { desc: 'the most', value: '1s', ok: true },
  ])('--session-store-timeout $desc ($value) → ok=$ok', ({ value, ok }) => {
    const r = flagsSchema.safeParse({ 'session-store-timeout': value });
    expect(r.success).toBe(ok);
    if (!ok && value !== '50') expect(JSON.stringify(r.error)).toMatch(/between 1ms and 1s/);
  });

  it('a duration flag without a unit is a validation error, not a throw (it used to escape safeParse)', () => {
    const r = flagsSchema.safeParse({ 'client-header-timeout': '50' });
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error)).toMatch(/a duration such as/);
    expect(flagsSchema.safeParse({ 'client-header-timeout': '50ms' }).success).toBe(false);
    expect(flagsSchema.safeParse({ 'client-header-timeout': '100ms' }).success).toBe(true);
  });
});
