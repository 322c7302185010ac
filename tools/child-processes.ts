/**
 * Child processes for the demo, the bench and the integration tests: started
 * without a shell, their output read line by line (the last lines kept for
 * error messages), and tracked in a registry that stops every one of them,
 * gracefully or, from a synchronous `exit` hook, at once.
 *
 * Units: every duration is in milliseconds.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';

/** Output lines of a child kept for error messages, by default. */
export const DEFAULT_TAIL_LINES = 40;

/** How long a graceful stop waits after SIGTERM before it sends SIGKILL, by default, ms. */
export const DEFAULT_GRACE_MS = 3_000;

/**
 * After a child's `exit`, how long to wait for its output pipes to close, ms:
 * its last lines may still be in them. A descendant that inherited the pipes
 * could hold them open for good; past this, the child counts as gone anyway.
 */
const PIPE_DRAIN_MS = 1_000;

/** Which pipe a line came from. */
export type OutputStream = 'stdout' | 'stderr';

/** How a child ended. */
export interface ExitStatus {
  /** The exit code; `null` when a signal ended it or it never started. */
  readonly code: number | null;
  /** The signal that ended it, else `null`. */
  readonly signal: NodeJS.Signals | null;
  /** Set when it could not be started at all (command not found, not executable, …). */
  readonly error?: Error;
}

/**
 * How a child ended, in words that follow its name: `exited with 2`,
 * `was killed by SIGKILL`, `could not start (spawn wrk ENOENT)`.
 */
export function describeExit(s: ExitStatus): string {
  if (s.error !== undefined) return `could not start (${s.error.message})`;
  if (s.signal !== null) return `was killed by ${s.signal}`;
  return `exited with ${s.code}`;
}

/**
 * Splits a byte stream into lines: UTF-8 decoded across chunk boundaries,
 * without the `\n` or `\r\n` that ends each line.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  /** The lines `chunk` completes, oldest first; an unterminated rest waits for the next chunk. */
  push(chunk: Buffer | string): string[] {
    this.partial += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const lines = this.partial.split('\n');
    this.partial = lines.pop() ?? '';
    return lines.map(stripCr);
  }

  /** At the end of the stream: the last line when it had no newline (none when it had). */
  end(): string[] {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    return rest === '' ? [] : [stripCr(rest)];
  }
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/**
 * The JSON object on one output line (a JSON log record, a status line), or
 * `undefined` when the line is anything else. Never throws.
 */
export function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** How {@link ChildProcesses.spawn} starts a child. */
export interface SpawnOptions {
  /** Working directory; this process's by default. */
  readonly cwd?: string;
  /** Environment; this process's by default. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * `'ignore'` (the default) or `'pipe'`: a pipe this process never writes
   * to. It closes when this process ends, however it ends (SIGKILL
   * included), so a child that watches its stdin can stop with us (see
   * `exit-with-parent.ts`).
   */
  readonly stdin?: 'ignore' | 'pipe';
  /** How many output lines {@link Child.tail} keeps; {@link DEFAULT_TAIL_LINES} by default. */
  readonly tailLines?: number;
}

/** A started child process. */
export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /**
   * Resolves once it has ended and its output has been read (see
   * {@link PIPE_DRAIN_MS}), or at once when it could not start. Never rejects.
   */
  readonly exited: Promise<ExitStatus>;
  /** Whether it is still running: started, and neither exited nor killed. */
  isRunning(): boolean;
  /** Its last output lines, stdout and stderr interleaved as they came, oldest first (a copy). */
  tail(): string[];
  /**
   * Calls `fn` for each line it writes from now on (both pipes are always
   * read, whether anyone listens or not: a full pipe would block the child).
   *
   * @returns a function that removes `fn` again.
   */
  onLine(fn: (line: string, stream: OutputStream) => void): () => void;
}

/**
 * Every child started through it, until it has exited. `stop`/`stopAll` are
 * the graceful path (SIGTERM, then SIGKILL after a grace period);
 * `killAllNow` is synchronous, for `process.on('exit')`, where nothing
 * asynchronous runs any more. One instance per program run, so that signal
 * handlers and exit hooks find every process to stop.
 */
export class ChildProcesses {
  private readonly live = new Set<Child>();

