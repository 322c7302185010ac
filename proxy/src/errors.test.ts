import { describe, expect, it } from 'vitest';
import { classifyUpstreamError, isConnectError, statusForError, TetherError } from './errors.ts';

const withCode = (code: string, cause?: unknown) =>
  Object.assign(new Error(code), { code, ...(cause ? { cause } : {}) });

describe('upstream errors → status, in one place', () => {
  it.each([
    {
      desc: 'connection refused',
      err: withCode('ECONNREFUSED'),
      code: 'TETHER_UPSTREAM_REFUSED',
      status: 502,
      connect: true,
    },
    {
      desc: 'connect timeout',
      err: withCode('UND_ERR_CONNECT_TIMEOUT'),
      code: 'TETHER_UPSTREAM_TIMEOUT',
      status: 504,
      connect: true,
    },
    {
      desc: 'headers timeout',
      err: withCode('UND_ERR_HEADERS_TIMEOUT'),
      code: 'TETHER_UPSTREAM_TIMEOUT',
      status: 504,
      connect: false,
    },
    {
      desc: 'body timeout',
      err: withCode('UND_ERR_BODY_TIMEOUT'),
      code: 'TETHER_UPSTREAM_TIMEOUT',
      status: 504,
      connect: false,
    },
    {
      desc: 'reset',
      err: withCode('ECONNRESET'),
      code: 'TETHER_UPSTREAM_RESET',
      status: 502,
      connect: false,
    },
    {
      desc: 'undici socket error',
      err: withCode('UND_ERR_SOCKET'),
      code: 'TETHER_UPSTREAM_RESET',
      status: 502,
      connect: false,
    },
    {
      desc: 'refused, wrapped as a cause',
      err: withCode('UND_ERR_X', withCode('ECONNREFUSED')),
      code: 'TETHER_UPSTREAM_REFUSED',
      status: 502,
      connect: true,
    },
    {
      desc: 'anything else',
      err: new Error('weird'),
      code: 'TETHER_UPSTREAM_PROTOCOL',
      status: 502,
      connect: false,
    },
    {
      desc: 'not even an Error',
      err: 'a string',
      code: 'TETHER_UPSTREAM_PROTOCOL',
      status: 502,
      connect: false,
    },
  ])('$desc → $code, $status', ({ err, code, status, connect }) => {
    const t = classifyUpstreamError(err);
    expect(t.code).toBe(code);
    expect(t.cause).toBe(err);
    expect(statusForError(t)).toBe(status);
    expect(isConnectError(err)).toBe(connect);
  });

  it.each([
    { code: 'TETHER_NO_ENDPOINT', status: 503 },
    { code: 'TETHER_NO_TABLE', status: 503 },
  ] as const)('$code → $status', ({ code, status }) => {
    expect(statusForError(new TetherError(code, 'x'))).toBe(status);
  });
});
