/**
 * The loopback store every session-store test builds on: real
 * redis-server and redis-sentinel processes, a Sentinel-aware client that
 * follows a failover.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSessionStoreClient } from '../../proxy/src/session-store/connection.ts';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { type RedisStore, startRedisStore } from '../../tools/redis-store.ts';

const children = new ChildProcesses();
let store: RedisStore;

beforeAll(async () => {
  store = await startRedisStore(children, { replicas: 2, sentinels: 3 });
}, 30_000);
afterAll(async () => {
  await store?.stop();
  await children.stopAll();
});

describe('startRedisStore', () => {
  it('starts a primary with two linked replicas, found through Sentinel, and follows a failover', async () => {
    const client = createSessionStoreClient(store.connection(), {
      connectTimeoutMs: 1_000,
      commandTimeoutMs: 1_000,
    });
    client.on('error', () => {});
    try {
      await client.set('k', 'v1');
      expect(await client.get('k')).toBe('v1');
      const old = await store.primary();
      await store.killServer(old);
      const promoted = await store.waitForFailover(old.port);
      expect(promoted).not.toBe(old.port);
      // ioredis finds the new primary through Sentinel on its own.
      let got: string | null = null;
      for (let i = 0; i < 100 && got === null; i++) {
        got = await client.get('k').catch(() => null);
        if (got === null) await new Promise((r) => setTimeout(r, 100));
      }
      expect(got).toBe('v1');
      await store.restartServer(old);
      await store.waitForReplicas(2);
    } finally {
      client.disconnect();
    }
  }, 60_000);
});
