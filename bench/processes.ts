/**
 * The benchmark's side of its child processes (nginx, HAProxy, the proxy,
 * wrk), which `tools/child-processes.ts` starts, reads and stops: pinning
 * to a core, waiting for a process to serve, and the CPU time each used.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { type Child, describeExit } from '../tools/child-processes.ts';
import { pollUntil } from '../tools/poll.ts';

/** The niceness the bench's processes run at (BENCH_NICE); undefined: inherited. */
let niceness: number | undefined;

/**
 * Sets the niceness of every process started through {@link pinPrefix} and
 * {@link pinned} from now on (`nice -n <n>`; below 0 needs root). On a shared
 * machine a negative value keeps other people's work from landing in the
 * figures, at their expense.
 */
export function setNiceness(n: number | undefined): void {
  niceness = n;
}

/**
 * The launcher that pins a command to core(s) `cpu` (`taskset -c <cpu>`,
 * put before the command and its arguments; `cpu` may be a list such as
 * `0,1`), or none when `cpu` is undefined; under `nice -n` when
 * {@link setNiceness} set one.
 */
export function pinPrefix(cpu: number | string | undefined): string[] {
  const nice = niceness === undefined ? [] : ['nice', '-n', String(niceness)];
  return cpu === undefined ? nice : [...nice, 'taskset', '-c', String(cpu)];
}

/** `command args` run under {@link pinPrefix}: `[command, args]` for a spawn. */
export function pinned(
  cpu: number | string | undefined,
  command: string,
  args: readonly string[],
): [string, string[]] {
  const [cmd, ...rest] = [...pinPrefix(cpu), command, ...args];
  return [cmd as string, rest];
}

/**
 * Polls `probe` every 100 ms until it returns a value other than
 * `undefined`; a probe that throws counts as a miss (its message goes into
 * the timeout error).
 *
 * @throws {Error} early when `child` ends (with its last output), else after `timeoutMs`.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  child?: Child,
): Promise<T> {
  let lastError = '';
  const value = await pollUntil(
    async () => {
      if (child !== undefined && !child.isRunning()) {
        const how = describeExit(await child.exited);
        throw new Error(`${child.name} ${how} before ${what}:\n  ${child.tail().join('\n  ')}`);
      }
      try {
        return await probe();
      } catch (err) {
        lastError = (err as Error).message;
        return undefined;
      }
    },
    timeoutMs,
    100,
  );
  if (value !== undefined) return value;
  const out = child === undefined ? '' : `\n  ${child.name} said:\n  ${child.tail().join('\n  ')}`;
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError && `: ${lastError}`}${out}`,
  );
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

/** The pids of a process and all its live descendants (`/proc/<pid>/task/<tid>/children`), `pid` first. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number, depth: number): void => {
    out.push(p);
    if (depth > 8) return;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let children = '';
      try {
        children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const c of children.split(' ')) if (c.trim() !== '') visit(Number(c), depth + 1);
    }
  };
  visit(pid, 0);
  return out;
}

/**
 * CPU time of a process and its live descendants (a proxy's `--workers`),
 * in seconds, or `undefined` when the process itself is gone. A worker that
 * exits between two readings takes its time with it: a bench window has none.
 */
export function treeCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  const own = cpuSeconds(pid);
  if (own === undefined) return undefined;
  return processTree(pid)
    .slice(1)
    .reduce((sum, p) => sum + (cpuSeconds(p) ?? 0), own);
}

/**
 * CPU time of this process's children that have exited and been reaped.
 * wrk is such a child: the difference across one wrk run is wrk's CPU time.
 */
export function reapedChildrenCpuSeconds(): number | undefined {
  return statSeconds('self', 13);
}

/** VmRSS of `/proc/<pid>/status`, in bytes, or `undefined` when the process or the line is gone. */
export function rssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}
