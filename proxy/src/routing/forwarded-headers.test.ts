import { describe, expect, it } from 'vitest';
import {
  buildUpstreamHeaders,
  isHttps,
  stripResponseHopHeaders,
  stripResponseHopRawHeaders,
  UNTRUSTED_DROP,
} from './forwarded-headers.ts';

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
      'x-real-ip': '127.0.0.1',
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
    'HTTP2-Settings',
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

describe('buildUpstreamHeaders: what a client may not claim', () => {
  const claims = [
    'Forwarded',
    'for=1.2.3.4;proto=https',
    'X-Real-IP',
    '1.2.3.4',
    'True-Client-IP',
    '1.2.3.4',
    'X-Forwarded-Port',
    '443',
    'X-Client-IP',
    '1.2.3.4',
    'CF-Connecting-IP',
    '1.2.3.4',
    'X-Forwarded-Prefix',
    '/admin',
    'Host',
    'shop',
  ];

  it.each([
    {
      desc: 'untrusted peer: identity headers dropped, X-Real-IP and X-Forwarded-Port are this hop',
      hop: { ...untrusted, port: 8080 },
      want: {
        forwarded: undefined,
        'true-client-ip': undefined,
        'x-client-ip': undefined,
        'cf-connecting-ip': undefined,
        'x-forwarded-prefix': undefined,
        'x-real-ip': '127.0.0.1',
        'x-forwarded-port': '8080',
      },
    },
    {
      desc: 'trusted peer: they pass, X-Real-IP and X-Forwarded-Port are the peer’s',
      hop: { ...trusted, port: 8080 },
      want: {
        forwarded: 'for=1.2.3.4;proto=https',
        'true-client-ip': '1.2.3.4',
        'x-client-ip': '1.2.3.4',
        'cf-connecting-ip': '1.2.3.4',
        'x-forwarded-prefix': '/admin',
        'x-real-ip': '1.2.3.4',
        'x-forwarded-port': '443',
      },
    },
    {
      desc: 'untrusted peer, port unknown: no X-Forwarded-Port at all',
      hop: untrusted,
      want: { 'x-forwarded-port': undefined, 'x-real-ip': '127.0.0.1' },
    },
  ])('$desc', ({ hop, want }) => {
    const got = asObject(buildUpstreamHeaders(claims, hop));
    for (const [name, value] of Object.entries(want)) expect(got[name], name).toBe(value);
  });

  it.each(UNTRUSTED_DROP)('drops %s from an untrusted peer, in any case', (name) => {
    const got = buildUpstreamHeaders([name.toUpperCase(), 'x', 'Accept', '*/*'], untrusted);
    expect(got.map((h) => h.toLowerCase())).not.toContain(name);
  });

  it('each rewritten header appears once, whatever the client sent', () => {
    const got = buildUpstreamHeaders(
      [
        'Host',
        'shop',
        'X-Real-IP',
        'a',
        'x-real-ip',
        'b',
        'X-Forwarded-Port',
        '1',
        'X-Forwarded-Host',
        'evil',
      ],
      { ...untrusted, port: 80 },
    );
    const names = got.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase());
    for (const n of [
      'x-real-ip',
      'x-forwarded-port',
      'x-forwarded-host',
      'x-forwarded-for',
      'x-forwarded-proto',
    ])
      expect(
        names.filter((x) => x === n),
        n,
      ).toHaveLength(1);
  });

  it('Connection may not remove Host, nor the headers the proxy adds', () => {
    const got = asObject(
      buildUpstreamHeaders(
        ['Host', 'shop', 'Connection', 'host, x-forwarded-for, x-real-ip, x-forwarded-host'],
        untrusted,
      ),
    );
    expect(got.host).toBe('shop');
    expect(got['x-forwarded-for']).toBe('127.0.0.1');
    expect(got['x-real-ip']).toBe('127.0.0.1');
    expect(got['x-forwarded-host']).toBe('shop');
  });

  it('an upgrade gets Connection: Upgrade and Upgrade back, and nothing the client made hop-by-hop', () => {
    const got = buildUpstreamHeaders(
      [
        'Host',
        'shop',
        'Connection',
        'Upgrade, X-Hop',
        'Upgrade',
        'websocket',
        'X-Hop',
        '1',
        'Proxy-Authorization',
        'Basic eDp5',
        'Keep-Alive',
        'timeout=5',
        'TE',
        'trailers',
        'Sec-WebSocket-Key',
        'k',
      ],
      untrusted,
      'websocket',
    );
    const o = asObject(got);
    expect(o.connection).toBe('Upgrade');
    expect(o.upgrade).toBe('websocket');
    expect(o['sec-websocket-key']).toBe('k');
    for (const gone of ['x-hop', 'proxy-authorization', 'keep-alive', 'te'])
      expect(o[gone], gone).toBeUndefined();
    expect(got.filter((h) => h.toLowerCase() === 'connection')).toHaveLength(1);
  });
});

