/**
 * A replicated session store on loopback for tests, the demo and the bench:
 * Debian's `redis-server` as one primary and `replicas` replicas, and
 * `sentinels` `redis-sentinel` processes monitoring them, every one a real
 * process on a free 127.0.0.1 port under a temporary directory.
 *
 * The shape is the one the operator provisions in a cluster (primary,
 * replicas, Sentinel quorum = majority, one password for servers and
 * Sentinels), so what passes here is what runs there.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { formatSentinelList, type SessionStoreConnection } from '../proxy/src/session-store/connection.ts';
import type { Child, ChildProcesses } from './child-processes.ts';
import { freePort } from './free-port.ts';
import { pollUntil } from './poll.ts';

/** {@link pollUntil} that throws, naming `what`, when time is up. */
async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const got = await pollUntil(probe, timeoutMs, 100);
  if (got === undefined) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  return got;
}

/** Settings of {@link startRedisStore}; every one has a default. */
export interface RedisStoreOptions {
  /** Replicas besides the primary; 2. */
  readonly replicas?: number;
  /** Sentinel processes; 3 (quorum is their majority). */
  readonly sentinels?: number;
  /** AUTH for servers and Sentinels; a fixed test password. `''` for none. */
  readonly password?: string;
  /** Sentinel's master name; `tether-test`. */
  readonly masterName?: string;
  /** Sentinel `down-after-milliseconds`: how long a silent primary takes to be judged down, ms; 1000. */
  readonly downAfterMs?: number;
  /** Sentinel `failover-timeout`, ms; 3000. */
  readonly failoverTimeoutMs?: number;
  /** `min-replicas-to-write` on every server (0: off); 0. */
  readonly minReplicasToWrite?: number;
  /** Written into the connection this store reports; `Async`. */
  readonly writeMode?: 'Async' | 'Sync';
  /** How long starting may take before it throws, ms; 20,000. */
  readonly startTimeoutMs?: number;
}

/** One `redis-server` of the store. */
export interface RedisServer {
  readonly name: string;
  readonly port: number;
  /** The running process; replaced by {@link RedisStore.restartServer}. */
  child: Child;
}

/** A running store; {@link RedisStore.stop} ends every process and removes its directory. */
export interface RedisStore {
  readonly servers: readonly RedisServer[];
  readonly sentinelPorts: readonly number[];
  readonly password: string;
  readonly masterName: string;
  /** What the operator's Secret would hold for this store. */
  connection(): SessionStoreConnection;
  /** The same as the Secret's string values (`sentinels` formatted), for a mounted directory or env. */
  secretValues(): Record<string, string>;
  /** Writes {@link secretValues} as one file per key into a new directory; returns it. */
  writeSecretDir(): string;
  /** The primary's port as the Sentinels report it now (majority answer). */
  primaryPort(): Promise<number>;
  /** The server whose port {@link primaryPort} reports. */
  primary(): Promise<RedisServer>;
  /** SIGKILLs a server (a crashed pod) and waits until it has exited. */
  killServer(server: RedisServer): Promise<void>;
  /** Starts a killed server again on its port, as a replica of the current primary. */
  restartServer(server: RedisServer): Promise<void>;
  /** Waits until the Sentinels report a primary other than `oldPort`; returns its port. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** Waits until the primary has `count` replicas with an up link. */
  waitForReplicas(count: number, timeoutMs?: number): Promise<void>;
  /** A plain client to one server (no Sentinel), for inspection; the caller quits it. */
  clientOf(port: number): Redis;
  stop(): Promise<void>;
}

/** Tries at binding a fresh port before {@link startRedisStore} gives up. */
const BIND_ATTEMPTS = 5;

/**
 * Starts the store and waits until every replica is linked and every
 * Sentinel knows the primary, its replicas and the other Sentinels (so a
 * failover can start at once).
 *
 * @throws {Error} when a process exits early or the store is not ready in
 *   `startTimeoutMs`; the processes started so far are stopped first.
 */
