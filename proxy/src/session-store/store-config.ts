/**
 * Pure parts of the `tether/session-store` library for apps: where the
 * connection comes from (a mounted Secret, the environment, or given), the
 * write concern (`Async` | `Sync`), and how a `WAIT` reply is judged. No
 * I/O here but reading the mounted directory, which `connection.ts` does.
 */
import { z } from 'zod';
import {
  formatSentinelList,
  parseSessionStoreConnection,
  readSessionStoreConnection,
  SESSION_STORE_KEYS,
  type SessionStoreConnection,
} from './connection.ts';

/** Stable codes of {@link SessionStoreError}. */
export type SessionStoreErrorCode =
  /** `Sync` mode: `WAIT` reported fewer replicas than wanted; see {@link SessionStoreError.acked}. */
  | 'TETHER_SESSION_NOT_REPLICATED'
  /** The connection (Secret, env, options) is missing or malformed; the message names each bad key. */
  | 'TETHER_SESSION_STORE_CONFIG';

/**
 * An error of the session store library, in the style of undici's errors:
 * a stable `code`, the underlying error in `cause`.
 *
 * A `TETHER_SESSION_NOT_REPLICATED` write is *not* undone: the primary has
 * applied it and may still replicate it later (Redis `WAIT` docs: "WAIT
 * does not make Redis a strongly consistent store"). It is reported failed
 * because nothing guarantees it survives a failover.
 */
export class SessionStoreError extends Error {
  readonly code: SessionStoreErrorCode;
  /** Replicas that acknowledged the write (`TETHER_SESSION_NOT_REPLICATED` only). */
  readonly acked: number | undefined;
  /** Replicas the write concern asked for (`TETHER_SESSION_NOT_REPLICATED` only). */
  readonly wanted: number | undefined;

  constructor(
    code: SessionStoreErrorCode,
    message: string,
    options: { cause?: unknown; acked?: number; wanted?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SessionStoreError';
    this.code = code;
    this.acked = options.acked;
    this.wanted = options.wanted;
  }
}

/**
 * How a session write is acknowledged.
 *
 * - `Async`: the primary's `OK` is the acknowledgement; replicas catch up
 *   on their own (Redis' default asynchronous replication). A failover can
 *   lose the writes of the last moments.
 * - `Sync`: every write (set, touch, destroy) is followed, on the same
 *   connection and in the same pipeline, by `WAIT waitReplicas waitTimeoutMs`;
 *   fewer acknowledgements than `waitReplicas` make the write fail with
 *   `TETHER_SESSION_NOT_REPLICATED`. This is Tomcat DeltaManager's
 *   synchronous replication (`channelSendOptions` with ACK: the request
 *   waits until the other members confirm), built on Redis `WAIT`.
 */
export interface WriteConcern {
  readonly writeMode: 'Async' | 'Sync';
  /** Replicas `WAIT` needs (`Sync`); 0 makes `Sync` behave like `Async`. */
  readonly waitReplicas: number;
  /** How long `WAIT` may block, ms (`Sync`). */
  readonly waitTimeoutMs: number;
}

/** Where a store's connection comes from: exactly one of these. */
export interface ConnectionSource {
  /** A mounted Secret: one file per key (see `connection.ts`). */
  readonly secretDir?: string;
  /**
   * Environment variables with the Secret's key names, as `envFrom:
   * secretRef` gives them (pass `process.env`).
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** What `envFrom[].prefix` put in front of every key, e.g. `SESSION_STORE_`; none by default. */
  readonly envPrefix?: string;
  /** A connection given in full (parsed or as the Secret's string values). */
  readonly connection?: SessionStoreConnection | Readonly<Record<string, string | undefined>>;
}

/** One line per issue, `key: message`, with the key as the user wrote it. */
function describeIssues(err: z.ZodError, nameOf: (key: string) => string): string {
  return err.issues
    .map((i) => {
      const key = String(i.path[0] ?? '');
      const message = i.code === 'invalid_type' && i.input === undefined ? 'missing' : i.message;
      return `${key === '' ? '(connection)' : nameOf(key)}: ${message}`;
    })
    .join('; ');
}

/**
 * The Secret's string values as they appear in `env` under `prefix` (the
 * `envFrom[].prefix` of the pod spec): `{ sentinels: env[prefix + 'sentinels'], … }`.
 */
export function pickEnvValues(
  env: Readonly<Record<string, string | undefined>>,
  prefix = '',
): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const key of SESSION_STORE_KEYS) out[key] = env[`${prefix}${key}`];
  return out;
}

function isParsed(c: NonNullable<ConnectionSource['connection']>): c is SessionStoreConnection {
  return Array.isArray((c as SessionStoreConnection).sentinels);
}

/**
 * Resolves a {@link ConnectionSource} into a checked connection.
 *
 * @throws {SessionStoreError} `TETHER_SESSION_STORE_CONFIG` when not exactly
 *   one source is given, the directory cannot be read, or a key is missing
 *   or malformed; the message names the directory or variable and each bad
 *   key (`session store Secret in /etc/tether/session-store: sentinels: missing`).
 */
