/**
 * The real `tether-proxy` (the `bin/tether-proxy.js` users run) as a child
 * process: started on free loopback ports unless told otherwise, known to be
 * up once it logs `"msg":"tether-proxy listening"` (a JSON record on stderr
 * that carries the addresses it bound), stopped with SIGTERM so it shuts
 * down gracefully.
 *
 * Units: every duration is in milliseconds.
 */
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type Child,
  type ChildProcesses,
  DEFAULT_GRACE_MS,
  type ExitStatus,
  parseJsonLine,
  waitForLine,
} from './child-processes.ts';

/** The repository root. */
export const REPO_ROOT = resolve(import.meta.dirname, '..');

/** The proxy's entry script. */
export const PROXY_BIN = join(REPO_ROOT, 'bin', 'tether-proxy.js');

/** The `msg` of the log record the proxy writes once both its listeners are bound. */
export const LISTENING_MSG = 'tether-proxy listening';

/** How long {@link startTetherProxy} waits for the listening record, by default, ms. */
export const DEFAULT_START_TIMEOUT_MS = 15_000;

/** The preload that stops a proxy when our end of its stdin closes. */
const EXIT_WITH_PARENT = pathToFileURL(join(import.meta.dirname, 'exit-with-parent.ts')).href;

/** The addresses a proxy bound, `host:port` each, as its listening record gives them. */
export interface ListeningAddresses {
  /** The data plane. */
  readonly listen: string;
  /** The admin API and `/metrics`. */
  readonly admin: string;
}

/**
 * The addresses in the proxy's listening record, or `undefined` for any
 * other line (another record, a line that is no JSON). Never throws.
 */
export function parseListeningLine(line: string): ListeningAddresses | undefined {
  const rec = parseJsonLine(line);
  if (rec?.msg !== LISTENING_MSG) return undefined;
  return typeof rec.listen === 'string' && typeof rec.admin === 'string'
    ? { listen: rec.listen, admin: rec.admin }
    : undefined;
}

/**
 * The port of a `host:port` address as the proxy logs it (an IPv6 host
 * has no brackets there: the port is what follows the last colon).
 *
 * @throws {Error} when there is no port 0..65535 after the last colon.
 */
export function portOf(hostPort: string): number {
  const text = hostPort.slice(hostPort.lastIndexOf(':') + 1);
  const port = Number(text);
  if (text === '' || !Number.isInteger(port) || port < 0 || port > 65_535)
    throw new Error(`no port in address ${JSON.stringify(hostPort)}`);
  return port;
}

/**
 * The `http://` base URL a client on this machine uses for a logged
 * `host:port`: a wildcard host becomes loopback (`0.0.0.0` → `127.0.0.1`,
 * `::` → `[::1]`), an IPv6 host gets its brackets. No trailing slash.
 *
 * @throws {Error} as {@link portOf}.
 */
export function urlOf(hostPort: string): string {
  const port = portOf(hostPort);
  let host = hostPort.slice(0, hostPort.lastIndexOf(':'));
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::' || host === '[::]') host = '[::1]';
  else if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
  return `http://${host}:${port}`;
}

/** Whether `args` set `flag`, as `--flag value` or `--flag=value`. */
export function hasFlag(args: readonly string[], flag: string): boolean {
  return args.some((a) => a === flag || a.startsWith(`${flag}=`));
}

/** How to start a proxy. Everything but `args` is optional. */
export interface TetherProxyOptions {
  /**
   * The proxy's flags (`--config`, `--cookie-keys-file`, …). `--listen` and
   * `--admin-listen` default to `127.0.0.1:0` (a free loopback port) when
   * absent.
   */
  readonly args: readonly string[];
  /** For messages and {@link ChildProcesses.running}; `tether-proxy` by default. */
  readonly name?: string;
  /** The entry script; {@link PROXY_BIN} by default (another build, to compare). */
  readonly entry?: string;
  /** The Node.js binary; this process's (`process.execPath`) by default. */
  readonly node?: string;
  /** Node.js flags before the entry script (`--cpu-prof`, …). */
  readonly nodeArgs?: readonly string[];
  /**
   * A command the whole `node …` line runs under, with its own arguments,
   * e.g. `['taskset', '-c', '0']` to pin the proxy to core 0. None by default.
   */
  readonly launcher?: readonly string[];
  /**
   * Stop the proxy (SIGTERM, its graceful shutdown) when this process ends,
   * however it ends, SIGKILL included: its stdin becomes a pipe we hold, and
   * `exit-with-parent.ts` is preloaded to watch it. Off by default.
   */
  readonly exitWithParent?: boolean;
  /** Working directory; {@link REPO_ROOT} by default. */
  readonly cwd?: string;
  /** How long to wait for the listening record, ms; {@link DEFAULT_START_TIMEOUT_MS} by default. */
  readonly timeoutMs?: number;
}

