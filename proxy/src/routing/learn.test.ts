import { describe, expect, it } from 'vitest';
import { type TestEndpoint, testTable } from '../../../test/helpers/pools.ts';
import { type CompiledTable, compileTable } from './compiled-table.ts';
import {
  decideByStoredPin,
  findLearnedCookie,
  findSetCookie,
  MAX_LEARNED_VALUE_LENGTH,
  type PinContext,
  pinContextFor,
  planStoreWrites,
  type StoreAnswer,
  storeKeyOf,
} from './learn.ts';
import { decideByKey, type EndpointView } from './pick-endpoint.ts';
import { digest, pickTop } from './rendezvous.ts';

const T0 = 1_800_000_000_000; // Unix ms
const ABC: TestEndpoint[] = [
  { name: 'a', port: 1 },
  { name: 'b', port: 2 },
  { name: 'c', port: 3 },
];

function table(spec: Record<string, unknown> = {}, endpoints: TestEndpoint[] = ABC): CompiledTable {
  return compileTable(testTable(1, endpoints, spec), undefined, T0);
}

function view(t: CompiledTable, down: string[] = []): EndpointView {
  return { isHealthy: (i) => !down.includes(t.endpoints[i]?.id ?? ''), inflight: () => 0 };
}

/** The key's rendezvous order over all of `t`'s endpoints. */
function firstChoice(t: CompiledTable, key: string, skip: string[] = []): string {
  const i = pickTop(digest(key), t.endpoints, (j) => !skip.includes(t.endpoints[j]?.id ?? ''));
  return t.endpoints[i]?.id as string;
}

describe('storeKeyOf', () => {
  it('namespaces by pool and kind, hashes the value and keeps it out of the key', () => {
    const k = storeKeyOf('default/shop', 'learn', 'ABCDEF0123456789');
    expect(k).toMatch(/^tether:\{default\/shop\}:learn:[A-Za-z0-9_-]{22}$/);
    expect(k).not.toContain('ABCDEF');
    expect(storeKeyOf('default/shop', 'learn', 'ABCDEF0123456789')).toBe(k);
  });

  it.each([
    { desc: 'another value', other: ['default/shop', 'learn', 'ABCDEF012345678A'] },
    { desc: 'another pool', other: ['team/shop', 'learn', 'ABCDEF0123456789'] },
    { desc: 'another kind', other: ['default/shop', 'pin', 'ABCDEF0123456789'] },
  ] as Array<{ desc: string; other: [string, 'learn' | 'pin', string] }>)(
    'differs for $desc',
    ({ other }) => {
      expect(storeKeyOf(other[0], other[1], other[2])).not.toBe(
        storeKeyOf('default/shop', 'learn', 'ABCDEF0123456789'),
      );
    },
  );

  it('is stable across versions (golden: every proxy replica and release must agree)', () => {
    // Computed apart: python3 -c "import hashlib,base64; print(base64.urlsafe_b64encode(
    //   hashlib.sha256(b'default/shop\x00learn\x00A1').digest()[:16]).decode().rstrip('='))"
    expect(storeKeyOf('default/shop', 'learn', 'A1')).toBe(
      'tether:{default/shop}:learn:bKS6ZkwDwQ0l5obSm_qf4Q',
    );
  });
});

describe('findLearnedCookie', () => {
  it.each([
    { desc: 'absent header', header: undefined, want: { problem: 'missing' } },
    { desc: 'other cookies only', header: 'a=1; b=2', want: { problem: 'missing' } },
    { desc: 'the value', header: 'a=1; JSESSIONID=ABC.node1; b=2', want: { value: 'ABC.node1' } },
    {
      desc: 'the first of two (most specific path)',
      header: 'JSESSIONID=X; JSESSIONID=Y',
      want: { value: 'X' },
    },
    { desc: 'a quoted value', header: 'JSESSIONID="Q1"', want: { value: 'Q1' } },
    { desc: 'an empty value', header: 'JSESSIONID=', want: { problem: 'missing' } },
    { desc: 'a name that only ends the same', header: 'XJSESSIONID=1', want: { problem: 'missing' } },
    { desc: 'a control character', header: 'JSESSIONID=a\u0001b', want: { problem: 'invalid' } },
    { desc: 'a comma', header: 'JSESSIONID=a,b', want: { problem: 'invalid' } },
    {
      desc: 'an over-long value',
      header: `JSESSIONID=${'x'.repeat(MAX_LEARNED_VALUE_LENGTH + 1)}`,
      want: { problem: 'invalid' },
    },
  ])('$desc', ({ header, want }) => {
    expect(findLearnedCookie(header, 'JSESSIONID')).toEqual(want);
  });
});

