import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type TestEndpoint, testTable } from '../../../test/helpers/pools.ts';
import { type CompiledTable, compileTable } from './compiled-table.ts';
import { decodeAffinityCookie, encodeAffinityCookie } from './cookie-codec.ts';
import {
  chooseEndpoint,
  decideByCookie,
  decideByKey,
  type EndpointView,
  redispatch,
} from './pick-endpoint.ts';
import { digest } from './rendezvous.ts';

const keys = [createSecretKey(Buffer.alloc(32, 7))];
const T0 = 1_800_000_000_000; // Unix ms

function table(spec: Record<string, unknown> = {}, endpoints?: TestEndpoint[]): CompiledTable {
  const abc = [
    { name: 'a', port: 1 },
    { name: 'b', port: 2 },
    { name: 'c', port: 3 },
  ];
  return compileTable(testTable(1, endpoints ?? abc, spec), undefined, T0);
}

/** A test double of the proxy's live endpoint state: the module under test is pure. */
function view(down: string[] = [], inflight: Record<string, number> = {}, t = table()): EndpointView {
  return {
    isHealthy: (i) => !down.includes(t.endpoints[i]!.id),
    inflight: (i) => inflight[t.endpoints[i]!.id] ?? 0,
  };
}

let sid = 0;
const fresh = () => Buffer.alloc(12, ++sid % 256).toString('base64url');

function cookieFor(
  t: CompiledTable,
  endpointId: string,
  issuedAtS: number,
  lastSeenS = issuedAtS,
  sessionId = 'AAAAAAAAAAAAAAAA',
): string {
  const endpointTag = t.endpoints.find((e) => e.id === endpointId)!.tag;
  return encodeAffinityCookie(
    { sessionId, endpointTag, issuedAt: issuedAtS, lastSeen: lastSeenS },
    keys,
    t.pool,
  );
}

describe('decideByCookie', () => {
  const t = table({ affinity: { cookie: { absoluteTimeout: '1h', idleTimeout: '10m' } } });
  const now = T0;
  const nowS = now / 1000;

  it('no cookie: a new pin with a cookie naming the chosen endpoint', () => {
    const d = decideByCookie(t, { values: [], keys, nowMs: now, freshSessionId: fresh }, view());
    expect(d.outcome).toBe('new');
    expect(d.reason).toBe('missing');
    expect(d.endpoint).toBeDefined();
    expect(d.setCookie?.endpointTag).toBe(d.endpoint!.tag);
    expect(d.setCookie?.issuedAt).toBe(nowS);
  });

  it('a valid cookie is a hit, with no Set-Cookie while last-seen is fresh', () => {
    const d = decideByCookie(
      t,
      { values: [cookieFor(t, 'b', nowS - 5)], keys, nowMs: now, freshSessionId: fresh },
      view(),
    );
    expect(d).toMatchObject({ outcome: 'hit', reason: 'none', setCookie: undefined });
    expect(d.endpoint?.id).toBe('b');
  });

  it('a hit re-issues the cookie once last-seen is older than a tenth of the idle timeout (sliding)', () => {
    const d = decideByCookie(
      t,
      { values: [cookieFor(t, 'b', nowS - 300, nowS - 61)], keys, nowMs: now, freshSessionId: fresh },
      view(),
    );
    expect(d.outcome).toBe('hit');
    expect(d.setCookie).toMatchObject({ lastSeen: nowS, issuedAt: nowS - 300 });
  });

  it.each([
    { desc: 'past the absolute timeout', issued: nowS - 3600, seen: nowS - 1, reason: 'expired' },
    { desc: 'past the idle timeout', issued: nowS - 1200, seen: nowS - 600, reason: 'expired' },
    { desc: 'issued in the future', issued: nowS + 3600, seen: nowS + 3600, reason: 'expired' },
  ])('$desc → re-pin ($reason) with a fresh session', ({ issued, seen, reason }) => {
    const d = decideByCookie(
      t,
      { values: [cookieFor(t, 'b', issued, seen)], keys, nowMs: now, freshSessionId: fresh },
      view(),
    );
    expect(d.outcome).toBe('repin');
    expect(d.reason).toBe(reason);
    expect(d.setCookie?.issuedAt).toBe(nowS);
    expect(d.setCookie?.sessionId).not.toBe('AAAAAAAAAAAAAAAA');
  });

  it.each([
    { desc: 'garbage', value: 'not-a-cookie' },
    {
      desc: 'forged (other key)',
      value: encodeAffinityCookie(
        { sessionId: 'AAAAAAAAAAAAAAAA', endpointTag: table().endpoints[0]!.tag, issuedAt: 1, lastSeen: 1 },
        [createSecretKey(Buffer.alloc(32, 9))],
        'default/shop',
      ),
    },
    { desc: 'empty', value: '' },
  ])('$desc → re-pin (invalid), never a throw', ({ value }) => {
    const d = decideByCookie(t, { values: [value], keys, nowMs: now, freshSessionId: fresh }, view());
    expect(d).toMatchObject({ outcome: 'repin', reason: 'invalid' });
    expect(d.endpoint).toBeDefined();
  });

  it('the second of two same-name cookies is used when the first is bad', () => {
    const d = decideByCookie(
      t,
      { values: ['junk', cookieFor(t, 'c', nowS)], keys, nowMs: now, freshSessionId: fresh },
      view(),
    );
    expect(d).toMatchObject({ outcome: 'hit' });
    expect(d.endpoint?.id).toBe('c');
  });

  it('pinned endpoint unhealthy → re-pin keeps the session id and issue time, moves the tag', () => {
    const value = cookieFor(t, 'b', nowS - 10, nowS - 10, 'c2Vzc2lvbi1vbmUx');
    const d = decideByCookie(t, { values: [value], keys, nowMs: now, freshSessionId: fresh }, view(['b']));
    expect(d).toMatchObject({ outcome: 'repin', reason: 'unhealthy' });
    expect(d.endpoint?.id).not.toBe('b');
    expect(d.setCookie).toMatchObject({
      sessionId: 'c2Vzc2lvbi1vbmUx',
      issuedAt: nowS - 10,
      endpointTag: d.endpoint!.tag,
    });
    // One answer everywhere: the re-pin is the session id's rendezvous choice.
    expect(d.endpoint?.id).toBe(chooseEndpoint(t, digest('c2Vzc2lvbi1vbmUx'), view(['b']), now)?.id);
  });

  it('pinned endpoint removed from the table → re-pin (removed)', () => {
    const two = table({}, [
      { name: 'a', address: '127.0.0.1', port: 1 },
      { name: 'c', address: '127.0.0.1', port: 3 },
    ]);
    const d = decideByCookie(
      two,
      { values: [cookieFor(table(), 'b', nowS)], keys, nowMs: now, freshSessionId: fresh },
      view([], {}, two),
    );
    expect(d).toMatchObject({ outcome: 'repin', reason: 'removed' });
  });

  it('onEndpointFailure Reject: 503 (no endpoint) instead of a re-pin', () => {
    const r = table({ onEndpointFailure: 'Reject' });
    const d = decideByCookie(
      r,
      { values: [cookieFor(r, 'b', nowS)], keys, nowMs: now, freshSessionId: fresh },
      view(['b'], {}, r),
    );
    expect(d).toMatchObject({ endpoint: undefined, outcome: 'repin', reason: 'unhealthy' });
  });

  it('no healthy endpoint at all → no endpoint (503)', () => {
    const d = decideByCookie(
      t,
      { values: [], keys, nowMs: now, freshSessionId: fresh },
      view(['a', 'b', 'c']),
    );
    expect(d.endpoint).toBeUndefined();
  });
});

