import { describe, expect, it } from 'vitest';
import { digest, murmur3, pickTop, rank } from './rendezvous.ts';

const endpoints = (ids: string[], weights: number[] = []) =>
  ids.map((id, i) => ({ id, digest: digest(id), weight: weights[i] ?? 1 }));
const keys = (n: number) => Array.from({ length: n }, (_, i) => `client-${i}`);
const all = () => true;

describe('murmur3 (golden: a change here re-pins every client of every proxy)', () => {
  it.each([
    { text: '', seed: 0, want: 0 },
    { text: 'a', seed: 0, want: 1867108634 },
    { text: 'hello', seed: 0, want: 3619887497 },
    { text: 'hello', seed: 0x5f3759df, want: 2256162680 },
  ])('murmur3($text, $seed) = $want', ({ text, seed, want }) => {
    expect(murmur3(text, seed)).toBe(want);
  });
});

describe('rendezvous choice', () => {
  const eps = endpoints(['shop-a', 'shop-b', 'shop-c']);

  it.each([
    { key: '10.0.1.0/24', want: 'shop-c' },
    { key: 'user-42', want: 'shop-a' },
    { key: 'AAAAAAAAAAAAAAAA', want: 'shop-b' },
    { key: 'x', want: 'shop-c' },
  ])('golden: $key → $want', ({ key, want }) => {
    expect(eps[pickTop(digest(key), eps, all)]?.id).toBe(want);
  });

  it('does not depend on the order of the endpoint list', () => {
    const reversed = [...eps].reverse();
    for (const k of keys(500)) {
      expect(eps[pickTop(digest(k), eps, all)]?.id).toBe(reversed[pickTop(digest(k), reversed, all)]?.id);
    }
  });

  it('spreads keys evenly (each of 3 gets 33% ± 2% of 30 000 keys)', () => {
    const counts = new Map<string, number>();
    for (const k of keys(30_000)) {
      const id = eps[pickTop(digest(k), eps, all)]!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const c of counts.values()) expect(Math.abs(c / 30_000 - 1 / 3)).toBeLessThan(0.02);
  });

  it('respects weights 1:2:1 (25% / 50% / 25% ± 2%)', () => {
    const w = endpoints(['a', 'b', 'c'], [1, 2, 1]);
    const counts = [0, 0, 0];
    for (const k of keys(30_000)) counts[pickTop(digest(k), w, all)]!++;
    for (const [i, share] of [0.25, 0.5, 0.25].entries())
      expect(Math.abs(counts[i]! / 30_000 - share)).toBeLessThan(0.02);
  });

  it.each([3, 5, 10])('removing one endpoint of %i moves only its own keys (≈ 1/N)', (n) => {
    const ids = Array.from({ length: n }, (_, i) => `pod-${i}`);
    const before = endpoints(ids);
    const after = before.filter((e) => e.id !== 'pod-1');
    let moved = 0;
    const total = 20_000;
    for (const k of keys(total)) {
      const was = before[pickTop(digest(k), before, all)]!.id;
      const now = after[pickTop(digest(k), after, all)]!.id;
      if (was !== now) {
        moved++;
        expect(was).toBe('pod-1');
      }
    }
    expect(Math.abs(moved / total - 1 / n)).toBeLessThan(0.02);
  });

  it('adding an endpoint to 4 moves ≈ 1/5 of the keys, all to the new one', () => {
    const before = endpoints(['p0', 'p1', 'p2', 'p3']);
    const after = endpoints(['p0', 'p1', 'p2', 'p3', 'p4']);
    let moved = 0;
    for (const k of keys(20_000)) {
      const now = after[pickTop(digest(k), after, all)]!.id;
      if (before[pickTop(digest(k), before, all)]!.id !== now) {
        moved++;
        expect(now).toBe('p4');
      }
    }
    expect(Math.abs(moved / 20_000 - 0.2)).toBeLessThan(0.02);
  });

  it('rank lists every eligible endpoint, best first, consistent with pickTop', () => {
    for (const k of keys(200)) {
      const order = rank(digest(k), eps, (i) => i !== 1);
      expect(order).toHaveLength(2);
      expect(order).not.toContain(1);
      expect(order[0]).toBe(pickTop(digest(k), eps, (i) => i !== 1));
    }
  });

  it('pickTop gives -1 when nothing is eligible', () => {
    expect(pickTop(digest('k'), eps, () => false)).toBe(-1);
  });
});