describe('findSetCookie', () => {
  const now = Date.parse('2026-11-27T12:00:00Z');
  it.each([
    { desc: 'no header', sc: undefined, want: undefined },
    { desc: 'another cookie', sc: 'route=1; Path=/', want: undefined },
    { desc: 'a session cookie', sc: 'JSESSIONID=ABC; Path=/; HttpOnly', want: { kind: 'set', value: 'ABC' } },
    {
      desc: 'one of several headers, Expires with its comma kept whole',
      sc: ['a=1', 'JSESSIONID=ABC; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Secure', 'b=2'],
      want: { kind: 'set', value: 'ABC' },
    },
    {
      desc: 'the last header wins',
      sc: ['JSESSIONID=OLD', 'JSESSIONID=NEW'],
      want: { kind: 'set', value: 'NEW' },
    },
    { desc: 'an empty value (logout)', sc: 'JSESSIONID=; Path=/', want: { kind: 'deleted' } },
    { desc: 'Max-Age=0', sc: 'JSESSIONID=ABC; Max-Age=0', want: { kind: 'deleted' } },
    {
      desc: 'Expires in the past',
      sc: 'JSESSIONID=ABC; Expires=Thu, 01 Jan 1970 00:00:00 GMT',
      want: { kind: 'deleted' },
    },
    {
      desc: 'Max-Age wins over a past Expires',
      sc: 'JSESSIONID=ABC; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=60',
      want: { kind: 'set', value: 'ABC' },
    },
    { desc: 'a value that is no cookie value', sc: 'JSESSIONID=a b', want: undefined },
  ])('$desc', ({ sc, want }) => {
    expect(findSetCookie(sc, 'JSESSIONID', now)).toEqual(want);
  });
});

