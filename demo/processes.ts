/**
 * The demo's child processes (backends and proxies), started through
 * `tools/`'s registry, which tracks them so that `make demo` always stops
 * every one of them (see run-demo.ts for the signal and exit hooks).
 */
import { type Child, type ChildProcesses, parseJsonLine, waitForLine } from '../tools/child-processes.ts';
import { REPO_ROOT, startTetherProxy, type TetherProxy } from '../tools/tether-proxy-process.ts';

/** A running demo backend. */
export interface Backend {
  readonly id: string;
  readonly port: number;
  readonly child: Child;
}

/**
 * Starts `demo/backend.ts` and waits for the line that reports its port.
 * Its stdin is a pipe the demo holds: the backend exits when it closes, so
 * it dies with the demo even if the demo is SIGKILLed.
 *
 * @param port - 0 for a free port; a fixed one to restart an endpoint where it was.
 * @throws {Error} when it exits or stays silent for `timeoutMs`.
 */
export async function startBackend(
  children: ChildProcesses,
  id: string,
  port: number,
  timeoutMs = 10_000,
): Promise<Backend> {
  const child = children.spawn(
    `backend ${id}`,
    process.execPath,
    ['demo/backend.ts', '--id', id, '--port', String(port)],
    { cwd: REPO_ROOT, stdin: 'pipe' },
  );
  const found = await waitForLine(child, 'it reported its port', timeoutMs, (line) => {
    const msg = parseJsonLine(line);
    return typeof msg?.port === 'number' ? msg.port : undefined;
  });
  return { id, port: found, child };
}

/**
 * Starts `bin/tether-proxy.js` on free loopback ports with the demo's pool
 * file and cookie keys, and waits until it listens. It stops by itself
 * (gracefully) when the demo goes away, however the demo goes
 * (`exitWithParent`).
 *
 * @throws {Error} when it exits first or does not come up within `timeoutMs`.
 */
export function startProxy(
  children: ChildProcesses,
  name: string,
  configFile: string,
  cookieKeysFile: string,
  timeoutMs = 15_000,
): Promise<TetherProxy> {
  return startTetherProxy(children, {
    name,
    args: [
      '--config',
      configFile,
      '--cookie-keys-file',
      cookieKeysFile,
      // The demo stops its proxies with SIGTERM; nothing is in flight by then.
      '--shutdown-timeout',
      '1s',
    ],
    exitWithParent: true,
    timeoutMs,
  });
}

/**
 * Starts `demo/session-backend.ts` (express-session on the replicated store,
 * connection read from `secretDir`) and waits for its port line, which it
 * prints once the store answered. Same lifetime rules as {@link startBackend}.
 *
 * @param cookieSecret - express-session's `secret`; the same for every endpoint of the pool.
 * @throws {Error} when it exits or stays silent for `timeoutMs`.
 */
export async function startSessionBackend(
  children: ChildProcesses,
  id: string,
  secretDir: string,
  cookieSecret: string,
  timeoutMs = 30_000,
): Promise<Backend> {
  const child = children.spawn(
    `session backend ${id}`,
    process.execPath,
    ['demo/session-backend.ts', '--id', id, '--secret-dir', secretDir],
    { cwd: REPO_ROOT, stdin: 'pipe', env: { ...process.env, SESSION_SECRET: cookieSecret } },
  );
  const found = await waitForLine(child, 'it reported its port', timeoutMs, (line) => {
    const msg = parseJsonLine(line);
    return typeof msg?.port === 'number' ? msg.port : undefined;
  });
  return { id, port: found, child };
}