describe('draining', () => {
  const endpoints = [
    { name: 'a', address: '127.0.0.1', port: 1, draining: true },
    { name: 'b', address: '127.0.0.1', port: 2 },
    { name: 'c', address: '127.0.0.1', port: 3 },
  ];
  const t = table({ draining: { timeout: '5m' } }, endpoints);
  const nowS = T0 / 1000;

  it('a draining endpoint keeps its pinned clients within the timeout', () => {
    const d = decideByCookie(
      t,
      { values: [cookieFor(t, 'a', nowS)], keys, nowMs: T0 + 60_000, freshSessionId: fresh },
      view([], {}, t),
    );
    expect(d).toMatchObject({ outcome: 'hit' });
    expect(d.endpoint?.id).toBe('a');
  });

  it('past the drain timeout its clients are re-pinned (draining)', () => {
    const d = decideByCookie(
      t,
      { values: [cookieFor(t, 'a', nowS)], keys, nowMs: T0 + 300_000, freshSessionId: fresh },
      view([], {}, t),
    );
    expect(d).toMatchObject({ outcome: 'repin', reason: 'draining' });
    expect(d.endpoint?.id).not.toBe('a');
  });

  it('keepSessions false re-pins at once', () => {
    const k = table({ draining: { keepSessions: false } }, endpoints);
    const d = decideByCookie(
      k,
      { values: [cookieFor(k, 'a', nowS)], keys, nowMs: T0, freshSessionId: fresh },
      view([], {}, k),
    );
    expect(d).toMatchObject({ outcome: 'repin', reason: 'draining' });
  });

  it('a draining endpoint gets no new pins (1000 new sessions)', () => {
    for (let i = 0; i < 1000; i++) {
      const d = decideByCookie(t, { values: [], keys, nowMs: T0, freshSessionId: fresh }, view([], {}, t));
      expect(d.endpoint?.id).not.toBe('a');
    }
  });

  it('the drain start survives a table swap that still lists it draining', () => {
    const later = compileTable(t.source, t, T0 + 120_000);
    expect(later.endpoints[0]!.drainingSinceMs).toBe(T0);
    const fresh2 = compileTable(t.source, undefined, T0 + 120_000);
    expect(fresh2.endpoints[0]!.drainingSinceMs).toBe(T0 + 120_000);
  });
});

