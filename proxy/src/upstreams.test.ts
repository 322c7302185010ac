import { afterEach, describe, expect, it } from 'vitest';
import { testTable } from '../../test/helpers/pools.ts';
import type { RoutingTable } from './api/routing-table.ts';
import { ProxyMetrics } from './metrics.ts';
import { compileTable } from './routing/compiled-table.ts';
import { Upstreams } from './upstreams.ts';

const OPTIONS = {
  connectTimeoutMs: 1_000,
  readTimeoutMs: 1_000,
  connectionsPerEndpoint: 4,
  keepAliveTimeoutMs: 1_000,
};
let up: Upstreams | undefined;

afterEach(async () => {
  await up?.close();
  up = undefined;
});

function compiled(revision: number, names: string[]) {
  return compileTable(
    testTable(
      revision,
      names.map((name, i) => ({ name, port: 10_000 + i })),
    ),
    undefined,
    Date.now(),
  );
}

describe('Upstreams: one ServedTable per table, state shared by endpoint id', () => {
  it('a request that started on the old table counts down on the new one (no leaked in-flight counts)', () => {
    up = new Upstreams(OPTIONS, new ProxyMetrics());
    up.adopt(compiled(1, ['a', 'b', 'c']));
    const old = up.current!;
    old.byId('c')!.inflight++;
    up.adopt(compiled(2, ['c', 'a']));
    const now = up.current!;
    expect(now).not.toBe(old);
    expect(now.at(0).endpoint.id).toBe('c');
    expect(now.inflight(0)).toBe(1);
    old.byId('c')!.inflight--;
    expect(now.inflight(0)).toBe(0);
    // The old table keeps its own indexes: index 2 is still its c, never another table's endpoint.
    expect(old.at(2).endpoint.id).toBe('c');
    expect(old.at(2).endpoint).toBe(old.table.endpoints[2]);
  });

  it('prepare throws for an origin undici cannot dial, and nothing served changes', () => {
    up = new Upstreams(OPTIONS, new ProxyMetrics());
    up.adopt(compiled(1, ['a']));
    const before = up.current;
    // Past the schema (which refuses it): a zone id makes an origin undici rejects.
    const raw: RoutingTable = testTable(2, [{ name: 'z', port: 80 }]);
    const bad = { ...raw, endpoints: [{ ...raw.endpoints[0]!, address: 'fe80::1%eth0' }] };
    expect(() => up!.prepare(compileTable(bad, undefined, Date.now()))).toThrow();
    expect(up.current).toBe(before);
  });
});
