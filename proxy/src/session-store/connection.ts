/**
 * How a proxy or an app finds a pool's replicated session store: the one
 * contract between the Secret the operator writes, the proxy's learned pins
 * and the `tether/session-store` library for apps.
 *
 * The Secret (and so its mounted directory, one file per key, or the app's
 * environment through `envFrom`) holds these keys, all strings:
 *
 * | key             | example                                   | meaning |
 * |-----------------|-------------------------------------------|---------|
 * | `sentinels`     | `10.244.1.7:26379,10.244.1.8:26379`       | Sentinel addresses, comma-separated `ip:port` (IPv6 as `[::1]:26379`) |
 * | `masterName`    | `default-shop`                            | the name Sentinel monitors the primary under |
 * | `password`      | 32 random characters                      | AUTH for the store's servers and its Sentinels |
 * | `writeMode`     | `Async` or `Sync`                         | `Sync`: every session write is followed by `WAIT` |
 * | `waitReplicas`  | `1`                                       | replicas `WAIT` needs (`Sync` only) |
 * | `waitTimeoutMs` | `500`                                     | how long `WAIT` may block, ms (`Sync` only) |
 *
 * Addresses are pod IPs, as established Redis operators wire Sentinel; the
 * client asks a Sentinel for the current primary (and learns the other
 * Sentinels from it), so a stale list only needs one live entry.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';

/** The Secret's keys, in the order the table above gives them. */
export const SESSION_STORE_KEYS = [
  'sentinels',
  'masterName',
  'password',
  'writeMode',
  'waitReplicas',
  'waitTimeoutMs',
] as const;
export type SessionStoreKey = (typeof SESSION_STORE_KEYS)[number];

/** One Sentinel address. */
export interface SentinelAddress {
  readonly host: string;
  readonly port: number;
}

const portSchema = z.coerce.number().int().min(1).max(65_535);

/**
 * Parses `ip:port,ip:port` (IPv6 bracketed: `[fd00::7]:26379`).
 *
 * @throws {Error} naming the first entry that is not `host:port`.
 */
export function parseSentinelList(text: string): SentinelAddress[] {
  const out: SentinelAddress[] = [];
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(entry);
    const port = m && portSchema.safeParse(m[3]);
    if (!m || !port?.success) throw new Error(`sentinels: "${entry}" is not host:port`);
    out.push({ host: (m[1] ?? m[2]) as string, port: port.data });
  }
  if (out.length === 0) throw new Error('sentinels: empty list');
  return out;
}

/** Formats addresses back into the Secret's `sentinels` value. */
export function formatSentinelList(list: readonly SentinelAddress[]): string {
  return list.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`)).join(',');
}

/** A parsed connection, every field checked. */
export const sessionStoreConnectionSchema = z.object({
  sentinels: z.string().transform((s, ctx) => {
    try {
      return parseSentinelList(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  }),
  masterName: z
    .string()
    .min(1)
    .max(128)
    .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" or "-"'),
  password: z.string().default(''),
  writeMode: z.enum(['Async', 'Sync']).default('Async'),
  waitReplicas: z.coerce.number().int().min(0).max(10).default(1),
  waitTimeoutMs: z.coerce.number().int().min(1).max(60_000).default(500),
});
export type SessionStoreConnection = z.infer<typeof sessionStoreConnectionSchema>;

/**
 * Parses the Secret's string values (as from `process.env` or the files of
 * a mount); unknown keys are ignored, values are trimmed (a file written by
 * hand often ends in a newline).
 *
 * @throws {z.ZodError} naming each bad or missing key.
 */
export function parseSessionStoreConnection(
  values: Readonly<Record<string, string | undefined>>,
): SessionStoreConnection {
  return sessionStoreConnectionSchema.parse(pickValues(values));
}

/** The Secret's keys that have a value, trimmed. */
function pickValues(values: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const picked: Record<string, string> = {};
  for (const key of SESSION_STORE_KEYS) {
    const v = values[key];
    if (v !== undefined && v.trim() !== '') picked[key] = v.trim();
  }
  return picked;
}

/** One file per key of a mounted Secret; absent files are left out. @throws {Error} unless ENOENT. */
function readValues(dir: string): Record<string, string | undefined> {
  const values: Record<string, string | undefined> = {};
  for (const key of SESSION_STORE_KEYS) {
    try {
      values[key] = readFileSync(join(dir, key), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return values;
}

/**
 * Reads a mounted Secret: one file per key in `dir`; absent optional keys
 * take their defaults.
 *
 * @throws {Error} when `dir` cannot be read, or a {@link z.ZodError} as
 *   {@link parseSessionStoreConnection} does.
 */
export function readSessionStoreConnection(dir: string): SessionStoreConnection {
  return parseSessionStoreConnection(readValues(dir));
}

/**
 * Reads a mounted Secret that the operator may not have filled in yet: it
 * writes `sentinels` empty until the first Sentinel pod has an IP, and a
 * proxy started meanwhile must wait for it rather than fail.
 *
 * @returns undefined while `sentinels` is missing or empty (not published
 *   yet); else the connection, as {@link readSessionStoreConnection}.
 * @throws {Error} as {@link readSessionStoreConnection}, for any other fault.
 */
export function readPublishedSessionStore(dir: string): SessionStoreConnection | undefined {
  const values = readValues(dir);
  if ((values.sentinels ?? '').trim() !== '') return parseSessionStoreConnection(values);
  // Not published yet; the other keys must still be right (a bad masterName is no reason to wait).
  const { sentinels: _, ...rest } = values;
  sessionStoreConnectionSchema.omit({ sentinels: true }).parse(pickValues(rest));
  return undefined;
}

/** Bounds on one client's waiting; ms. */
export interface StoreClientTimeouts {
  /** Connecting to a Sentinel or to the primary. */
  readonly connectTimeoutMs: number;
  /** One command, from send to reply (ioredis `commandTimeout`). */
  readonly commandTimeoutMs: number;
}

/**
 * An ioredis client that finds the primary through Sentinel and follows a
 * failover. Extra options (e.g. `enableOfflineQueue: false` on the request
 * path, so a command fails at once while no primary is known) are passed
 * through.
 */
export function createSessionStoreClient(
  conn: SessionStoreConnection,
  timeouts: StoreClientTimeouts,
  extra: RedisOptions = {},
): Redis {
  return new Redis({
    sentinels: conn.sentinels.map((s) => ({ host: s.host, port: s.port })),
    name: conn.masterName,
    ...(conn.password !== '' ? { password: conn.password, sentinelPassword: conn.password } : {}),
    connectTimeout: timeouts.connectTimeoutMs,
    commandTimeout: timeouts.commandTimeoutMs,
    sentinelCommandTimeout: timeouts.commandTimeoutMs,
    lazyConnect: false,
    ...extra,
  });
}
