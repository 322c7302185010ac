import { describe, expect, it } from 'vitest';
import { isBehind, pacedRate, parseVegetaReport } from './vegeta-report.ts';

// Real output of `vegeta report -type json` (v12.13.0) after a 2 s attack at 500/s.
const REAL =
  '{"latencies":{"total":11793447001,"mean":11793447,"50th":826055,"90th":14700896,"95th":128580923,' +
  '"99th":164516663,"max":178939517,"min":154334},"bytes_in":{"total":19000,"mean":19},' +
  '"bytes_out":{"total":0,"mean":0},"earliest":"2026-11-27T18:23:36.28475743Z",' +
  '"latest":"2026-11-27T18:23:38.28261496Z","end":"2026-11-27T18:23:38.283404403Z","duration":1997857530,' +
  '"wait":789443,"requests":1000,"rate":500.5361918875166,"throughput":500.33848574017276,"success":1,' +
  '"status_codes":{"200":1000},"errors":[]}';
// The same against a closed port: every request failed.
const REFUSED =
  '{"latencies":{"total":33211667,"mean":664233,"50th":575746,"90th":856966,"95th":871739,"99th":2369391,' +
  '"max":2369391,"min":313417},"bytes_in":{"total":0,"mean":0},"bytes_out":{"total":0,"mean":0},' +
  '"earliest":"2026-11-27T18:23:38.478273848Z","latest":"2026-11-27T18:23:39.458178219Z",' +
  '"end":"2026-11-27T18:23:39.459047263Z","duration":979904371,"wait":869044,"requests":50,' +
  '"rate":51.02538725179337,"throughput":0,"success":0,"status_codes":{"0":50},' +
  '"errors":["Get \\"http://127.0.0.1:1/\\": dial tcp 0.0.0.0:0-\\u003e127.0.0.1:1: connect: connection refused"]}';

describe('parseVegetaReport', () => {
  it('reads a real report: nanoseconds become microseconds', () => {
    const f = parseVegetaReport(REAL);
    expect(f.requests).toBe(1000);
    expect(f.achievedRate).toBeCloseTo(500.54, 2);
    expect(f.success).toBe(1);
    expect(f.latencyUs).toEqual({
      mean: 11793.447,
      p50: 826.055,
      p90: 14700.896,
      p99: 164516.663,
      max: 178939.517,
    });
    expect(f.statusCodes).toEqual({ '200': 1000 });
    expect(f.errors).toEqual([]);
  });

  it('keeps the errors of a failed run', () => {
    const f = parseVegetaReport(REFUSED);
    expect(f.success).toBe(0);
    expect(f.errors[0]).toMatch(/connection refused/);
  });

  it('takes errors: null (vegeta writes it for a run without results)', () => {
    const text = REAL.replace('"errors":[]', '"errors":null');
    expect(parseVegetaReport(text).errors).toEqual([]);
  });

  it.each([
    { desc: 'not JSON', text: 'Requests [total]', want: /not JSON/ },
    { desc: 'no latencies', text: '{"requests":1}', want: /lacks fields/ },
    { desc: 'success above 1', text: REAL.replace('"success":1', '"success":2'), want: /lacks fields/ },
  ])('$desc → error', ({ text, want }) => {
    expect(() => parseVegetaReport(text)).toThrow(want);
  });
});

describe('pacedRate / isBehind', () => {
  it.each([
    { desc: 'half, rounded down to 100', rps: 61_234.5, want: 30_600 },
    { desc: 'never below 100', rps: 50, want: 100 },
  ])('pacedRate: $desc', ({ rps, want }) => {
    expect(pacedRate(rps)).toBe(want);
  });

  it.each([
    { rate: 1000, achieved: 999, want: false },
    { rate: 1000, achieved: 950, want: false },
    { rate: 1000, achieved: 949.9, want: true },
  ])('isBehind($rate, $achieved) = $want', ({ rate, achieved, want }) => {
    expect(isBehind(rate, achieved)).toBe(want);
  });
});
