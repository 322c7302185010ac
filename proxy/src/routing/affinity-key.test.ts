import { describe, expect, it } from 'vitest';
import {
  clientIpKey,
  findCookieValues,
  headerKey,
  MAX_AFFINITY_COOKIE_VALUES,
  resolveClientAddress,
} from './affinity-key.ts';
import { type Cidr, parseCidr } from './ip.ts';

const trusted = ['10.0.0.0/8', '127.0.0.1/32'].map((c) => parseCidr(c) as Cidr);

describe('findCookieValues', () => {
  it.each([
    { desc: 'absent header', header: undefined, want: [] },
    { desc: 'single', header: 'route=abc', want: ['abc'] },
    { desc: 'among others', header: 'a=1; route=abc; b=2', want: ['abc'] },
    { desc: 'twice (host + parent domain)', header: 'route=x; route=y', want: ['x', 'y'] },
    { desc: 'quoted', header: 'route="abc"', want: ['abc'] },
    { desc: 'prefix of another name', header: 'myroute=1; routes=2', want: [] },
    { desc: 'no value', header: 'route', want: [] },
    { desc: 'garbage', header: ';;;=;==; route==x', want: ['=x'] },
    { desc: 'empty value', header: 'route=', want: [''] },
  ])('$desc', ({ header, want }) => {
    expect(findCookieValues(header, 'route')).toEqual(want);
  });

  it('considers at most MAX_AFFINITY_COOKIE_VALUES values, the first ones, however many are sent', () => {
    const header = Array.from({ length: 500 }, (_, i) => `route=v${i}; other=${i}`).join('; ');
    expect(findCookieValues(header, 'route')).toEqual(['v0', 'v1', 'v2', 'v3']);
    expect(MAX_AFFINITY_COOKIE_VALUES).toBe(4);
    expect(findCookieValues(header, 'route', 1)).toEqual(['v0']);
  });
});

describe('resolveClientAddress', () => {
  it.each([
    {
      desc: 'untrusted peer: X-Forwarded-For ignored',
      peer: '203.0.113.5',
      xff: '1.2.3.4',
      want: '203.0.113.5/32',
      invalid: false,
    },
    {
      desc: 'trusted peer: rightmost untrusted hop',
      peer: '10.0.0.5',
      xff: '198.51.100.1, 203.0.113.9, 10.0.0.7',
      want: '203.0.113.9/32',
      invalid: false,
    },
    {
      desc: 'trusted peer, all hops trusted: leftmost',
      peer: '127.0.0.1',
      xff: '10.1.1.1, 10.2.2.2',
      want: '10.1.1.1/32',
      invalid: false,
    },
    {
      desc: 'malformed chain: the peer, flagged',
      peer: '10.0.0.5',
      xff: '198.51.100.1, banana',
      want: '10.0.0.5/32',
      invalid: true,
    },
    {
      desc: 'hop with port',
      peer: '10.0.0.5',
      xff: '198.51.100.1:4711',
      want: '198.51.100.1/32',
      invalid: false,
    },
    {
      desc: 'bracketed v6 hop with port',
      peer: '10.0.0.5',
      xff: '[2001:db8::9]:443',
      want: '2001:db8:0:0:0:0:0:9/128',
      invalid: false,
    },
    {
      desc: 'mapped peer address',
      peer: '::ffff:127.0.0.1',
      xff: '192.0.2.1',
      want: '192.0.2.1/32',
      invalid: false,
    },
    { desc: 'no header', peer: '10.0.0.5', xff: undefined, want: '10.0.0.5/32', invalid: false },
  ])('$desc', ({ peer, xff, want, invalid }) => {
    const a = resolveClientAddress(peer, xff, trusted);
    expect(a).toBeDefined();
    expect(clientIpKey(a!, 32, 128)).toBe(want);
    expect(a!.forwardedInvalid).toBe(invalid);
  });

  it('refuses a chain longer than 32 hops', () => {
    const xff = Array.from({ length: 40 }, (_, i) => `192.0.2.${i}`).join(',');
    expect(resolveClientAddress('10.0.0.1', xff, trusted)?.forwardedInvalid).toBe(true);
  });

  it('gives undefined for a non-address peer', () => {
    expect(resolveClientAddress(undefined, undefined, trusted)).toBeUndefined();
  });
});

describe('headerKey', () => {
  it.each([
    { desc: 'value', value: 'user-42', want: { key: 'user-42' } },
    { desc: 'trimmed', value: '  user-42 ', want: { key: 'user-42' } },
    { desc: 'missing', value: undefined, want: { problem: 'missing' } },
    { desc: 'blank', value: '   ', want: { problem: 'missing' } },
    { desc: 'control character', value: 'a\u0001b', want: { problem: 'invalid' } },
    { desc: 'too long', value: 'x'.repeat(1025), want: { problem: 'invalid' } },
    { desc: 'repeated header: first', value: ['a', 'b'], want: { key: 'a' } },
  ])('$desc', ({ value, want }) => {
    expect(headerKey(value)).toEqual(want);
  });
});
