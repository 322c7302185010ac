/**
 * Child processes of the benchmark (nginx, HAProxy, the proxy, wrk): started
 * without a shell, their output kept for error messages, and every one of
 * them stopped again however the run ends.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';

/** How many output lines of a child are kept for error messages. */
const TAIL_LINES = 40;

/** A started child process. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Resolves once it has exited, with its exit code or the signal that ended it. */
  readonly exited: Promise<string>;
  /** Whether it has exited (or never started). */
  hasExited(): boolean;
  /** The last lines it wrote on stdout and stderr, oldest first. */
  tail(): string[];
  /** Calls `fn` for each complete line it writes from now on. */
  onLine(fn: (line: string, stream: 'stdout' | 'stderr') => void): void;
}

/**
 * The set of children still running. One instance per run, so that signal
 * handlers and the exit hook can find every process to stop.
 */
export class ChildSet {
  private readonly live = new Set<Child>();

  /**
   * Starts `command` with `args` (no shell: arguments are passed as they are).
   * Both output streams are always drained, so a chatty child never blocks
   * on a full pipe while it is being measured.
   */
  start(name: string, command: string, args: readonly string[], cwd?: string): Child {
    const proc = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    const listeners: Array<(line: string, stream: 'stdout' | 'stderr') => void> = [];
    let done = false;
    const exited = new Promise<string>((resolve) => {
      proc.once('error', (err) => {
        done = true;
        lines.push(`${name}: cannot start ${command}: ${err.message}`);
        resolve(`error: ${err.message}`);
      });
      proc.once('exit', (code, signal) => {
        done = true;
        resolve(signal ?? `exit code ${code}`);
      });
    });
    const split = (stream: 'stdout' | 'stderr') => {
      let partial = '';
      return (chunk: Buffer): void => {
        partial += chunk.toString('utf8');
        let nl = partial.indexOf('\n');
        while (nl >= 0) {
          const line = partial.slice(0, nl);
          partial = partial.slice(nl + 1);
          lines.push(line);
          if (lines.length > TAIL_LINES) lines.shift();
          for (const fn of listeners) fn(line, stream);
          nl = partial.indexOf('\n');
        }
      };
    };
    proc.stdout?.on('data', split('stdout'));
    proc.stderr?.on('data', split('stderr'));
    const child: Child = {
      name,
      proc,
      exited,
      hasExited: () => done,
      tail: () => [...lines],
      onLine: (fn) => listeners.push(fn),
    };
    this.live.add(child);
    void exited.then(() => this.live.delete(child));
    return child;
  }

  /** Stops one child: SIGTERM, then SIGKILL if it is still there after `graceMs`. */
  async stop(child: Child, graceMs = 3_000): Promise<void> {
    if (child.hasExited()) return;
    child.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    if ((await Promise.race([child.exited, late])) === 'late') child.proc.kill('SIGKILL');
    clearTimeout(timer);
    await child.exited;
  }

  /** Stops every child still running, in parallel. */
  async stopAll(graceMs = 3_000): Promise<void> {
    await Promise.all([...this.live].map((c) => this.stop(c, graceMs)));
  }

  /** Last resort from a synchronous `exit` hook: SIGKILL whatever is left. */
  killAllNow(): void {
    for (const c of this.live) if (!c.hasExited()) c.proc.kill('SIGKILL');
  }
}

/** The answer of {@link httpGet}. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One GET on a fresh connection (no agent): the checks must not leave idle
 * keep-alive connections to a target that is about to be measured.
 */
export function httpGet(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 2_000,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Polls `probe` until it returns a value other than `undefined`. Fails early
 * when `child` exits (its output goes into the error), else after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  child?: Child,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    if (child?.hasExited()) {
      throw new Error(
        `${child.name} exited (${await child.exited}) before ${what}:\n  ${child.tail().join('\n  ')}`,
      );
    }
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = (err as Error).message;
    }
    if (Date.now() > deadline) {
      const out = child === undefined ? '' : `\n  ${child.name} said:\n  ${child.tail().join('\n  ')}`;
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError && `: ${lastError}`}${out}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A loopback port free right now: the kernel picks it for a throw-away
 * listener. Another process could take it before we do; on a bench machine
 * that race is not worth more than a clear start-up error.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether `command` can be run (looked up on PATH by a trial run of `args`). */
export function haveCommand(command: string, args: readonly string[]): boolean {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return r.error === undefined;
}

/** The first line a command prints on stdout or stderr (version banners go to either). */
export function firstLineOf(command: string, args: readonly string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

/** Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 nearly everywhere). */
export const TICKS_PER_S =
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** utime + stime (or, from `field` 13, cutime + cstime) of `/proc/<pid>/stat`, in seconds. */
function statSeconds(pid: number | 'self', field: 11 | 13): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const sum = Number(fields[field]) + Number(fields[field + 1]);
    return Number.isFinite(sum) ? sum / TICKS_PER_S : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time a process has used so far, in seconds (user + system), or
 * `undefined` where there is no `/proc`. Read before and after a run to tell
 * whether a process was the one saturating its core.
 */
export function cpuSeconds(pid: number | undefined): number | undefined {
  return pid === undefined ? undefined : statSeconds(pid, 11);
}

/**
 * CPU time of this process's children that have exited and been reaped.
 * wrk is such a child: the difference across one wrk run is wrk's CPU time.
 */
export function reapedChildrenCpuSeconds(): number | undefined {
  return statSeconds('self', 13);
}