export function resolveConnection(source: ConnectionSource): SessionStoreConnection {
  const given = (['secretDir', 'env', 'connection'] as const).filter((k) => source[k] !== undefined);
  if (given.length !== 1)
    throw new SessionStoreError(
      'TETHER_SESSION_STORE_CONFIG',
      `session store: give exactly one of secretDir, env, connection (got ${given.length === 0 ? 'none' : given.join(', ')})`,
    );
  const prefix = source.envPrefix ?? '';
  const fromEnv = source.env !== undefined;
  const what =
    source.secretDir !== undefined
      ? `Secret in ${source.secretDir}`
      : fromEnv
        ? prefix === ''
          ? 'environment'
          : `environment (prefix ${prefix})`
        : 'connection';
  try {
    if (source.secretDir !== undefined) return readSessionStoreConnection(source.secretDir);
    if (source.env !== undefined) return parseSessionStoreConnection(pickEnvValues(source.env, prefix));
    const c = source.connection as NonNullable<ConnectionSource['connection']>;
    // A parsed connection is checked again, so a hand-built object gets the same errors as a Secret.
    if (isParsed(c))
      return parseSessionStoreConnection({
        ...c,
        sentinels: formatSentinelList(c.sentinels),
        waitReplicas: String(c.waitReplicas),
        waitTimeoutMs: String(c.waitTimeoutMs),
      });
    return parseSessionStoreConnection(c);
  } catch (err) {
    const detail =
      err instanceof z.ZodError
        ? describeIssues(err, (key) => (fromEnv ? `${prefix}${key}` : key))
        : (err as Error).message;
    throw new SessionStoreError('TETHER_SESSION_STORE_CONFIG', `session store ${what}: ${detail}`, {
      cause: err,
    });
  }
}

/**
 * The write concern: the Secret's values, each overridden by the app's
 * option when given.
 *
 * @throws {SessionStoreError} `TETHER_SESSION_STORE_CONFIG` for an override
 *   out of range (waitReplicas 0..10, waitTimeoutMs 1..60,000).
 */
export function resolveWriteConcern(
  conn: SessionStoreConnection,
  overrides: Partial<WriteConcern> = {},
): WriteConcern {
  const wc: WriteConcern = {
    writeMode: overrides.writeMode ?? conn.writeMode,
    waitReplicas: overrides.waitReplicas ?? conn.waitReplicas,
    waitTimeoutMs: overrides.waitTimeoutMs ?? conn.waitTimeoutMs,
  };
  const bad: string[] = [];
  if (wc.writeMode !== 'Async' && wc.writeMode !== 'Sync') bad.push(`writeMode: ${String(wc.writeMode)}`);
  if (!Number.isInteger(wc.waitReplicas) || wc.waitReplicas < 0 || wc.waitReplicas > 10)
    bad.push(`waitReplicas: ${wc.waitReplicas} (0..10)`);
  if (!Number.isInteger(wc.waitTimeoutMs) || wc.waitTimeoutMs < 1 || wc.waitTimeoutMs > 60_000)
    bad.push(`waitTimeoutMs: ${wc.waitTimeoutMs} (1..60000)`);
  if (bad.length > 0)
    throw new SessionStoreError('TETHER_SESSION_STORE_CONFIG', `session store options: ${bad.join('; ')}`);
  return wc;
}

/**
 * Judges the reply of `WAIT` after a write.
 *
 * @param op - what was written, for the message (`set`, `touch`, `destroy`; no key: a
 *   session id is a bearer token).
 * @param reply - `WAIT`'s reply: the number of replicas that acknowledged
 *   every write of this connection so far.
 * @throws {SessionStoreError} `TETHER_SESSION_NOT_REPLICATED` when fewer
 *   than `wc.waitReplicas` acknowledged within `wc.waitTimeoutMs`, with
 *   `acked` and `wanted` set (`set: 0 of 1 replicas acknowledged within
 *   500 ms`).
 */
export function checkWaitReply(op: string, reply: unknown, wc: WriteConcern): number {
  const acked = typeof reply === 'number' ? reply : Number(reply);
  if (!Number.isInteger(acked) || acked < 0)
    throw new SessionStoreError('TETHER_SESSION_NOT_REPLICATED', `${op}: WAIT answered ${String(reply)}`, {
      acked: 0,
      wanted: wc.waitReplicas,
    });
  if (acked < wc.waitReplicas)
    throw new SessionStoreError(
      'TETHER_SESSION_NOT_REPLICATED',
      `${op}: ${acked} of ${wc.waitReplicas} replicas acknowledged within ${wc.waitTimeoutMs} ms`,
      { acked, wanted: wc.waitReplicas },
    );
  return acked;
}

/**
 * The per-command timeout the store's client uses, ms: the app's choice,
 * but never below `waitTimeoutMs + 1000`, since a `WAIT` that blocks its
 * full time must still get its answer.
 */
export function effectiveCommandTimeoutMs(wc: WriteConcern, wantedMs: number): number {
  return wc.writeMode === 'Sync' ? Math.max(wantedMs, wc.waitTimeoutMs + 1_000) : wantedMs;
}
