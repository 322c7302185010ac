import { describe, expect, it } from 'vitest';
import { cidrContains, maskedKey, parseCidr, parseIp } from './ip.ts';

describe('parseIp', () => {
  it.each([
    { desc: 'IPv4', text: '192.0.2.7', v4: true },
    { desc: 'IPv4-mapped IPv6', text: '::ffff:192.0.2.7', v4: true },
    { desc: 'IPv6 full', text: '2001:db8:0:0:0:0:0:1', v4: false },
    { desc: 'IPv6 compressed', text: '2001:db8::1', v4: false },
    { desc: 'loopback v6', text: '::1', v4: false },
    { desc: 'unspecified', text: '::', v4: false },
    { desc: 'with zone', text: 'fe80::1%eth0', v4: false },
  ])('$desc', ({ text, v4 }) => {
    expect(parseIp(text)?.v4).toBe(v4);
  });

  it('normalises IPv4-mapped to the same bytes as IPv4', () => {
    expect(parseIp('::ffff:10.1.2.3')?.bytes).toEqual(parseIp('10.1.2.3')?.bytes);
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.4.5',
    '256.1.1.1',
    '01.2.3.4',
    '1::2::3',
    '12345::',
    'g::1',
    'localhost',
    '1.2.3.4 ',
  ])('refuses %j', (text) => {
    expect(parseIp(text)).toBeUndefined();
  });
});

describe('maskedKey (ClientIP affinity key)', () => {
  it.each([
    { desc: 'nginx ip_hash: first three octets', ip: '192.0.2.77', v4: 24, v6: 128, want: '192.0.2.0/24' },
    {
      desc: 'mapped form gives the same key',
      ip: '::ffff:192.0.2.77',
      v4: 24,
      v6: 128,
      want: '192.0.2.0/24',
    },
    { desc: 'whole address', ip: '192.0.2.77', v4: 32, v6: 128, want: '192.0.2.77/32' },
    { desc: 'odd prefix', ip: '192.0.2.255', v4: 25, v6: 128, want: '192.0.2.128/25' },
    { desc: 'IPv6 /64', ip: '2001:db8:1:2:3:4:5:6', v4: 24, v6: 64, want: '2001:db8:1:2:0:0:0:0/64' },
    { desc: 'IPv6 whole', ip: '2001:db8::1', v4: 24, v6: 128, want: '2001:db8:0:0:0:0:0:1/128' },
  ])('$desc', ({ ip, v4, v6, want }) => {
    const parsed = parseIp(ip);
    expect(parsed).toBeDefined();
    expect(maskedKey(parsed!, v4, v6)).toBe(want);
  });
});

describe('CIDR', () => {
  it.each([
    { cidr: '10.0.0.0/8', ip: '10.200.1.1', want: true },
    { cidr: '10.0.0.0/8', ip: '11.0.0.1', want: false },
    { cidr: '10.0.0.0/8', ip: '::ffff:10.9.9.9', want: true },
    { cidr: '127.0.0.1/32', ip: '127.0.0.1', want: true },
    { cidr: '127.0.0.1/32', ip: '127.0.0.2', want: false },
    { cidr: '192.168.0.0/23', ip: '192.168.1.200', want: true },
    { cidr: 'fd00::/8', ip: 'fd12::1', want: true },
    { cidr: 'fd00::/8', ip: 'fe80::1', want: false },
    { cidr: '0.0.0.0/0', ip: '8.8.8.8', want: true },
  ])('$cidr contains $ip: $want', ({ cidr, ip, want }) => {
    expect(cidrContains(parseCidr(cidr)!, parseIp(ip)!)).toBe(want);
  });

  it.each(['10.0.0.0', '10.0.0.0/33', '::/129', '10.0.0.0/-1', 'x/8', '10.0.0.0/08'])('refuses %j', (c) => {
    expect(parseCidr(c)).toBeUndefined();
  });
});
