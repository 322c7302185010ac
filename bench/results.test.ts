import { describe, expect, it } from 'vitest';
import { benchResults, throughputRun } from './fixtures.ts';
import { computeRatios } from './ratios.ts';
import { benchResultsSchema, parseSteps } from './results.ts';

describe('parseSteps', () => {
  it.each([
    { desc: 'unset: all', text: undefined, want: ['throughput', 'paced', 'memory', 'workers'] },
    { desc: 'empty: all', text: ' ', want: ['throughput', 'paced', 'memory', 'workers'] },
    {
      desc: 'run order, whatever the order given',
      text: 'workers, throughput',
      want: ['throughput', 'workers'],
    },
    { desc: 'one', text: 'memory', want: ['memory'] },
  ])('$desc', ({ text, want }) => {
    expect(parseSteps(text)).toEqual(want);
  });

  it('names the unknown step', () => {
    expect(() => parseSteps('throughput,latency')).toThrow(
      /unknown step "latency".*throughput, paced, memory, workers/,
    );
  });
});

describe('benchResultsSchema', () => {
  it('takes what the bench writes, ratios included, through a JSON round trip', () => {
    const runs = [throughputRun('haproxy-new', 40_000), throughputRun('tether-new', 21_000)];
    const r = benchResults({ runs });
    r.ratios = computeRatios(r);
    const back = benchResultsSchema.parse(JSON.parse(JSON.stringify(r)));
    expect(back).toEqual(r);
  });

  it.each([
    { desc: 'an older layout', change: { schemaVersion: 1 } },
    { desc: 'a run without requests/s', change: { runs: [{ id: 'x' }] } },
    { desc: 'workers with an unknown status', change: { workers: { status: 'maybe' } } },
  ])('refuses $desc', ({ change }) => {
    expect(benchResultsSchema.safeParse({ ...benchResults(), ...change }).success).toBe(false);
  });
});
