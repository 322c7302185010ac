import { describe, expect, it } from 'vitest';
import { benchResults, throughputRun } from './fixtures.ts';
import { computeRatios } from './ratios.ts';
import { BEGIN_MARKER, END_MARKER, markdownTable, renderBenchSection, spliceReadme } from './readme-table.ts';

describe('markdownTable', () => {
  it('aligns columns and escapes pipes', () => {
    expect(
      markdownTable(
        [
          ['a', 'b'],
          ['x|y', '1'],
        ],
        'lr',
      ),
    ).toBe('| a | b |\n|---|---:|\n| x\\|y | 1 |');
  });
});

describe('renderBenchSection', () => {
  const r = benchResults({
    runs: [
      throughputRun('haproxy-new', 40_000, { label: 'haproxy, new pin' }),
      throughputRun('tether-new', 21_234.6, { label: 'tether, new pin', disturbed: true }),
    ],
    paced: [
      {
        id: 'haproxy',
        label: 'haproxy',
        rate: 20_000,
        achievedRate: 19_999.6,
        requests: 160_000,
        success: 1,
        latencyUs: { mean: 400, p50: 350, p90: 600, p99: 1_500, max: 9_000 },
        behind: false,
        disturbed: false,
      },
    ],
    memory: [
      {
        id: 'tether',
        label: 'tether-proxy',
        connections: { wanted: 10_000, answered: 10_000, openAtSample: 10_000 },
        rssStartBytes: 60e6,
        rssBeforeBytes: 70e6,
        rssBytes: 131.2e6,
        perConnectionBytes: 6_120,
      },
    ],
  });
  r.ratios = computeRatios(r);
  const text = renderBenchSection(r);

  it('says where and how it was measured', () => {
    expect(text).toMatch(/^One `make bench` run, 2026-11-27 19:00 UTC, 2 CPUs \(Test CPU\); Node v24\.21\.0/);
    expect(text).toContain('Node v24.21.0, HAProxy 2.6.12, nginx 1.22.1, vegeta v12.13.0.');
    expect(text).toContain('`wrk -t1 -c64 -d8s --timeout 2s` after a 2 s warm-up');
    expect(text).toContain('each proxy pinned to core 0, wrk and nginx to core 1');
  });

  it('has a row per measured target, figures rounded, disturbed runs marked', () => {
    expect(text).toContain('| haproxy, new pin | 40,000 | 0.80 ms | 2.50 ms | 0 |');
    expect(text).toContain('| tether, new pin (disturbed) | 21,235 | 0.80 ms | 2.50 ms | 0 |');
  });

  it('has the paced, memory and workers parts', () => {
    expect(text).toContain('vegeta at a fixed 20,000 req/s');
    expect(text).toContain('| haproxy | 20,000 | 100.0 % | 0.35 ms | 1.50 ms | 9.00 ms |');
    expect(text).toContain('| tether-proxy | 10,000 | 60.0 MB | 70.0 MB | 131.2 MB | 6.0 KiB |');
    expect(text).toContain('Workers: skipped (test).');
  });

  it('lists every ratio with its goal', () => {
    expect(text).toContain('| tether/haproxy, new pin | 0.53 (disturbed) | >= 0.5: met |');
    expect(text).toContain('| tether/fastify, new pin | - | >= 2.5: **not met** |');
    expect(text).toContain('| tether RSS MB, 10000 idle connections | 131.20 | < 150: met |');
  });

  it('leaves out the tables of steps that did not run', () => {
    const only = renderBenchSection(benchResults());
    expect(only).not.toContain('| target');
    expect(only).not.toContain('Paced');
    expect(only).not.toContain('Memory');
  });
});

describe('spliceReadme', () => {
  const readme = `# T\n\n## Benchmarks\n\nprose\n\n${BEGIN_MARKER}\nold table\n${END_MARKER}\n\nmore prose\n\n## Layout\n`;

  it('replaces only what is between the markers', () => {
    expect(spliceReadme(readme, '| new |\n')).toBe(
      `# T\n\n## Benchmarks\n\nprose\n\n${BEGIN_MARKER}\n\n| new |\n\n${END_MARKER}\n\nmore prose\n\n## Layout\n`,
    );
  });

  it('is idempotent', () => {
    const once = spliceReadme(readme, 'x');
    expect(spliceReadme(once, 'x')).toBe(once);
  });

  it.each([
    { desc: 'no markers', text: '# T\n', want: /no <!-- bench:begin/ },
    { desc: 'no end marker', text: `${BEGIN_MARKER}\n`, want: /no <!-- bench:end/ },
    {
      desc: 'markers twice',
      text: `${BEGIN_MARKER}${END_MARKER}${BEGIN_MARKER}${END_MARKER}`,
      want: /more than once/,
    },
    { desc: 'end first', text: `${END_MARKER}\n${BEGIN_MARKER}`, want: /before the begin/ },
  ])('$desc → error', ({ text, want }) => {
    expect(() => spliceReadme(text, 'x')).toThrow(want);
  });
});