describe('decideByKey (ClientIP, Header)', () => {
  const t = table({ affinity: { type: 'ClientIP' } });

  it('the same key always lands on the same endpoint; a hit', () => {
    const first = decideByKey(t, '192.0.2.0/24', undefined, view(), T0, fresh);
    for (let i = 0; i < 50; i++) {
      const d = decideByKey(t, '192.0.2.0/24', undefined, view(), T0, fresh);
      expect(d).toMatchObject({ outcome: 'hit', endpoint: first.endpoint });
    }
  });

  it('its endpoint down → re-pin (unhealthy) to the next choice, the same one every time', () => {
    const first = decideByKey(t, '192.0.2.0/24', undefined, view(), T0, fresh).endpoint!.id;
    const a = decideByKey(t, '192.0.2.0/24', undefined, view([first]), T0, fresh);
    const b = decideByKey(t, '192.0.2.0/24', undefined, view([first]), T0, fresh);
    expect(a).toMatchObject({ outcome: 'repin', reason: 'unhealthy' });
    expect(a.endpoint?.id).not.toBe(first);
    expect(a.endpoint?.id).toBe(b.endpoint?.id);
  });

  it('no key: a new, unsticky pin with the reason', () => {
    expect(decideByKey(t, undefined, 'missing', view(), T0, fresh)).toMatchObject({
      outcome: 'new',
      reason: 'missing',
    });
    expect(decideByKey(t, undefined, 'invalid', view(), T0, fresh)).toMatchObject({
      outcome: 'new',
      reason: 'invalid',
    });
  });
});

describe('bounded load (balanceFactor, HAProxy hash-balance-factor)', () => {
  it('walks past a full endpoint for a new pin; cap = ceil((inflight+1) × factor / N)', () => {
    const t = table({ balanceFactor: 125 });
    const key = digest('some-session');
    const top = chooseEndpoint(t, key, view([], {}, t), T0)!.id;
    // 8 in flight, all on the top choice: cap = ceil(9 × 1.25 / 3) = 4 < 9.
    const loaded = view([], { [top]: 8 }, t);
    const d = chooseEndpoint(t, key, loaded, T0);
    expect(d?.id).not.toBe(top);
    // Under the cap it stays on the top choice: 2 + 3 + 3 in flight, cap 4.
    const even = Object.fromEntries(t.endpoints.map((e) => [e.id, e.id === top ? 2 : 3]));
    expect(chooseEndpoint(t, key, view([], even, t), T0)?.id).toBe(top);
  });

  it('never moves a kept pin, however loaded', () => {
    const t = table({ balanceFactor: 100 });
    const value = cookieFor(t, 'a', T0 / 1000);
    const d = decideByCookie(
      t,
      { values: [value], keys, nowMs: T0, freshSessionId: fresh },
      view([], { a: 1000 }, t),
    );
    expect(d).toMatchObject({ outcome: 'hit' });
    expect(d.endpoint?.id).toBe('a');
  });

  it('without balanceFactor, load is ignored', () => {
    const t = table();
    const key = digest('some-session');
    const top = chooseEndpoint(t, key, view([], {}, t), T0)!.id;
    expect(chooseEndpoint(t, key, view([], { [top]: 1000 }, t), T0)?.id).toBe(top);
  });
});

describe('redispatch', () => {
  it('moves to the next choice, keeps the session, and re-tags the cookie', () => {
    const t = table();
    const d = decideByCookie(t, { values: [], keys, nowMs: T0, freshSessionId: fresh }, view([], {}, t));
    const r = redispatch(t, d, d.endpoint!.id, view([], {}, t), T0);
    expect(r.endpoint?.id).not.toBe(d.endpoint?.id);
    expect(r).toMatchObject({ outcome: 'repin', reason: 'redispatch' });
    expect(r.setCookie?.sessionId).toBe(d.setCookie?.sessionId);
    const encoded = encodeAffinityCookie(r.setCookie!, keys, t.pool);
    expect(decodeAffinityCookie(encoded, keys, t.pool)).toMatchObject({
      ok: true,
      cookie: { endpointTag: r.endpoint!.tag },
    });
  });

  it('in a newer table the failed endpoint is found by id; one the table lacks excludes nothing', () => {
    const t = table();
    const d = decideByCookie(t, { values: [], keys, nowMs: T0, freshSessionId: fresh }, view([], {}, t));
    const r = redispatch(t, d, 'no-such-endpoint', view([], {}, t), T0);
    expect(r.endpoint?.id).toBe(d.endpoint?.id);
  });
});