export async function startRedisStore(
  children: ChildProcesses,
  o: RedisStoreOptions = {},
): Promise<RedisStore> {
  const replicas = o.replicas ?? 2;
  const sentinelCount = o.sentinels ?? 3;
  // Random by default: two stores started side by side (parallel test files,
  // helpers on one machine) must never answer each other's clients.
  const password = o.password ?? randomBytes(12).toString('hex');
  const masterName = o.masterName ?? `tether-test-${randomBytes(4).toString('hex')}`;
  const timeoutMs = o.startTimeoutMs ?? 20_000;
  const dir = mkdtempSync(join(tmpdir(), 'tether-redis-'));
  const servers: RedisServer[] = [];
  const sentinels: Child[] = [];
  const sentinelPorts: number[] = [];
  const clients = new Set<Redis>();

  const auth = password === '' ? [] : ['--requirepass', password, '--masterauth', password];
  const startServer = (name: string, port: number, replicaOf: number | undefined): Child =>
    children.spawn(name, 'redis-server', [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--dir',
      dir,
      '--dbfilename',
      `${name}.rdb`,
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      '--min-replicas-to-write',
      String(o.minReplicasToWrite ?? 0),
      '--min-replicas-max-lag',
      '10',
      ...auth,
      ...(replicaOf === undefined ? [] : ['--replicaof', '127.0.0.1', String(replicaOf)]),
    ]);

  const clientOf = (port: number): Redis => {
    const c = new Redis({
      host: '127.0.0.1',
      port,
      ...(password === '' ? {} : { password }),
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 1_000,
      commandTimeout: 2_000,
    });
    c.on('error', () => {});
    clients.add(c);
    c.once('end', () => clients.delete(c));
    return c;
  };
  const ask = async <T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> => {
    const c = clientOf(port);
    try {
      return await fn(c);
    } finally {
      c.disconnect();
    }
  };
  const answersPing = async (port: number): Promise<boolean> =>
    (await ask(port, (c) => c.ping()).catch(() => '')) === 'PONG';
  // freePort() releases the port before the process binds it, so another
  // process may take it first: the process then exits ("Address already in
  // use") and is started again on a new port.
  const listenOnFreePort = async (
    name: string,
    spawnAt: (port: number) => Child,
  ): Promise<{ port: number; child: Child }> => {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawnAt(port);
      const up = await pollUntil(
        async () => (await answersPing(port)) || (!child.isRunning() && 'exited'),
        timeoutMs,
        50,
      );
      if (up === true) return { port, child };
      await children.stop(child, 500);
      if (attempt >= BIND_ATTEMPTS || up === undefined)
        throw new Error(`${name} did not answer PING on port ${port}: ${child.tail().slice(-3).join(' | ')}`);
    }
  };
  const primaryPort = async (): Promise<number> => {
    const votes = new Map<number, number>();
    for (const port of sentinelPorts) {
      try {
        const addr = (await ask(port, (c) => c.call('SENTINEL', 'get-master-addr-by-name', masterName))) as
          | [string, string]
          | null;
        if (addr) votes.set(Number(addr[1]), (votes.get(Number(addr[1])) ?? 0) + 1);
      } catch {
        // A dead or busy Sentinel does not vote.
      }
    }
    const best = [...votes].sort((a, b) => b[1] - a[1])[0];
    if (!best || best[1] <= sentinelPorts.length / 2)
      throw new Error('no majority of Sentinels agrees on a primary');
    return best[0];
  };
  const replicationOf = async (port: number): Promise<string> => ask(port, (c) => c.info('replication'));
  const waitForReplicas = async (count: number, ms = timeoutMs): Promise<void> => {
    await waitFor(
      async () => {
        const p = await primaryPort().catch(() => undefined);
        if (p === undefined) return undefined;
        const info = await replicationOf(p).catch(() => '');
        const up = info.split('\n').filter((l) => /^slave\d+:.*state=online/.test(l)).length;
        return up >= count ? true : undefined;
      },
      ms,
      `${count} replicas online`,
    );
  };

  const stop = async (): Promise<void> => {
    for (const c of clients) c.disconnect();
    await Promise.all([...sentinels, ...servers.map((s) => s.child)].map((c) => children.stop(c, 2_000)));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const first = await listenOnFreePort('redis-0', (port) => startServer('redis-0', port, undefined));
    servers.push({ name: 'redis-0', ...first });
    const primaryPortNow = first.port;
    for (let i = 1; i <= replicas; i++) {
      const name = `redis-${i}`;
      servers.push({
        name,
        ...(await listenOnFreePort(name, (port) => startServer(name, port, primaryPortNow))),
      });
    }
    const quorum = Math.floor(sentinelCount / 2) + 1;
    for (let i = 0; i < sentinelCount; i++) {
      const name = `sentinel-${i}`;
      const conf = join(dir, `${name}.conf`);
      const started = await listenOnFreePort(name, (port) => {
        writeFileSync(
          conf,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            'protected-mode no',
            `dir ${dir}`,
            `sentinel monitor ${masterName} 127.0.0.1 ${primaryPortNow} ${quorum}`,
            `sentinel down-after-milliseconds ${masterName} ${o.downAfterMs ?? 1_000}`,
            `sentinel failover-timeout ${masterName} ${o.failoverTimeoutMs ?? 3_000}`,
            `sentinel parallel-syncs ${masterName} 1`,
            ...(password === ''
              ? []
              : [
                  `sentinel auth-pass ${masterName} ${password}`,
                  `requirepass ${password}`,
                  `sentinel sentinel-pass ${password}`,
                ]),
            '',
          ].join('\n'),
        );
        return children.spawn(name, 'redis-sentinel', [conf]);
      });
      sentinelPorts.push(started.port);
      sentinels.push(started.child);
    }
    await waitForReplicas(replicas);
    await waitFor(
      async () => {
        for (const port of sentinelPorts) {
          const ok = await ask(port, async (c) => {
            const reps = (await c.call('SENTINEL', 'replicas', masterName)) as unknown[];
            const peers = (await c.call('SENTINEL', 'sentinels', masterName)) as unknown[];
            return reps.length >= replicas && peers.length >= sentinelCount - 1;
          }).catch(() => false);
          if (!ok) return undefined;
        }
        return true;
      },
      timeoutMs,
      'every Sentinel knowing the replicas and the other Sentinels',
    );
  } catch (err) {
    const tails = [...servers.map((s) => s.child), ...sentinels]
      .filter((c) => !c.isRunning())
      .map((c) => `${c.name}: ${c.tail().slice(-5).join(' | ')}`);
    await stop();
    throw new Error(
      `redis store did not start: ${(err as Error).message}${tails.length ? `\n${tails.join('\n')}` : ''}`,
      {
        cause: err,
      },
    );
  }

  const connection = (): SessionStoreConnection => ({
    sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
    masterName,
    password,
    writeMode: o.writeMode ?? 'Async',
    waitReplicas: Math.max(1, Math.ceil(replicas / 2)),
    waitTimeoutMs: 500,
  });
  const secretValues = (): Record<string, string> => {
    const c = connection();
    return {
      sentinels: formatSentinelList(c.sentinels),
      masterName: c.masterName,
      password: c.password,
      writeMode: c.writeMode,
      waitReplicas: String(c.waitReplicas),
      waitTimeoutMs: String(c.waitTimeoutMs),
    };
  };

  return {
    servers,
    sentinelPorts,
    password,
    masterName,
    connection,
    secretValues,
    writeSecretDir: () => {
      const secretDir = mkdtempSync(join(dir, 'secret-'));
      for (const [k, v] of Object.entries(secretValues())) writeFileSync(join(secretDir, k), v);
      return secretDir;
    },
    primaryPort,
    primary: async () => {
      const port = await primaryPort();
      const s = servers.find((x) => x.port === port);
      if (!s) throw new Error(`Sentinels report primary port ${port}, which is none of this store's servers`);
      return s;
    },
    killServer: async (server) => {
      await children.stop(server.child, 0, 'SIGKILL');
    },
    restartServer: async (server) => {
      const p = await primaryPort();
      server.child = startServer(server.name, server.port, p === server.port ? undefined : p);
      await waitFor(
        async () => ((await ask(server.port, (c) => c.ping()).catch(() => '')) === 'PONG' ? true : undefined),
        timeoutMs,
        `${server.name} answering PING again`,
      );
    },
    waitForFailover: async (oldPort, ms = 30_000) =>
      waitFor(
        async () => {
          const p = await primaryPort().catch(() => undefined);
          if (p === undefined || p === oldPort) return undefined;
          const role = await ask(p, (c) => c.info('replication')).catch(() => '');
          return role.includes('role:master') ? p : undefined;
        },
        ms,
        `a primary other than port ${oldPort}`,
      ),
    waitForReplicas,
    clientOf,
    stop,
  };
}
