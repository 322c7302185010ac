// The module `tether/session-store` resolves to (package.json "exports"):
// the compiled build when present (`make build`), else the TypeScript
// sources, which Node 24 runs directly; the same choice bin/tether-proxy.js
// makes. An export added to index.ts must be added here too (entry.test.ts
// checks that both lists match).
import { existsSync } from 'node:fs';

const built = new URL('../../../dist/proxy/src/session-store/index.js', import.meta.url);
const entry = existsSync(built) ? built : new URL('./index.ts', import.meta.url);
const m = await import(entry.href);

/** Which file was loaded: the build or the sources. */
export const loadedFrom = entry.href;
export const {
  checkWaitReply,
  createSessionStore,
  formatSentinelList,
  parseSentinelList,
  parseSessionStoreConnection,
  pickEnvValues,
  readSessionStoreConnection,
  resolveConnection,
  resolveWriteConcern,
  SESSION_STORE_KEYS,
  SessionStoreError,
  TetherSessionStore,
} = m;