describe('decideByStoredPin', () => {
  const t = table({ affinity: { type: 'Learn' } });
  const key = 'SESSION-1';
  const first = firstChoice(t, key);
  const other = t.endpoints.map((e) => e.id).find((id) => id !== first) as string;

  it.each([
    {
      desc: 'found, healthy: hit, even off its hash choice',
      answer: { kind: 'found', endpointId: other },
      down: [],
      want: { endpoint: other, outcome: 'hit', reason: 'none' },
    },
    {
      desc: 'found, unhealthy: re-pin to the hash choice among the healthy',
      answer: { kind: 'found', endpointId: other },
      down: [other],
      want: { endpoint: firstChoice(t, key, [other]), outcome: 'repin', reason: 'unhealthy' },
    },
    {
      desc: 'found, gone from the table: re-pin',
      answer: { kind: 'found', endpointId: 'pod-that-left' },
      down: [],
      want: { endpoint: first, outcome: 'repin', reason: 'removed' },
    },
    {
      desc: 'absent: a new pin by the hash',
      answer: { kind: 'absent' },
      down: [],
      want: { endpoint: first, outcome: 'new', reason: 'unknown' },
    },
    {
      desc: 'store unavailable: the stateless hash',
      answer: { kind: 'unavailable', reason: 'timeout' },
      down: [],
      want: { endpoint: first, outcome: 'hit', reason: 'none' },
    },
  ] as Array<{ desc: string; answer: StoreAnswer; down: string[]; want: Record<string, string> }>)(
    '$desc',
    ({ answer, down, want }) => {
      const d = decideByStoredPin(t, key, answer, view(t, down), T0);
      expect({ endpoint: d.endpoint?.id, outcome: d.outcome, reason: d.reason }).toEqual(want);
      expect(d.setCookie).toBeUndefined();
    },
  );

  it('store unavailable is exactly the stateless decision, so every replica agrees without the store', () => {
    for (let i = 0; i < 50; i++) {
      const k = `client-${i}`;
      const v = view(t, ['b']);
      const stored = decideByStoredPin(t, k, { kind: 'unavailable', reason: 'not_connected' }, v, T0);
      const stateless = decideByKey(t, k, undefined, v, T0, () => k);
      expect(stored.endpoint?.id).toBe(stateless.endpoint?.id);
    }
  });

  it('a found pin on a draining endpoint is kept in its drain window, and moved after', () => {
    const eps = ABC.map((e) => (e.name === other ? { ...e, draining: true } : e));
    const td = table({ affinity: { type: 'Learn' }, draining: { timeout: '1m' } }, eps);
    const found: StoreAnswer = { kind: 'found', endpointId: other };
    expect(decideByStoredPin(td, key, found, view(td), T0 + 1_000).endpoint?.id).toBe(other);
    const late = decideByStoredPin(td, key, found, view(td), T0 + 61_000);
    expect(late).toMatchObject({ outcome: 'repin', reason: 'draining' });
    expect(late.endpoint?.id).not.toBe(other);
    // And a newcomer never lands on it.
    expect(decideByStoredPin(td, other, { kind: 'absent' }, view(td), T0).endpoint?.draining).toBe(false);
  });

  it('under Reject, a found pin to a dead endpoint is a 503, never a move', () => {
    const tr = table({ affinity: { type: 'Learn' }, onEndpointFailure: 'Reject' });
    const d = decideByStoredPin(tr, key, { kind: 'found', endpointId: other }, view(tr, [other]), T0);
    expect(d.endpoint).toBeUndefined();
  });
});

describe('pinContextFor', () => {
  it.each([
    { desc: 'Cookie affinity', spec: {}, key: 'k', want: undefined },
    {
      desc: 'Header without persisted pins',
      spec: { affinity: { type: 'Header' } },
      key: 'k',
      want: undefined,
    },
    {
      desc: 'Header with persisted pins but no key',
      spec: { affinity: { type: 'Header' }, sessionStore: { persistPins: true } },
      key: undefined,
      want: undefined,
    },
  ])('none for $desc', ({ spec, key, want }) => {
    expect(pinContextFor(table(spec), key, key === undefined ? 'missing' : undefined)).toBe(want);
  });

  it('Learn: the learn key and timeout, also without a cookie (its response may set one)', () => {
    const t = table({ affinity: { type: 'Learn', learn: { cookieName: 'SID', timeout: '10m' } } });
    expect(pinContextFor(t, 'v', undefined)).toEqual({
      affinityKey: 'v',
      problem: undefined,
      storeKey: storeKeyOf('default/shop', 'learn', 'v'),
      ttlMs: 600_000,
      answer: undefined,
      learn: { pool: 'default/shop', cookieName: 'SID', requestValue: 'v' },
    });
    expect(pinContextFor(t, undefined, 'invalid')).toMatchObject({ storeKey: undefined, problem: 'invalid' });
  });

  it('persisted pins: the pin key and the pin timeout', () => {
    const t = table({
      affinity: { type: 'ClientIP' },
      sessionStore: { persistPins: true, pinTimeout: '2h' },
    });
    expect(pinContextFor(t, '10.0.0.0/24', undefined)).toMatchObject({
      storeKey: storeKeyOf('default/shop', 'pin', '10.0.0.0/24'),
      ttlMs: 7_200_000,
      learn: undefined,
    });
  });
});

