import { describe, expect, it } from 'vitest';

describe('tether/session-store (entry.js)', () => {
  it('re-exports every export of index.ts, and says which file it loaded', async () => {
    const index = await import('./index.ts');
    const entry = (await import('./entry.js')) as Record<string, unknown>;
    const { loadedFrom, ...rest } = entry;
    expect(Object.keys(rest).sort()).toEqual(Object.keys(index).sort());
    expect(String(loadedFrom)).toMatch(/\/(dist\/proxy\/src\/session-store\/index\.js|index\.ts)$/);
  });
});
