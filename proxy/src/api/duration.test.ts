import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it.each([
    { desc: 'milliseconds', text: '500ms', want: 500 },
    { desc: 'seconds', text: '10s', want: 10_000 },
    { desc: 'minutes', text: '30m', want: 1_800_000 },
    { desc: 'hours', text: '24h', want: 86_400_000 },
    { desc: 'compound', text: '1h30m', want: 5_400_000 },
    { desc: 'zero', text: '0s', want: 0 },
  ])('$desc: $text → $want ms', ({ text, want }) => {
    expect(parseDuration(text)).toBe(want);
  });

  it.each(['', '10', 's', '1.5s', '-1s', '1d', '10 s', '1h 30m'])('refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow(RangeError);
  });
});
