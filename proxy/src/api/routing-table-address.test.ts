import { describe, expect, it } from 'vitest';
import { testTable } from '../../../test/helpers/pools.ts';
import { routingTableSchema } from './routing-table.ts';

function withAddress(address: string): unknown {
  const t = testTable(1, [{ name: 'a', port: 80 }]);
  return { ...t, endpoints: [{ ...t.endpoints[0], address }] };
}

describe('routing table endpoint addresses: IP literals the proxy can dial', () => {
  it.each([
    { address: '10.0.0.7' },
    { address: '127.0.0.1' },
    { address: '::1' },
    { address: 'fd00::7' },
    { address: '::ffff:10.0.0.7' },
  ])('$address is accepted', ({ address }) => {
    expect(routingTableSchema.safeParse(withAddress(address)).success).toBe(true);
  });

  it.each([
    { desc: 'an IPv6 zone id', address: 'fe80::1%eth0' },
    { desc: 'a URL', address: 'http://evil/' },
    { desc: 'a host name', address: 'shop.default.svc' },
    { desc: 'an address with a port', address: '10.0.0.7:80' },
    { desc: 'a bracketed IPv6 address', address: '[::1]' },
    { desc: 'an out-of-range octet', address: '300.1.1.1' },
    { desc: 'a path', address: '10.0.0.7/x' },
    { desc: 'spaces', address: ' 10.0.0.7' },
  ])('$desc ($address) is refused, naming the field', ({ address }) => {
    const r = routingTableSchema.safeParse(withAddress(address));
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]?.path).toEqual(['endpoints', 0, 'address']);
  });
});
