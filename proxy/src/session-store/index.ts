/**
 * `tether/session-store`: the public entry of the session store library for
 * Node apps behind Tether, and the connection contract it shares with the
 * operator and the proxy.
 *
 * ```ts
 * import session from 'express-session';
 * import { createSessionStore } from 'tether/session-store';
 *
 * const store = createSessionStore({ secretDir: '/etc/tether/session-store' });
 * app.use(session({ store, secret: process.env.SESSION_SECRET, resave: false, saveUninitialized: false }));
 * ```
 *
 * See {@link createSessionStore} for the options and `README.md`, "Session
 * store for Node apps", for what `Sync` and `Async` guarantee.
 */
export {
  formatSentinelList,
  parseSentinelList,
  parseSessionStoreConnection,
  readSessionStoreConnection,
  SESSION_STORE_KEYS,
  type SentinelAddress,
  type SessionStoreConnection,
  type SessionStoreKey,
} from './connection.ts';
export {
  createSessionStore,
  type SessionStoreOptions,
  type SessionStoreStats,
  TetherSessionStore,
} from './express-store.ts';
export {
  type ConnectionSource,
  checkWaitReply,
  pickEnvValues,
  resolveConnection,
  resolveWriteConcern,
  SessionStoreError,
  type SessionStoreErrorCode,
  type WriteConcern,
} from './store-config.ts';
