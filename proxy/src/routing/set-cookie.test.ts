import { describe, expect, it } from 'vitest';
import type { CompiledCookie } from './compiled-table.ts';
import { formatSetCookie } from './set-cookie.ts';

const base: CompiledCookie = {
  name: 'route',
  path: '/',
  domain: '',
  permanent: false,
  absoluteTimeoutMs: 86_400_000,
  idleTimeoutMs: 0,
  refreshAfterMs: Number.POSITIVE_INFINITY,
  secure: 'Auto',
  httpOnly: true,
  sameSite: 'Lax',
};

describe('formatSetCookie', () => {
  it.each([
    {
      desc: 'Session: no Max-Age, no Expires',
      c: {},
      https: false,
      want: 'route=V; Path=/; HttpOnly; SameSite=Lax',
    },
    {
      desc: 'Permanent: Max-Age = absoluteTimeout',
      c: { permanent: true },
      https: false,
      want: 'route=V; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax',
    },
    {
      desc: 'Auto over https: Secure',
      c: {},
      https: true,
      want: 'route=V; Path=/; Secure; HttpOnly; SameSite=Lax',
    },
    {
      desc: 'Always: Secure over http',
      c: { secure: 'Always' },
      https: false,
      want: 'route=V; Path=/; Secure; HttpOnly; SameSite=Lax',
    },
    {
      desc: 'Never: no Secure over https',
      c: { secure: 'Never' },
      https: true,
      want: 'route=V; Path=/; HttpOnly; SameSite=Lax',
    },
    {
      desc: 'domain, path, no HttpOnly, Strict',
      c: { domain: 'example.com', path: '/app', httpOnly: false, sameSite: 'Strict' },
      https: false,
      want: 'route=V; Path=/app; Domain=example.com; SameSite=Strict',
    },
  ] as Array<{ desc: string; c: Partial<CompiledCookie>; https: boolean; want: string }>)(
    '$desc',
    ({ c, https, want }) => {
      expect(formatSetCookie({ ...base, ...c }, 'V', https)).toBe(want);
    },
  );
});
