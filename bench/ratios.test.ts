import { describe, expect, it } from 'vitest';
import { benchResults, throughputRun } from './fixtures.ts';
import { belowFloor, computeRatios, describeRatio, divide, FLOOR } from './ratios.ts';
import type { MemoryRun, PacedRun, Ratio } from './results.ts';

const runs = [
  throughputRun('direct', 100_000),
  throughputRun('haproxy-new', 40_000),
  throughputRun('haproxy-pinned', 50_000),
  throughputRun('tether-new', 20_000),
  throughputRun('tether-pinned', 20_000),
  throughputRun('bare-forwarder', 25_000),
  throughputRun('fastify-new', 8_000),
  throughputRun('fastify-pinned', 10_000),
  throughputRun('http-proxy-3-new', 10_000),
  throughputRun('http-proxy-3-pinned', 10_000),
  throughputRun('http-proxy-new', 5_000),
  throughputRun('http-proxy-pinned', 4_000, { valid: false }),
];

function paced(id: string, p99: number, behind = false): PacedRun {
  return {
    id,
    label: id,
    rate: 20_000,
    achievedRate: 20_000,
    requests: 160_000,
    success: 1,
    latencyUs: { mean: 500, p50: 400, p90: 800, p99, max: 9000 },
    behind,
    disturbed: false,
  };
}

function memory(id: string, rssMb: number, open = 10_000, beforeMb = 60): MemoryRun {
  return {
    id,
    label: id,
    connections: { wanted: 10_000, answered: open, openAtSample: open },
    rssStartBytes: 50e6,
    rssBeforeBytes: beforeMb * 1e6,
    rssBytes: rssMb * 1e6,
    perConnectionBytes: ((rssMb - beforeMb) * 1e6) / open,
  };
}

const skipped = { status: 'skipped', reason: 'no flag' } as const;

