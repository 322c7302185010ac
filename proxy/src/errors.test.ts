import { describe, expect, it } from 'vitest';
import {
  classifyFailure,
  classifyUpstreamError,
  connectionWasUsed,
  isConnectError,
  SOCKET_BYTES_READ,
  statusForError,
  TetherError,
} from './errors.ts';

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

describe('classifyFailure: only the endpoint’s own failures count', () => {
  it.each([
    { desc: 'connect refused', err: withCode('ECONNREFUSED'), want: 'connect' },
    { desc: 'connect timeout', err: withCode('UND_ERR_CONNECT_TIMEOUT'), want: 'connect' },
    { desc: 'refused as a cause', err: withCode('UND_ERR_X', withCode('ECONNREFUSED')), want: 'connect' },
    { desc: 'headers timeout', err: withCode('UND_ERR_HEADERS_TIMEOUT'), want: 'timeout' },
    { desc: 'reset', err: withCode('ECONNRESET'), want: 'reset' },
    { desc: 'other side closed', err: withCode('UND_ERR_SOCKET'), want: 'reset' },
    { desc: 'broken pipe', err: withCode('EPIPE'), want: 'reset' },
    { desc: 'malformed response', err: withCode('HPE_INVALID_CONSTANT'), want: 'protocol' },
    {
      desc: 'response length mismatch',
      err: withCode('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'),
      want: 'protocol',
    },
    { desc: 'expect header refused by undici', err: withCode('UND_ERR_NOT_SUPPORTED'), want: 'request' },
    { desc: 'duplicate host refused by undici', err: withCode('UND_ERR_INVALID_ARG'), want: 'request' },
    {
      desc: 'request body length mismatch',
      err: withCode('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'),
      want: 'request',
    },
    { desc: 'pool closed by a table swap', err: withCode('UND_ERR_CLOSED'), want: 'unsent' },
    { desc: 'aborted', err: withCode('UND_ERR_ABORTED'), want: 'aborted' },
    { desc: 'the proxy’s own abort', err: new TetherError('TETHER_SEND_TIMEOUT', 'x'), want: 'aborted' },
    { desc: 'unknown', err: new Error('weird'), want: 'other' },
  ])('$desc → $want', ({ err, want }) => {
    expect(classifyFailure(err)).toBe(want);
  });

  it.each([
    { desc: 'undici SocketError on a fresh connection', err: { socket: { bytesRead: 0 } }, want: false },
    { desc: 'undici SocketError on a reused connection', err: { socket: { bytesRead: 120 } }, want: true },
    { desc: 'raw reset tagged by the connector, fresh', err: { [SOCKET_BYTES_READ]: 0 }, want: false },
    { desc: 'raw reset tagged by the connector, reused', err: { [SOCKET_BYTES_READ]: 9 }, want: true },
    { desc: 'no socket details: assume reused, blame nobody', err: new Error('x'), want: true },
  ])('connectionWasUsed: $desc → $want', ({ err, want }) => {
    expect(connectionWasUsed(err)).toBe(want);
  });

  it.each([
    { code: 'TETHER_BAD_REQUEST', status: 400 },
    { code: 'TETHER_BODY_TIMEOUT', status: 408 },
    { code: 'TETHER_QUEUE_FULL', status: 503 },
    { code: 'TETHER_QUEUE_TIMEOUT', status: 503 },
  ] as const)('$code → $status', ({ code, status }) => {
    expect(statusForError(new TetherError(code, 'x'))).toBe(status);
  });

  it('undici refusing the request maps to 400 TETHER_BAD_REQUEST', () => {
    expect(classifyUpstreamError(withCode('UND_ERR_INVALID_ARG')).code).toBe('TETHER_BAD_REQUEST');
  });
});