/** The command line {@link startTetherProxy} runs for `o`: pure, for checking and for messages. */
export function proxyCommand(o: TetherProxyOptions): { command: string; args: string[] } {
  const flags = [...o.args];
  if (!hasFlag(flags, '--listen')) flags.push('--listen', '127.0.0.1:0');
  if (!hasFlag(flags, '--admin-listen')) flags.push('--admin-listen', '127.0.0.1:0');
  const preload = o.exitWithParent === true ? ['--import', EXIT_WITH_PARENT] : [];
  const line = [
    o.node ?? process.execPath,
    ...(o.nodeArgs ?? []),
    ...preload,
    o.entry ?? PROXY_BIN,
    ...flags,
  ];
  const [command, ...args] = [...(o.launcher ?? []), ...line];
  return { command: command as string, args };
}

/** A running proxy. */
export interface TetherProxy {
  readonly name: string;
  readonly child: Child;
  /** What it bound, as logged. */
  readonly addresses: ListeningAddresses;
  /** The data plane's port. */
  readonly port: number;
  /** The admin API's port. */
  readonly adminPort: number;
  /** `http://host:port` of the data plane, no trailing slash (see {@link urlOf}). */
  readonly url: string;
  /** `http://host:port` of the admin API and `/metrics`. */
  readonly adminUrl: string;
  /**
   * Every line it has written on stderr (JSON log records), oldest first,
   * from its start on; it grows while the proxy runs.
   */
  readonly logs: string[];
  /**
   * Stops it: `signal` (SIGTERM by default, a graceful shutdown), then
   * SIGKILL when it still runs after `graceMs` ({@link DEFAULT_GRACE_MS} by
   * default). Pass a `graceMs` above its `--shutdown-timeout`.
   *
   * @returns how it ended.
   */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<ExitStatus>;
}

/**
 * Starts a proxy through `children` (which stops it with the rest) and waits
 * until it logs that it listens.
 *
 * @throws {Error} when it ends first (`… exited with 2 before it listened`)
 *   or does not listen within `timeoutMs` (then it is stopped, SIGTERM and
 *   SIGKILL a second later, before this rejects); the message carries its
 *   last output lines.
 */
export async function startTetherProxy(
  children: ChildProcesses,
  o: TetherProxyOptions,
): Promise<TetherProxy> {
  const name = o.name ?? 'tether-proxy';
  const { command, args } = proxyCommand(o);
  const child = children.spawn(name, command, args, {
    cwd: o.cwd ?? REPO_ROOT,
    stdin: o.exitWithParent === true ? 'pipe' : 'ignore',
  });
  const logs: string[] = [];
  child.onLine((line, stream) => {
    if (stream === 'stderr') logs.push(line);
  });
  let addresses: ListeningAddresses;
  try {
    addresses = await waitForLine(
      child,
      'it listened',
      o.timeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      (line, stream) => (stream === 'stderr' ? parseListeningLine(line) : undefined),
    );
  } catch (err) {
    await children.stop(child, 1_000);
    throw err;
  }
  return {
    name,
    child,
    addresses,
    port: portOf(addresses.listen),
    adminPort: portOf(addresses.admin),
    url: urlOf(addresses.listen),
    adminUrl: urlOf(addresses.admin),
    logs,
    stop: (graceMs = DEFAULT_GRACE_MS, signal: NodeJS.Signals = 'SIGTERM') =>
      children.stop(child, graceMs, signal),
  };
}
