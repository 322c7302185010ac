import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  COOKIE_VALUE_LENGTH,
  decodeAffinityCookie,
  encodeAffinityCookie,
  endpointTag,
} from './cookie-codec.ts';

const k1 = createSecretKey(Buffer.alloc(32, 1));
const k2 = createSecretKey(Buffer.alloc(32, 2));
const pool = 'default/shop';
const cookie = {
  sessionId: 'AAECAwQFBgcICQoL',
  endpointTag: endpointTag(pool, 'shop-a'),
  issuedAt: 1_700_000_000,
  lastSeen: 1_700_000_100,
};

describe('affinity cookie codec', () => {
  it('round-trips', () => {
    const v = encodeAffinityCookie(cookie, [k1], pool);
    expect(v).toHaveLength(COOKIE_VALUE_LENGTH);
    expect(decodeAffinityCookie(v, [k1], pool)).toEqual({ ok: true, cookie });
  });

  it('a value verified once is remembered only for that key list and pool', () => {
    const keys = [k1];
    const v = encodeAffinityCookie(cookie, keys, pool);
    expect(decodeAffinityCookie(v, keys, pool).ok).toBe(true);
    expect(decodeAffinityCookie(v, keys, pool)).toEqual({ ok: true, cookie });
    // The key was rotated out: the remembered verification must not outlive it.
    expect(decodeAffinityCookie(v, [k2], pool)).toEqual({ ok: false, problem: 'signature' });
    expect(decodeAffinityCookie(v, keys, 'default/other')).toEqual({ ok: false, problem: 'signature' });
  });

  it('carries no address and no endpoint id in clear', () => {
    const v = encodeAffinityCookie(cookie, [k1], pool);
    const bytes = Buffer.from(v, 'base64url').toString('latin1');
    expect(bytes).not.toContain('shop-a');
    expect(bytes).not.toContain('127.0.0.1');
  });

  it('rotation: a cookie signed by an old key still verifies while that key is listed', () => {
    const old = encodeAffinityCookie(cookie, [k1], pool);
    expect(decodeAffinityCookie(old, [k2, k1], pool).ok).toBe(true);
    expect(decodeAffinityCookie(old, [k2], pool)).toEqual({ ok: false, problem: 'signature' });
    // The first key signs.
    const fresh = encodeAffinityCookie(cookie, [k2, k1], pool);
    expect(decodeAffinityCookie(fresh, [k2], pool).ok).toBe(true);
  });

  it('a cookie of another pool is foreign', () => {
    const v = encodeAffinityCookie(cookie, [k1], pool);
    expect(decodeAffinityCookie(v, [k1], 'default/other')).toEqual({ ok: false, problem: 'signature' });
  });

  it('every single-bit flip is refused', () => {
    const v = encodeAffinityCookie(cookie, [k1], pool);
    const raw = Buffer.from(v, 'base64url');
    for (let byte = 0; byte < raw.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const t = Buffer.from(raw);
        t[byte]! ^= 1 << bit;
        expect(decodeAffinityCookie(t.toString('base64url'), [k1], pool).ok).toBe(false);
      }
    }
  });

  it.each([
    { desc: 'empty', value: '', problem: 'malformed' },
    { desc: 'short', value: 'abc', problem: 'malformed' },
    { desc: 'not base64url', value: '!'.repeat(COOKIE_VALUE_LENGTH), problem: 'malformed' },
    { desc: 'long', value: 'A'.repeat(COOKIE_VALUE_LENGTH + 1), problem: 'malformed' },
    { desc: 'right length, wrong version', value: 'A'.repeat(COOKIE_VALUE_LENGTH), problem: 'version' },
    { desc: 'nginx-sticky md5 route', value: 'a1b2c3d4e5f60718293a4b5c6d7e8f90', problem: 'malformed' },
  ])('refuses $desc as $problem', ({ value, problem }) => {
    expect(decodeAffinityCookie(value, [k1], pool)).toEqual({ ok: false, problem });
  });

  it('endpoint tags are stable, distinct per endpoint and per pool', () => {
    expect(endpointTag(pool, 'shop-a')).toBe(endpointTag(pool, 'shop-a'));
    expect(endpointTag(pool, 'shop-a')).not.toBe(endpointTag(pool, 'shop-b'));
    expect(endpointTag(pool, 'shop-a')).not.toBe(endpointTag('other/shop', 'shop-a'));
    expect(endpointTag(pool, 'shop-a')).toMatch(/^[A-Za-z0-9_-]{12}$/);
  });

  it('refuses to sign without a key', () => {
    expect(() => encodeAffinityCookie(cookie, [], pool)).toThrow(RangeError);
  });
});