describe('stripResponseHopHeaders', () => {
  it.each([
    {
      desc: 'worked example: hop-by-hop and Connection-named headers go',
      headers: { connection: 'close, X-Internal', 'x-internal': '1', 'content-type': 'text/plain' },
      keepUpgrade: false,
      want: { 'content-type': 'text/plain' },
    },
    {
      desc: 'repeated Connection headers (an array) all count',
      headers: { connection: ['x-a', 'X-B'], 'x-a': '1', 'x-b': '2', 'keep-alive': 'timeout=5', etag: '"1"' },
      keepUpgrade: false,
      want: { etag: '"1"' },
    },
    {
      desc: 'every fixed hop-by-hop header',
      headers: {
        'transfer-encoding': 'chunked',
        'proxy-connection': 'keep-alive',
        upgrade: 'h2c',
        te: 'trailers',
        trailer: 'x-t',
        'set-cookie': ['a=1'],
      },
      keepUpgrade: false,
      want: { 'set-cookie': ['a=1'] },
    },
    {
      desc: 'a 101: Upgrade stays, Connection becomes Upgrade, named headers still go',
      headers: {
        connection: 'Upgrade, X-Secret',
        upgrade: 'websocket',
        'x-secret': 's',
        'sec-websocket-accept': 'a',
      },
      keepUpgrade: true,
      want: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-accept': 'a' },
    },
  ])('$desc', ({ headers, keepUpgrade, want }) => {
    const h: Record<string, string | string[] | undefined> = { ...headers };
    expect(stripResponseHopHeaders(h, keepUpgrade)).toBe(h);
    expect(h).toEqual(want);
  });
});

describe('stripResponseHopRawHeaders', () => {
  it('drops hop-by-hop headers and those Connection names, keeps the rest as sent', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'Connection',
      'close, X-Internal',
      'X-Internal',
      'db=10.0.0.5',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'Content-Length',
      '3',
    ];
    expect(stripResponseHopRawHeaders(raw)).toEqual([
      'Content-Type',
      'text/plain',
      'Set-Cookie',
      'a=1',
      'Set-Cookie',
      'b=2',
      'Content-Length',
      '3',
    ]);
  });

  it('agrees with stripResponseHopHeaders on which names go', () => {
    const raw = [
      'Upgrade',
      'h2c',
      'TE',
      'trailers',
      'Trailer',
      'x-t',
      'Proxy-Connection',
      'keep-alive',
      'X-A',
      '1',
    ];
    const obj: Record<string, string> = {};
    for (let i = 0; i < raw.length; i += 2) obj[(raw[i] as string).toLowerCase()] = raw[i + 1] as string;
    const kept = stripResponseHopRawHeaders(raw)
      .filter((_, i) => i % 2 === 0)
      .map((n) => n.toLowerCase());
    expect(kept).toEqual(Object.keys(stripResponseHopHeaders(obj)));
  });
});