  /**
   * Starts `command` with `args`, without a shell (arguments are passed as
   * they are), and tracks it until it exits. A child that cannot be started
   * does not throw here: its `exited` resolves with the `error`, which also
   * goes into its tail.
   */
  spawn(name: string, command: string, args: readonly string[], options: SpawnOptions = {}): Child {
    const proc = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    });
    const maxTail = options.tailLines ?? DEFAULT_TAIL_LINES;
    const lines: string[] = [];
    const listeners = new Set<(line: string, stream: OutputStream) => void>();
    const keep = (line: string, stream: OutputStream): void => {
      lines.push(line);
      if (lines.length > maxTail) lines.shift();
      for (const fn of listeners) fn(line, stream);
    };
    for (const stream of ['stdout', 'stderr'] as const) {
      const pipe = proc[stream];
      if (pipe === null) continue;
      const splitter = new LineSplitter();
      pipe.on('data', (chunk: Buffer) => {
        for (const line of splitter.push(chunk)) keep(line, stream);
      });
      pipe.on('end', () => {
        for (const line of splitter.end()) keep(line, stream);
      });
      pipe.on('error', () => {});
    }

    let settle: (s: ExitStatus) => void = () => {};
    const exited = new Promise<ExitStatus>((resolve) => {
      settle = resolve;
    });
    let drainTimer: NodeJS.Timeout | undefined;
    let ended = false;
    const finish = (s: ExitStatus): void => {
      if (ended) return;
      ended = true;
      clearTimeout(drainTimer);
      settle(s);
    };
    proc.once('close', (code, signal) => finish({ code, signal }));
    proc.once('exit', (code, signal) => {
      drainTimer = setTimeout(() => finish({ code, signal }), PIPE_DRAIN_MS);
    });
    proc.on('error', (err) => {
      // Without a pid it never started; a running child's 'error' (a signal not delivered) ends nothing.
      if (proc.pid !== undefined) return keep(`${name}: ${err.message}`, 'stderr');
      keep(`${name}: cannot start ${command}: ${err.message}`, 'stderr');
      finish({ code: null, signal: null, error: err });
    });
    // We never write to a stdin pipe; a child that exits must not turn it into an unhandled error.
    proc.stdin?.on('error', () => {});

    const child: Child = {
      name,
      proc,
      exited,
      isRunning: () => !ended && proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null,
      tail: () => [...lines],
      onLine: (fn) => {
        listeners.add(fn);
        return () => listeners.delete(fn);
      },
    };
    this.live.add(child);
    void exited.then(() => this.live.delete(child));
    return child;
  }

  /**
   * Stops one child: `signal` (SIGTERM by default), then SIGKILL when it is
   * still running after `graceMs`. At once when it has already ended.
   *
   * @returns how it ended.
   */
  async stop(
    child: Child,
    graceMs = DEFAULT_GRACE_MS,
    signal: NodeJS.Signals = 'SIGTERM',
  ): Promise<ExitStatus> {
    if (!child.isRunning()) return child.exited;
    child.proc.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), graceMs);
    });
    const first = await Promise.race([child.exited, late]);
    clearTimeout(timer);
    if (first === 'late' && child.isRunning()) child.proc.kill('SIGKILL');
    return child.exited;
  }

  /** Stops every child still tracked, in parallel (see {@link stop}). */
  async stopAll(graceMs = DEFAULT_GRACE_MS): Promise<void> {
    await Promise.all([...this.live].map((c) => this.stop(c, graceMs)));
  }

  /** `name (pid N)` of each child still running. */
  running(): string[] {
    return [...this.live].filter((c) => c.isRunning()).map((c) => `${c.name} (pid ${c.proc.pid})`);
  }

  /** SIGKILL to every child still running; synchronous, never throws. */
  killAllNow(): void {
    for (const c of this.live) {
      if (!c.isRunning()) continue;
      try {
        c.proc.kill('SIGKILL');
      } catch {
        // Gone between the check and the kill.
      }
    }
  }
}

/**
 * Waits for the first output line of `child` that `match` accepts (returns
 * a value other than `undefined` for), such as a "listening" log line.
 * Only lines written after the call count: call it right after
 * {@link ChildProcesses.spawn}, before anything is awaited.
 *
 * @param what - what the line means, for error messages ("it listened").
 * @returns what `match` returned for that line.
 * @throws {Error} naming the child, how it ended and its last output lines,
 *   when it ends first or `timeoutMs` passes first.
 */
export function waitForLine<T>(
  child: Child,
  what: string,
  timeoutMs: number,
  match: (line: string, stream: OutputStream) => T | undefined,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const off = child.onLine((line, stream) => {
      if (done) return;
      const got = match(line, stream);
      if (got === undefined) return;
      finish();
      resolve(got);
    });
    const finish = (): void => {
      done = true;
      off();
      clearTimeout(timer);
    };
    const fail = (why: string): void => {
      if (done) return;
      finish();
      reject(
        new Error(`${child.name} ${why}; its last output:\n    ${child.tail().join('\n    ') || '(none)'}`),
      );
    };
    const timer = setTimeout(() => fail(`did not report that ${what} within ${timeoutMs} ms`), timeoutMs);
    void child.exited.then((s) => fail(`${describeExit(s)} before ${what}`));
  });
}
