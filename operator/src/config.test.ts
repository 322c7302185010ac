import { describe, expect, it } from 'vitest';
import { envNameOf, parseConfig } from './config.ts';

describe('parseConfig', () => {
  it('applies defaults (client-go lease timings)', () => {
    const c = parseConfig([], {});
    if (c === 'help') throw new Error('help');
    expect(c).toMatchObject({
      namespaces: [],
      workers: 4,
      'leader-elect': true,
      'lease-duration': 15_000,
      'renew-deadline': 10_000,
      'retry-period': 2_000,
      'metrics-listen': { host: '127.0.0.1', port: 8080 },
      'valkey-image': 'docker.io/valkey/valkey:8.1',
      'store-timeout': 1_000,
    });
    expect(c.identity).toMatch(/_/);
  });

  it('reads env, and flags win over env', () => {
    const c = parseConfig(['--workers', '2'], {
      [envNameOf('workers')]: '9',
      TETHER_OPERATOR_NAMESPACES: 'a, b',
      POD_NAMESPACE: 'tether-system',
    });
    expect(c).toMatchObject({
      workers: 2,
      namespaces: ['a', 'b'],
      'leader-election-namespace': 'tether-system',
    });
  });

  it.each([
    { desc: 'workers 0', argv: ['--workers', '0'], want: /workers/ },
    { desc: 'bad duration', argv: ['--lease-duration', '15'], want: /lease-duration/ },
    {
      desc: 'renew deadline over lease',
      argv: ['--lease-duration', '5s', '--renew-deadline', '10s'],
      want: /renew-deadline/,
    },
    { desc: 'bad namespace', argv: ['--namespaces', 'A_B'], want: /namespaces/ },
    { desc: 'bad listen', argv: ['--metrics-listen', 'nope'], want: /metrics-listen/ },
    { desc: 'bad boolean', argv: ['--leader-elect', 'yes'], want: /leader-elect/ },
  ])('refuses $desc', ({ argv, want }) => {
    expect(() => parseConfig(argv, {})).toThrow(want);
  });

  it('refuses an unknown flag', () => {
    expect(() => parseConfig(['--nope', '1'], {})).toThrow(/nope/);
  });
});
