import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SessionStoreConnection } from './connection.ts';
import {
  checkWaitReply,
  effectiveCommandTimeoutMs,
  pickEnvValues,
  resolveConnection,
  resolveWriteConcern,
  SessionStoreError,
  type WriteConcern,
} from './store-config.ts';

const CONN: SessionStoreConnection = {
  sentinels: [{ host: '127.0.0.1', port: 26379 }],
  masterName: 'default-shop',
  password: 'pw',
  writeMode: 'Sync',
  waitReplicas: 1,
  waitTimeoutMs: 500,
};
const SYNC: WriteConcern = { writeMode: 'Sync', waitReplicas: 2, waitTimeoutMs: 300 };

function configError(fn: () => unknown): SessionStoreError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SessionStoreError);
    expect((err as SessionStoreError).code).toBe('TETHER_SESSION_STORE_CONFIG');
    return err as SessionStoreError;
  }
  throw new Error('did not throw');
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function secretDir(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), 'tether-secret-'));
  dirs.push(d);
  for (const [k, v] of Object.entries(files)) writeFileSync(join(d, k), v);
  return d;
}

describe('resolveConnection', () => {
  it('reads a mounted Secret directory (file values end in a newline)', () => {
    const dir = secretDir({ sentinels: '127.0.0.1:26379\n', masterName: 'default-shop\n', password: 'pw\n' });
    expect(resolveConnection({ secretDir: dir })).toEqual({ ...CONN, writeMode: 'Async' });
  });

  it.each([
    {
      desc: 'no prefix',
      prefix: undefined,
      env: { sentinels: '127.0.0.1:26379', masterName: 'default-shop' },
    },
    {
      desc: 'envFrom prefix',
      prefix: 'SESSION_STORE_',
      env: {
        SESSION_STORE_sentinels: '127.0.0.1:26379',
        SESSION_STORE_masterName: 'default-shop',
        sentinels: '10.0.0.1:1',
      },
    },
  ])('reads the environment: $desc', ({ prefix, env }) => {
    const c = resolveConnection({ env, envPrefix: prefix });
    expect(c.sentinels).toEqual([{ host: '127.0.0.1', port: 26379 }]);
    expect(c.masterName).toBe('default-shop');
  });

  it('takes a parsed connection and checks it again', () => {
    expect(resolveConnection({ connection: CONN })).toEqual(CONN);
    const err = configError(() => resolveConnection({ connection: { ...CONN, masterName: 'a b' } }));
    expect(err.message).toMatch(/^session store connection: masterName:/);
  });

  it.each([
    { desc: 'no source', source: {}, want: /exactly one of secretDir, env, connection \(got none\)/ },
    {
      desc: 'two sources',
      source: { env: {}, connection: CONN },
      want: /exactly one .*\(got env, connection\)/,
    },
    {
      desc: 'env missing keys, named with the prefix',
      source: { env: { P_masterName: 'm' }, envPrefix: 'P_' },
      want: /^session store environment \(prefix P_\): P_sentinels: missing$/,
    },
    {
      desc: 'a bad write mode',
      source: { env: { sentinels: '127.0.0.1:1', masterName: 'm', writeMode: 'sync' } },
      want: /^session store environment: writeMode: /,
    },
    {
      desc: 'a bad sentinel list',
      source: { connection: { sentinels: 'redis:x', masterName: 'm' } },
      want: /sentinels: sentinels: "redis:x" is not host:port/,
    },
  ])('refuses $desc', ({ source, want }) => {
    expect(configError(() => resolveConnection(source)).message).toMatch(want);
  });

  it('names the directory of a Secret that is empty or missing', () => {
    const empty = secretDir({});
    expect(configError(() => resolveConnection({ secretDir: empty })).message).toBe(
      `session store Secret in ${empty}: sentinels: missing; masterName: missing`,
    );
    const gone = join(empty, 'nope');
    // readSessionStoreConnection treats absent files as absent keys, so a missing directory reads as empty.
    expect(configError(() => resolveConnection({ secretDir: gone })).message).toMatch(/sentinels: missing/);
  });
});

describe('pickEnvValues', () => {
  it('picks only the Secret keys under the prefix', () => {
    expect(pickEnvValues({ X_password: 'p', password: 'no', PATH: '/bin' }, 'X_')).toEqual({
      sentinels: undefined,
      masterName: undefined,
      password: 'p',
      writeMode: undefined,
      waitReplicas: undefined,
      waitTimeoutMs: undefined,
    });
  });
});

describe('resolveWriteConcern', () => {
  it('takes the Secret, overridden by options', () => {
    expect(resolveWriteConcern(CONN)).toEqual({ writeMode: 'Sync', waitReplicas: 1, waitTimeoutMs: 500 });
    expect(resolveWriteConcern(CONN, { writeMode: 'Async', waitTimeoutMs: 50 })).toEqual({
      writeMode: 'Async',
      waitReplicas: 1,
      waitTimeoutMs: 50,
    });
  });
  it.each([
    { desc: 'negative replicas', o: { waitReplicas: -1 }, want: /waitReplicas: -1/ },
    { desc: 'fractional timeout', o: { waitTimeoutMs: 0.5 }, want: /waitTimeoutMs: 0.5/ },
    { desc: 'unknown mode', o: { writeMode: 'Quorum' as 'Sync' }, want: /writeMode: Quorum/ },
  ])('refuses $desc', ({ o, want }) => {
    expect(configError(() => resolveWriteConcern(CONN, o)).message).toMatch(want);
  });
});

describe('checkWaitReply', () => {
  it.each([
    { desc: 'enough', reply: 2, acked: 2 },
    { desc: 'more than enough', reply: 3, acked: 3 },
  ])('passes $desc', ({ reply, acked }) => {
    expect(checkWaitReply('set', reply, SYNC)).toBe(acked);
  });
  it.each([
    { desc: 'too few', reply: 1, acked: 1, want: 'set: 1 of 2 replicas acknowledged within 300 ms' },
    { desc: 'none', reply: 0, acked: 0, want: 'set: 0 of 2 replicas acknowledged within 300 ms' },
    { desc: 'not a number', reply: 'OK', acked: 0, want: 'set: WAIT answered OK' },
  ])('fails $desc, naming acked and wanted', ({ reply, acked, want }) => {
    try {
      checkWaitReply('set', reply, SYNC);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(SessionStoreError);
      expect(err).toMatchObject({ code: 'TETHER_SESSION_NOT_REPLICATED', acked, wanted: 2, message: want });
    }
  });
});

describe('effectiveCommandTimeoutMs', () => {
  it('leaves room for a WAIT that blocks its full time, in Sync mode only', () => {
    expect(effectiveCommandTimeoutMs(SYNC, 200)).toBe(1_300);
    expect(effectiveCommandTimeoutMs(SYNC, 5_000)).toBe(5_000);
    expect(effectiveCommandTimeoutMs({ ...SYNC, writeMode: 'Async' }, 200)).toBe(200);
  });
});
