import { describe, expect, it } from 'vitest';
import { parsePeerArgs } from './peer-args.ts';
import { appendSetCookie, parseEndpointArgs, RouteCookieRouter, readCookie } from './route-cookie.ts';

const endpoints = [
  { id: 'be-1', port: 8081 },
  { id: 'be-2', port: 8082 },
  { id: 'be-3', port: 8083 },
];

describe('readCookie', () => {
  it.each([
    { desc: 'no header', header: undefined, want: undefined },
    { desc: 'alone', header: 'route=be-2', want: 'be-2' },
    { desc: 'among others, spaces around', header: 'a=1;  route = be-3 ; b=2', want: 'be-3' },
    { desc: 'first of two wins', header: 'route=be-1; route=be-2', want: 'be-1' },
    { desc: 'a longer name is another cookie', header: 'xroute=be-1; routes=be-2', want: undefined },
    { desc: 'empty value counts as absent', header: 'route=', want: undefined },
    { desc: 'a pair without = is skipped', header: 'route; route=be-2', want: 'be-2' },
    { desc: 'value with = kept whole', header: 'route=a=b', want: 'a=b' },
  ])('$desc', ({ header, want }) => {
    expect(readCookie(header, 'route')).toBe(want);
  });
});

describe('RouteCookieRouter', () => {
  it('new pins go round robin, each with a Set-Cookie naming its endpoint', () => {
    const r = new RouteCookieRouter(endpoints);
    const got = [1, 2, 3, 4].map(() => r.choose(undefined));
    expect(got.map((c) => c.endpoint.id)).toEqual(['be-1', 'be-2', 'be-3', 'be-1']);
    expect(got[1]?.setCookie).toBe('route=be-2; Path=/; HttpOnly; SameSite=Lax');
  });

  it.each([
    { desc: 'a valid cookie pins, no Set-Cookie', cookie: 'route=be-3', want: 'be-3', sets: false },
    { desc: 'an unknown endpoint is a new pin', cookie: 'route=be-9', want: 'be-1', sets: true },
    { desc: 'another cookie only is a new pin', cookie: 'session=abc', want: 'be-1', sets: true },
    { desc: 'an empty value is a new pin', cookie: 'route=', want: 'be-1', sets: true },
  ])('$desc', ({ cookie, want, sets }) => {
    const c = new RouteCookieRouter(endpoints).choose(cookie);
    expect(c.endpoint.id).toBe(want);
    expect(c.setCookie !== undefined).toBe(sets);
  });

  it('pinned requests do not move the round robin', () => {
    const r = new RouteCookieRouter(endpoints);
    r.choose('route=be-2');
    expect(r.choose(undefined).endpoint.id).toBe('be-1');
  });

  it('refuses an empty endpoint list', () => {
    expect(() => new RouteCookieRouter([])).toThrow(/at least one endpoint/);
  });
});

describe('appendSetCookie', () => {
  it.each([
    { desc: 'none before', existing: undefined, want: ['route=x'] },
    { desc: 'one before', existing: 'sid=1', want: ['sid=1', 'route=x'] },
    { desc: 'two before', existing: ['a=1', 'b=2'], want: ['a=1', 'b=2', 'route=x'] },
  ])('$desc', ({ existing, want }) => {
    expect(appendSetCookie(existing, 'route=x')).toEqual(want);
  });
});

describe('parseEndpointArgs / parsePeerArgs', () => {
  it('reads ID=PORT pairs', () => {
    expect(parsePeerArgs(['9000', 'be-1=8081', 'be-2=8082'])).toEqual({
      port: 9000,
      endpoints: [
        { id: 'be-1', port: 8081 },
        { id: 'be-2', port: 8082 },
      ],
    });
  });

  it.each([
    { desc: 'no endpoints', args: [], want: /no endpoints/ },
    { desc: 'no =', args: ['8081'], want: /expected ID=PORT/ },
    { desc: 'empty id', args: ['=8081'], want: /expected ID=PORT/ },
    { desc: 'id with a space', args: ['be 1=8081'], want: /expected ID=PORT/ },
    { desc: 'port 0', args: ['be-1=0'], want: /1\.\.65535/ },
    { desc: 'port not a number', args: ['be-1=http'], want: /1\.\.65535/ },
    { desc: 'id twice', args: ['be-1=8081', 'be-1=8082'], want: /given twice/ },
  ])('endpoints: $desc → error', ({ args, want }) => {
    expect(() => parseEndpointArgs(args)).toThrow(want);
  });

  it.each([
    { desc: 'missing', argv: [], want: /listen port ""/ },
    { desc: 'too big', argv: ['70000', 'be-1=1'], want: /listen port "70000"/ },
  ])('listen port $desc → error', ({ argv, want }) => {
    expect(() => parsePeerArgs(argv)).toThrow(want);
  });
});
