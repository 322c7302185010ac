import { createSecretKey } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { testTable } from '../../test/helpers/pools.ts';
import { ProxyMetrics } from './metrics.ts';
import { type FlowExchange, RequestFlow, type RequestView, type Transport } from './request-flow.ts';
import { compileTable } from './routing/compiled-table.ts';
import { type StoreAnswer, type StoreWrite, storeKeyOf } from './routing/learn.ts';
import type { Decision } from './routing/pick-endpoint.ts';
import type { PinStore } from './session-store/pin-store.ts';
import { Upstreams } from './upstreams.ts';

// The flow's transport and store are stand-ins here: the flow only calls them. The real
// store and both engines are exercised in test/integration/session-store-*.test.ts.

const LEARN = { affinity: { type: 'Learn', learn: { cookieName: 'JSESSIONID', timeout: '30m' } } };
let up: Upstreams | undefined;

afterEach(async () => {
  await up?.close();
  up = undefined;
});

/** A store whose lookups resolve when the test says so, recording every call. */
function fakeStore() {
  const lookups: { key: string; resolve: (a: StoreAnswer) => void }[] = [];
  const writes: StoreWrite[][] = [];
  const store = {
    lookup: (_pool: string, key: string) =>
      new Promise<StoreAnswer>((resolve) => {
        lookups.push({ key, resolve });
      }),
    write: (_pool: string, w: readonly StoreWrite[]) => {
      writes.push([...w]);
    },
  };
  return { store: store as unknown as PinStore, lookups, writes };
}

function setUp(spec: Record<string, unknown>, pins: PinStore | undefined) {
  up = new Upstreams(
    { connectTimeoutMs: 1_000, readTimeoutMs: 1_000, connectionsPerEndpoint: 4, keepAliveTimeoutMs: 1_000 },
    new ProxyMetrics(),
  );
  up.adopt(
    compileTable(
      testTable(
        1,
        ['a', 'b', 'c'].map((name, i) => ({ name, port: 10_000 + i })),
        spec,
      ),
      undefined,
      Date.now(),
    ),
  );
  const key = createSecretKey(Buffer.alloc(32, 7));
  const flow = new RequestFlow({ upstreams: up, metrics: new ProxyMetrics(), cookieKeys: () => [key], pins });
  const forwarded: { ex: X; decision: Decision }[] = [];
  const answered: string[] = [];
  let settled = false;
  const t: Transport<X> = {
    forward: (_served, ex, decision) => forwarded.push({ ex, decision }),
    answer: (_ex, _table, _endpoint, err) => answered.push(err.code),
    replayable: () => true,
    clientGone: () => false,
    settled: () => settled,
  };
  return { flow, t, forwarded, answered, settle: () => (settled = true) };
}

type X = FlowExchange;

function exchange(): X {
  return { method: 'GET', retried: false, redispatched: false, pin: undefined };
}

function viewWith(headers: Record<string, string>): RequestView {
  return { remoteAddress: '127.0.0.1', localPort: 8080, header: (n) => headers[n] };
}

const flushed = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('RequestFlow.start and the session store', () => {
  it('a table that keeps no pins in the store is decided synchronously: no lookup, no pin', () => {
    const { store, lookups } = fakeStore();
    const { flow, t, forwarded } = setUp({}, store);
    const ex = exchange();
    flow.start(ex, viewWith({}), t);
    expect(forwarded).toHaveLength(1);
    expect(ex.pin).toBeUndefined();
    expect(lookups).toHaveLength(0);
  });

  it('Learn: the decision waits for the lookup and follows what the store found', async () => {
    const { store, lookups } = fakeStore();
    const { flow, t, forwarded } = setUp(LEARN, store);
    const ex = exchange();
    flow.start(ex, viewWith({ cookie: 'JSESSIONID=S1' }), t);
    expect(forwarded).toHaveLength(0);
    expect(lookups.map((l) => l.key)).toEqual([storeKeyOf('default/shop', 'learn', 'S1')]);
    lookups[0]?.resolve({ kind: 'found', endpointId: 'c' });
    await flushed();
    expect(forwarded).toHaveLength(1);
    expect(forwarded[0]?.decision.endpoint?.id).toBe('c');
    expect(forwarded[0]?.decision.outcome).toBe('hit');
    expect(ex.pin?.answer).toEqual({ kind: 'found', endpointId: 'c' });
  });

  it('Learn without the cookie: no lookup, a pin context for learning the response', () => {
    const { store, lookups } = fakeStore();
    const { flow, t, forwarded } = setUp(LEARN, store);
    const ex = exchange();
    flow.start(ex, viewWith({}), t);
    expect(lookups).toHaveLength(0);
    expect(forwarded).toHaveLength(1);
    expect(ex.pin?.learn?.cookieName).toBe('JSESSIONID');
  });

  it('an exchange settled while its lookup was pending is dropped: nothing sent, nothing answered', async () => {
    const { store, lookups } = fakeStore();
    const { flow, t, forwarded, answered, settle } = setUp(LEARN, store);
    flow.start(exchange(), viewWith({ cookie: 'JSESSIONID=S2' }), t);
    settle();
    lookups[0]?.resolve({ kind: 'absent' });
    await flushed();
    expect(forwarded).toHaveLength(0);
    expect(answered).toHaveLength(0);
  });

  it('storePins files the cookie the endpoint set under the endpoint that answered', async () => {
    const { store, lookups, writes } = fakeStore();
    const { flow, t } = setUp(LEARN, store);
    const ex = exchange();
    flow.start(ex, viewWith({}), t);
    expect(lookups).toHaveLength(0);
    flow.storePins('default/shop', ex.pin!, 'b', ['JSESSIONID=S3; Path=/']);
    expect(writes).toEqual([
      [{ op: 'set', key: storeKeyOf('default/shop', 'learn', 'S3'), endpointId: 'b', ttlMs: 1_800_000 }],
    ]);
  });
});