describe('planStoreWrites', () => {
  const pool = 'default/shop';
  const learnCtx = (requestValue: string | undefined, answer: StoreAnswer | undefined): PinContext => ({
    affinityKey: requestValue,
    problem: requestValue === undefined ? 'missing' : undefined,
    storeKey: requestValue === undefined ? undefined : storeKeyOf(pool, 'learn', requestValue),
    ttlMs: 60_000,
    answer,
    learn: { pool, cookieName: 'JSESSIONID', requestValue },
  });
  const pinCtx = (answer: StoreAnswer): PinContext => ({
    affinityKey: 'k',
    problem: undefined,
    storeKey: storeKeyOf(pool, 'pin', 'k'),
    ttlMs: 5_000,
    answer,
    learn: undefined,
  });
  const set = (value: string, endpointId: string, kind: 'learn' | 'pin' = 'learn', ttlMs = 60_000) => ({
    op: 'set',
    key: storeKeyOf(pool, kind, value),
    endpointId,
    ttlMs,
  });

  it.each([
    {
      desc: 'Learn: a new session is learned from Set-Cookie',
      ctx: learnCtx(undefined, undefined),
      by: 'a',
      sc: 'JSESSIONID=NEW; Path=/',
      want: [set('NEW', 'a')],
    },
    {
      desc: 'Learn: a hit whose response re-sends the same cookie writes nothing',
      ctx: learnCtx('V', { kind: 'found', endpointId: 'a' }),
      by: 'a',
      sc: 'JSESSIONID=V',
      want: [],
    },
    {
      desc: 'Learn: a rotated session id (login) is learned',
      ctx: learnCtx('V', { kind: 'found', endpointId: 'a' }),
      by: 'a',
      sc: 'JSESSIONID=W',
      want: [set('W', 'a')],
    },
    {
      desc: 'Learn: a logout removes the pin',
      ctx: learnCtx('V', { kind: 'found', endpointId: 'a' }),
      by: 'a',
      sc: 'JSESSIONID=; Max-Age=0',
      want: [{ op: 'del', key: storeKeyOf(pool, 'learn', 'V') }],
    },
    {
      desc: 'Learn: a re-pin (or redispatch) stores the endpoint that answered',
      ctx: learnCtx('V', { kind: 'found', endpointId: 'a' }),
      by: 'b',
      sc: undefined,
      want: [set('V', 'b')],
    },
    {
      desc: 'Learn: an unknown cookie is stored where it was pinned',
      ctx: learnCtx('V', { kind: 'absent' }),
      by: 'c',
      sc: ['other=1'],
      want: [set('V', 'c')],
    },
    {
      desc: 'Learn: a hit writes nothing (GETEX already slid the TTL)',
      ctx: learnCtx('V', { kind: 'found', endpointId: 'a' }),
      by: 'a',
      sc: undefined,
      want: [],
    },
    {
      desc: 'Learn: after a fallback the transient choice is not stored',
      ctx: learnCtx('V', { kind: 'unavailable', reason: 'timeout' }),
      by: 'c',
      sc: undefined,
      want: [],
    },
    {
      desc: 'Learn: after a fallback a Set-Cookie is still learned (new information)',
      ctx: learnCtx(undefined, undefined),
      by: 'c',
      sc: 'JSESSIONID=N2',
      want: [set('N2', 'c')],
    },
    {
      desc: 'pins: a new client is stored',
      ctx: pinCtx({ kind: 'absent' }),
      by: 'b',
      sc: undefined,
      want: [set('k', 'b', 'pin', 5_000)],
    },
    {
      desc: 'pins: a hit writes nothing',
      ctx: pinCtx({ kind: 'found', endpointId: 'b' }),
      by: 'b',
      sc: undefined,
      want: [],
    },
    {
      desc: 'pins: Set-Cookie is no business of theirs',
      ctx: pinCtx({ kind: 'found', endpointId: 'b' }),
      by: 'b',
      sc: 'JSESSIONID=X',
      want: [],
    },
  ] as Array<{
    desc: string;
    ctx: PinContext;
    by: string;
    sc: string | string[] | undefined;
    want: unknown[];
  }>)('$desc', ({ ctx, by, sc, want }) => {
    expect(planStoreWrites(ctx, by, sc, T0)).toEqual(want);
  });
});
