import { describe, expect, it } from 'vitest';
import { fdsNeeded, hasWorkersFlag, parseNofileLimit } from './proxy-flags.ts';

describe('hasWorkersFlag', () => {
  it.each([
    {
      desc: "today's usage",
      help: 'usage: tether-proxy [--config pool.yaml] [--listen HOST:PORT]\n  --listen  x',
      want: false,
    },
    {
      desc: 'in the usage line',
      help: 'usage: tether-proxy [--workers N|auto] [--listen HOST:PORT]',
      want: true,
    },
    { desc: 'as an option line', help: '  --workers N    processes sharing the port', want: true },
    { desc: 'a longer flag is not it', help: '  --workers-restart-delay 1s', want: false },
    { desc: 'the unknown-option error', help: "tether-proxy: Unknown option '--workers'", want: false },
  ])('$desc → $want', ({ help, want }) => {
    expect(hasWorkersFlag(help)).toBe(want);
  });
});

describe('parseNofileLimit / fdsNeeded', () => {
  const limits = [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max processes             63704                63704                processes ',
    'Max open files            1024                 524288               files     ',
  ].join('\n');

  it('reads soft and hard', () => {
    expect(parseNofileLimit(limits)).toEqual({ soft: 1024, hard: 524288 });
  });

  it('reads unlimited as Infinity, and nothing when the line is missing', () => {
    expect(parseNofileLimit('Max open files  unlimited  unlimited  files')).toEqual({
      soft: Number.POSITIVE_INFINITY,
      hard: Number.POSITIVE_INFINITY,
    });
    expect(parseNofileLimit('Max processes 1 1')).toBeUndefined();
  });

  it('leaves room above the connections', () => {
    expect(fdsNeeded(10_000)).toBe(11_024);
  });
});
