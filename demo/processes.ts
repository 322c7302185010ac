/**
 * The demo's child processes (backends and proxies): started, tracked, and
 * always stopped, so `make demo` leaves nothing running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

/** The repository root: the proxy's bin and the backend script are found from here. */
export const REPO_ROOT = resolve(import.meta.dirname, '..');

/** Lines of a child's output kept for the failure report. */
const TAIL_LINES = 40;

/** One child process and the last lines it wrote (stdout and stderr). */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly tail: string[];
  /** Emits `line` for every output line: one reader per pipe, however many listeners. */
  readonly lines: EventEmitter<{ line: [string] }>;
}

/** Whether a child process is still running (it has neither exited nor been killed to death). */
export function isRunning(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

/** Resolves when a child has exited (at once when it already has). */
export function exited(proc: ChildProcess): Promise<void> {
  if (!isRunning(proc)) return Promise.resolve();
  return new Promise((res) => proc.once('exit', () => res()));
}

/**
 * Every child the demo started. `stopAll` is the graceful path (SIGTERM, then
 * SIGKILL after a grace period); `killAllNow` is synchronous, for
 * `process.on('exit')`, where nothing asynchronous runs any more.
 */
export class Children {
  private readonly all: Child[] = [];

  /**
   * Spawns `node <args>` from the repository root and tracks it. The child's
   * stdin is a pipe the demo never writes to: it closes when the demo exits,
   * however it exits, and the children take that as their cue to stop.
   */
  spawnNode(name: string, args: string[]): Child {
    const proc = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const child: Child = { name, proc, tail: [], lines: new EventEmitter() };
    this.all.push(child);
    const keep = (line: string): void => {
      child.tail.push(line);
      if (child.tail.length > TAIL_LINES) child.tail.shift();
      child.lines.emit('line', line);
    };
    // Always drain both pipes: a full pipe would block the child.
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream !== null) createInterface({ input: stream }).on('line', keep);
    }
    proc.on('error', (err) => keep(`spawn error: ${err.message}`));
    return child;
  }

  /** SIGTERM to every running child; SIGKILL to those still running after `graceMs`. */
  async stopAll(graceMs: number): Promise<void> {
    const running = this.all.filter((c) => isRunning(c.proc));
    for (const c of running) c.proc.kill('SIGTERM');
    const timeout = new Promise<void>((res) => setTimeout(res, graceMs).unref());
    await Promise.race([Promise.all(running.map((c) => exited(c.proc))), timeout]);
    for (const c of running) if (isRunning(c.proc)) c.proc.kill('SIGKILL');
    await Promise.all(running.map((c) => exited(c.proc)));
  }

  /** Names and pids of the children still running. */
  running(): string[] {
    return this.all.filter((c) => isRunning(c.proc)).map((c) => `${c.name} (pid ${c.proc.pid})`);
  }

  /** SIGKILL to every child still running; synchronous. */
  killAllNow(): void {
    for (const c of this.all) {
      if (isRunning(c.proc)) {
        try {
          c.proc.kill('SIGKILL');
        } catch {
          // Already gone between the check and the kill.
        }
      }
    }
  }
}

/** A running demo backend. */
export interface Backend {
  readonly id: string;
  readonly port: number;
  readonly child: Child;
}

/**
 * Starts `demo/backend.ts` and waits for the line that reports its port.
 *
 * @param port - 0 for a free port; a fixed one to restart an endpoint where it was.
 * @throws {Error} when it exits or stays silent for `timeoutMs`.
 */
export async function startBackend(
  children: Children,
  id: string,
  port: number,
  timeoutMs = 10_000,
): Promise<Backend> {
  const child = children.spawnNode(`backend ${id}`, ['demo/backend.ts', '--id', id, '--port', String(port)]);
  const found = await waitForLine(child, timeoutMs, (line) => {
    const msg = parseJson(line);
    return typeof msg?.port === 'number' ? msg.port : undefined;
  });
  return { id, port: found, child };
}

/** A running `tether-proxy`. */
export interface ProxyProcess {
  readonly name: string;
  /** `http://127.0.0.1:<port>`: the data plane. */
  readonly url: string;
  /** `http://127.0.0.1:<port>`: admin API and /metrics. */
  readonly adminUrl: string;
  readonly child: Child;
}

/**
 * Starts `bin/tether-proxy.js` on free loopback ports and waits for its
 * `"tether-proxy listening"` log line (stderr, JSON lines), which carries
 * the ports it bound.
 *
 * @throws {Error} when it exits first or does not come up within `timeoutMs`.
 */
export async function startProxy(
  children: Children,
  name: string,
  configFile: string,
  cookieKeysFile: string,
  timeoutMs = 15_000,
): Promise<ProxyProcess> {
  const child = children.spawnNode(name, [
    // Stops the proxy when the demo goes away, however it goes (see the module).
    '--import',
    './demo/exit-with-parent.ts',
    'bin/tether-proxy.js',
    '--config',
    configFile,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
    '--cookie-keys-file',
    cookieKeysFile,
    // The demo stops its proxies with SIGTERM; nothing is in flight by then.
    '--shutdown-timeout',
    '1s',
  ]);
  const bound = await waitForLine(child, timeoutMs, (line) => {
    const msg = parseJson(line);
    if (msg?.msg !== 'tether-proxy listening') return undefined;
    return typeof msg.listen === 'string' && typeof msg.admin === 'string'
      ? { listen: msg.listen, admin: msg.admin }
      : undefined;
  });
  return { name, url: `http://${bound.listen}`, adminUrl: `http://${bound.admin}`, child };
}

/**
 * Waits for the first output line of a child that `match` accepts.
 *
 * @throws {Error} with the child's last lines when it exits first or `timeoutMs` passes.
 */
function waitForLine<T>(child: Child, timeoutMs: number, match: (line: string) => T | undefined): Promise<T> {
  return new Promise<T>((res, rej) => {
    const onLine = (line: string): void => {
      const got = match(line);
      if (got !== undefined) {
        done();
        res(got);
      }
    };
    const done = (): void => {
      clearTimeout(timer);
      child.lines.off('line', onLine);
      child.proc.off('exit', onExit);
      child.proc.off('error', onError);
    };
    const fail = (why: string): void => {
      done();
      rej(new Error(`${child.name} ${why}; its last output:\n    ${child.tail.join('\n    ') || '(none)'}`));
    };
    const onExit = (code: number | null, signal: string | null): void =>
      fail(`exited (code ${code}, signal ${signal}) before it was up`);
    const onError = (err: Error): void => fail(`could not start: ${err.message}`);
    const timer = setTimeout(() => fail(`was not up within ${timeoutMs} ms`), timeoutMs);
    child.proc.once('exit', onExit);
    child.proc.once('error', onError);
    child.lines.on('line', onLine);
  });
}

function parseJson(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
