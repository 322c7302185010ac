import { describe, expect, it } from 'vitest';
import { testTable } from '../../test/helpers/pools.ts';
import type { RoutingTable } from './api/routing-table.ts';
import { TableStore } from './table-store.ts';

function table(revision: number, name = 'shop', ports = [1, 2]): RoutingTable {
  return testTable(
    revision,
    ports.map((port) => ({ name: `e${port}`, port })),
    {},
    name,
  );
}

describe('TableStore.offer', () => {
  it.each([
    {
      desc: 'first table',
      first: undefined,
      next: table(5),
      source: 'admin',
      want: { accepted: true, changed: true },
    },
    {
      desc: 'newer revision',
      first: table(5),
      next: table(6, 'shop', [1]),
      source: 'admin',
      want: { accepted: true, changed: true },
    },
    {
      desc: 'same revision, same content (a retry)',
      first: table(5),
      next: table(5),
      source: 'admin',
      want: { accepted: true, changed: false },
    },
    {
      desc: 'same revision, other content',
      first: table(5),
      next: table(5, 'shop', [1]),
      source: 'admin',
      want: { accepted: false, reason: 'stale' },
    },
    {
      desc: 'older revision',
      first: table(5),
      next: table(4),
      source: 'admin',
      want: { accepted: false, reason: 'stale' },
    },
    {
      desc: 'another pool over the admin API',
      first: table(5),
      next: table(9, 'other'),
      source: 'admin',
      want: { accepted: false, reason: 'wrong_pool' },
    },
    {
      desc: 'another pool from the pool file (renamed)',
      first: table(5),
      next: table(1, 'other'),
      source: 'file',
      want: { accepted: true, changed: true },
    },
  ] as const)('$desc', ({ first, next, source, want }) => {
    const swaps: number[] = [];
    const store = new TableStore((t) => swaps.push(t.revision));
    if (first !== undefined) store.offer(first, 'admin');
    const before = store.current;
    const r = store.offer(next, source);
    expect(r).toMatchObject(want);
    if (r.accepted && r.changed) {
      expect(store.current?.revision).toBe(next.revision);
      expect(swaps.at(-1)).toBe(next.revision);
    } else {
      // Refused or unchanged: the table served is the very same object.
      expect(store.current).toBe(before);
    }
  });
});

describe('TableStore.offer is all or nothing', () => {
  it('a table whose preparation throws is refused (invalid) and the served table stays, unswapped', () => {
    const swaps: number[] = [];
    const served: number[] = [];
    const store = new TableStore(
      (t) => swaps.push(t.revision),
      (t) => {
        if (t.revision === 6) throw new Error('no pool for this origin');
        return () => served.push(t.revision);
      },
    );
    expect(store.offer(table(5), 'admin')).toMatchObject({ accepted: true, changed: true });
    const before = store.current;
    const r = store.offer(table(6, 'shop', [3]), 'admin');
    expect(r).toMatchObject({ accepted: false, reason: 'invalid' });
    expect(r.accepted ? '' : r.message).toContain('no pool for this origin');
    expect(store.current).toBe(before);
    expect(swaps).toEqual([5]);
    expect(served).toEqual([5]);
    // The next good table applies as usual.
    expect(store.offer(table(7), 'admin')).toMatchObject({ accepted: true, changed: true });
    expect(served).toEqual([5, 7]);
  });
});

describe('TableStore.stage: the two phases of a swap across workers', () => {
  function preparedStore() {
    const log: string[] = [];
    const store = new TableStore(
      (t) => log.push(`swap ${t.revision}`),
      (t) => ({
        commit: () => log.push(`serve ${t.revision}`),
        abort: () => log.push(`drop ${t.revision}`),
      }),
    );
    return { store, log };
  }

  it('stage serves nothing; commit serves and reports the swap', () => {
    const { store, log } = preparedStore();
    store.offer(table(5), 'admin');
    const before = store.current;
    const staged = store.stage(table(6), 'admin');
    expect(staged).toMatchObject({ accepted: true, changed: true });
    expect(store.current).toBe(before);
    expect(log).toEqual(['serve 5', 'swap 5']);
    if (!staged.accepted) throw new Error('unreachable');
    staged.commit();
    staged.commit();
    expect(store.current?.revision).toBe(6);
    expect(log).toEqual(['serve 5', 'swap 5', 'serve 6', 'swap 6']);
  });

  it('abort drops what was prepared and leaves the served table as it was', () => {
    const { store, log } = preparedStore();
    store.offer(table(5), 'admin');
    const before = store.current;
    const staged = store.stage(table(6), 'admin');
    if (!staged.accepted) throw new Error('unreachable');
    staged.abort();
    staged.commit(); // after abort: nothing
    expect(store.current).toBe(before);
    expect(log).toEqual(['serve 5', 'swap 5', 'drop 6']);
    // The same revision can be offered again.
    expect(store.offer(table(6), 'admin')).toMatchObject({ accepted: true, changed: true });
  });

  it('a refused table is never staged', () => {
    const { store, log } = preparedStore();
    store.offer(table(5), 'admin');
    expect(store.stage(table(4), 'admin')).toMatchObject({ accepted: false, reason: 'stale' });
    expect(log).toEqual(['serve 5', 'swap 5']);
  });

  it('committing a stage taken before another swap throws: swaps must be serialized', () => {
    const { store } = preparedStore();
    store.offer(table(5), 'admin');
    const staged = store.stage(table(6), 'admin');
    store.offer(table(7), 'admin');
    if (!staged.accepted) throw new Error('unreachable');
    expect(() => staged.commit()).toThrow(/staged over another table/);
    expect(store.current?.revision).toBe(7);
  });
});
