import { describe, expect, it } from 'vitest';
import { buildUpstreamHeaders, isHttps } from './forwarded-headers.ts';

const untrusted = { peer: '::ffff:127.0.0.1', peerTrusted: false, tls: false };
const trusted = { peer: '10.0.0.9', peerTrusted: true, tls: false };

/** The built list as an object of lower-case names (last value wins, as in the assertions). */
function asObject(list: string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i < list.length; i += 2) o[(list[i] as string).toLowerCase()] = list[i + 1] as string;
  return o;
}

describe('buildUpstreamHeaders', () => {
  it('worked example: appends the peer, sets proto and host, drops what Connection names', () => {
    const got = asObject(
      buildUpstreamHeaders(
        [
          'Host',
          'shop',
          'X-Forwarded-For',
          '198.51.100.7',
          'Connection',
          'x-debug',
          'X-Debug',
          '1',
          'Accept',
          '*/*',
        ],
        untrusted,
      ),
    );
    expect(got).toEqual({
      host: 'shop',
      accept: '*/*',
      'x-forwarded-for': '198.51.100.7, 127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'shop',
    });
  });

  it.each([
    {
      desc: 'untrusted peer: its X-Forwarded-Proto/-Host are replaced',
      hop: untrusted,
      want: { proto: 'http', host: 'shop' },
    },
    { desc: 'trusted peer: they are kept', hop: trusted, want: { proto: 'https', host: 'www.example.com' } },
    { desc: 'TLS to us: https', hop: { ...untrusted, tls: true }, want: { proto: 'https', host: 'shop' } },
  ])('$desc', ({ hop, want }) => {
    const got = asObject(
      buildUpstreamHeaders(
        ['Host', 'shop', 'X-Forwarded-Proto', 'https', 'X-Forwarded-Host', 'www.example.com'],
        hop,
      ),
    );
    expect(got['x-forwarded-proto']).toBe(want.proto);
    expect(got['x-forwarded-host']).toBe(want.host);
  });

  it('joins repeated X-Forwarded-For headers in order', () => {
    const got = asObject(
      buildUpstreamHeaders(['X-Forwarded-For', '1.1.1.1', 'X-Forwarded-For', '2.2.2.2'], untrusted),
    );
    expect(got['x-forwarded-for']).toBe('1.1.1.1, 2.2.2.2, 127.0.0.1');
  });

  it.each([
    'Connection',
    'Keep-Alive',
    'Proxy-Connection',
    'Proxy-Authorization',
    'TE',
    'Trailer',
    'Transfer-Encoding',
    'Upgrade',
  ])('drops hop-by-hop %s', (name) => {
    const got = buildUpstreamHeaders([name, 'x', 'Accept', '*/*'], untrusted);
    expect(got.map((h) => h.toLowerCase())).not.toContain(name.toLowerCase());
  });

  it('keeps the case and order of the client headers it passes', () => {
    expect(buildUpstreamHeaders(['X-A', '1', 'x-b', '2'], untrusted).slice(0, 4)).toEqual([
      'X-A',
      '1',
      'x-b',
      '2',
    ]);
  });
});

describe('isHttps', () => {
  it.each([
    { desc: 'TLS', hop: { ...untrusted, tls: true }, proto: undefined, want: true },
    { desc: 'trusted https', hop: trusted, proto: 'https', want: true },
    { desc: 'trusted HTTPS, spaced', hop: trusted, proto: ' HTTPS', want: true },
    { desc: 'untrusted https', hop: untrusted, proto: 'https', want: false },
    { desc: 'trusted http', hop: trusted, proto: 'http', want: false },
  ])('$desc → $want', ({ hop, proto, want }) => {
    expect(isHttps(hop, proto)).toBe(want);
  });
});