describe('computeRatios', () => {
  const byName = (rs: ReturnType<typeof computeRatios>) => new Map(rs.map((r) => [r.name, r]));

  it('throughput: Tether/HAProxy carries the floor, each peer the 2.5 goal', () => {
    const rs = byName(computeRatios({ runs, paced: [], memory: [], workers: skipped }));
    expect(rs.get('tether/haproxy, new pin')).toEqual({
      name: 'tether/haproxy, new pin',
      value: 0.5,
      goal: { op: '>=', value: 0.5 },
      met: true,
      floor: FLOOR,
      floorMet: true,
    });
    expect(rs.get('tether/haproxy, pinned')).toMatchObject({ value: 0.4, met: false, floorMet: false });
    expect(rs.get('tether/fastify, new pin')).toMatchObject({ value: 2.5, met: true });
    expect(rs.get('tether/fastify, pinned')).toMatchObject({ value: 2, met: false });
    expect(rs.get('tether/http-proxy, new pin')).toMatchObject({ value: 4, met: true });
    expect(rs.get('tether/bare forwarder, new pin')).toEqual({
      name: 'tether/bare forwarder, new pin',
      value: 0.8,
    });
    expect(rs.get('bare forwarder/haproxy')?.value).toBeCloseTo(0.625);
    expect(rs.get('tether/direct, new pin')?.value).toBeCloseTo(0.2);
  });

  it('a ratio over a disturbed run is marked, and says so in its text', () => {
    const noisy = [
      ...runs.filter((r) => r.id !== 'haproxy-new'),
      throughputRun('haproxy-new', 40_000, { disturbed: true }),
    ];
    const rs = byName(computeRatios({ runs: noisy, paced: [], memory: [], workers: skipped }));
    expect(rs.get('tether/haproxy, new pin')).toMatchObject({ value: 0.5, disturbed: true, floorMet: true });
    expect(rs.get('tether/haproxy, pinned')?.disturbed).toBeUndefined();
    expect(describeRatio(rs.get('bare forwarder/haproxy') as Ratio)).toBe('0.63 (disturbed)');
  });

  it('an invalid run (too many errors) counts as not measured', () => {
    const rs = byName(computeRatios({ runs, paced: [], memory: [], workers: skipped }));
    expect(rs.get('tether/http-proxy, pinned')).toMatchObject({ value: null, met: false });
  });

  it('a missing run gives null, never NaN or Infinity', () => {
    const rs = computeRatios({ runs: [], paced: [], memory: [], workers: skipped });
    expect(rs.every((r) => r.value === null)).toBe(true);
    expect(divide(1, 0)).toBeNull();
  });

  it('paced: Tether p99 / HAProxy p99 against the ≤ 2 goal; peers without a goal', () => {
    const rs = byName(
      computeRatios({
        runs: [],
        paced: [paced('haproxy', 1000), paced('tether', 2500), paced('fastify', 9000)],
        memory: [],
        workers: skipped,
      }),
    );
    expect(rs.get('paced p99 tether/haproxy')).toMatchObject({
      value: 2.5,
      goal: { op: '<=', value: 2 },
      met: false,
    });
    expect(rs.get('paced p99 fastify/haproxy')).toEqual({ name: 'paced p99 fastify/haproxy', value: 9 });
    expect(rs.has('paced p99 http-proxy/haproxy')).toBe(false);
  });

  it.each([
    {
      desc: 'Tether fell behind: not met, whatever its p99',
      tether: true,
      haproxy: false,
      value: 0.5,
      met: false,
    },
    { desc: 'HAProxy fell behind: no figure', tether: false, haproxy: true, value: null, met: false },
    { desc: 'both kept the pace', tether: false, haproxy: false, value: 0.5, met: true },
  ])('paced: $desc', ({ tether, haproxy, value, met }) => {
    const rs = byName(
      computeRatios({
        runs: [],
        paced: [paced('haproxy', 1000, haproxy), paced('tether', 500, tether)],
        memory: [],
        workers: skipped,
      }),
    );
    expect(rs.get('paced p99 tether/haproxy')).toMatchObject({ value, met });
  });

  it('memory: RSS in MB under 150, and only when every connection was open', () => {
    const ok = byName(
      computeRatios({
        runs: [],
        paced: [],
        memory: [memory('tether', 120), memory('haproxy', 40, 10_000, 10)],
        workers: skipped,
      }),
    );
    expect(ok.get('tether RSS MB, 10000 idle connections')).toMatchObject({ value: 120, met: true });
    // (120 − 60) MB / 10,000 = 6 kB against (40 − 10) MB / 10,000 = 3 kB.
    expect(ok.get('tether/haproxy memory per idle connection')?.value).toBeCloseTo(2);
    const short = byName(
      computeRatios({ runs: [], paced: [], memory: [memory('tether', 100, 9_000)], workers: skipped }),
    );
    expect(short.get('tether RSS MB, 10000 idle connections')).toMatchObject({ value: null, met: false });
    // Already above the goal with fewer open: a lower bound that shows the goal missed.
    const over = byName(
      computeRatios({ runs: [], paced: [], memory: [memory('tether', 350, 9_000)], workers: skipped }),
    );
    expect(over.get('tether RSS MB, 10000 idle connections')).toMatchObject({ value: 350, met: false });
  });

  it('workers: scaling against 0.8 × N; nothing when skipped', () => {
    const measured = computeRatios({
      runs: [],
      paced: [],
      memory: [],
      workers: {
        status: 'measured',
        note: '',
        runs: [
          { workers: 1, requestsPerS: 10_000, valid: true },
          { workers: 2, requestsPerS: 17_000, valid: true },
        ],
        scaling: 1.7,
        maxWorkers: 2,
      },
    });
    expect(measured.at(-1)).toMatchObject({
      name: 'workers 2/1 requests/s',
      goal: { op: '>=', value: 1.6 },
      met: true,
    });
    expect(
      computeRatios({ runs: [], paced: [], memory: [], workers: skipped }).some((r) =>
        r.name.startsWith('workers'),
      ),
    ).toBe(false);
  });
});

describe('belowFloor / describeRatio', () => {
  it('fails on Tether/HAProxy below the floor or not measured, not on other goals', () => {
    const rs = computeRatios({ runs, paced: [], memory: [], workers: skipped });
    expect(belowFloor(rs).map((r) => r.name)).toEqual(['tether/haproxy, pinned']);
    expect(belowFloor(computeRatios(benchResults())).map((r) => r.name)).toEqual([
      'tether/haproxy, new pin',
      'tether/haproxy, pinned',
    ]);
  });

  it.each([
    { desc: 'no goal', r: { name: 'x', value: 0.123 }, want: '0.12' },
    {
      desc: 'met',
      r: { name: 'x', value: 0.6, goal: { op: '>=', value: 0.5 }, met: true },
      want: '0.60  goal >= 0.5: met',
    },
    {
      desc: 'not measured',
      r: { name: 'x', value: null, goal: { op: '<', value: 150 }, met: false },
      want: '-  goal < 150: NOT met',
    },
  ] as const)('$desc', ({ r, want }) => {
    expect(describeRatio(r)).toBe(want);
  });
});
