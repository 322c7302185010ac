/**
 * Runs the real `tether-proxy` as a child process (the same bin users run)
 * and a small HTTP client with a cookie jar, for integration tests. The
 * process plumbing is `tools/`'s, shared with the demo and the bench.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import { ChildProcesses } from '../../tools/child-processes.ts';
import { httpGet, setCookiePairs } from '../../tools/http-get.ts';
import { pollUntil } from '../../tools/poll.ts';
import { PROXY_BIN, REPO_ROOT, startTetherProxy } from '../../tools/tether-proxy-process.ts';
import { poolManifest, type TestEndpoint } from './pools.ts';

export { PROXY_BIN };
export const NODE = join(REPO_ROOT, 'node_modules/.bin/node');

/** How long {@link ProxyProcess.stop} waits after its signal before SIGKILL, ms. */
const STOP_GRACE_MS = 10_000;

export interface ProxyProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly adminPort: number;
  readonly url: string;
  readonly adminUrl: string;
  /** Every stderr line so far (JSON logs). */
  readonly logs: string[];
  /** Resolves with the exit code once the process ended. */
  readonly exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

// A test runner that dies mid-test skips afterAll: kill our proxies on the way out anyway.
const children = new ChildProcesses();
process.once('exit', () => children.killAllNow());

/** A scratch directory, removed by {@link Scratch.cleanup}. */
export interface Scratch {
  readonly dir: string;
  write(name: string, content: string): string;
  cleanup(): void;
}

export function scratch(): Scratch {
  const dir = mkdtempSync(join(tmpdir(), 'tether-test-'));
  return {
    dir,
    write: (name, content) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A base64 cookie key line of 32 random bytes. */
export function newCookieKey(): string {
  return randomBytes(32).toString('base64');
}

/** A pool file's YAML for static endpoints on loopback (see {@link poolManifest}). */
export function poolYaml(
  endpoints: readonly TestEndpoint[],
  spec: Record<string, unknown> = {},
  name = 'shop',
): string {
  return stringify(poolManifest(endpoints, spec, name));
}

/**
 * Starts the proxy and waits until it logs that it listens.
 *
 * @param args - extra flags; `--listen` and `--admin-listen` default to port 0 on 127.0.0.1.
 * @throws {Error} when it exits (`exited with <code>`) or does not listen within 15 s, with its last stderr lines.
 */
export async function startProxy(args: string[]): Promise<ProxyProcess> {
  // exitWithParent: a vitest worker killed mid-test skips afterAll and exit hooks alike.
  const p = await startTetherProxy(children, { args, node: NODE, timeoutMs: 15_000, exitWithParent: true });
  return {
    child: p.child.proc,
    port: p.port,
    adminPort: p.adminPort,
    url: p.url,
    adminUrl: p.adminUrl,
    logs: p.logs,
    exited: p.child.exited.then((s) => s.code),
    stop: async (signal = 'SIGTERM') => (await p.stop(STOP_GRACE_MS, signal)).code,
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** `endpoint` of a test backend's JSON answer, when there is one. */
  endpoint: string | undefined;
}

/** One request; never throws on an HTTP status. */
export async function get(
  url: string,
  opts: { headers?: Record<string, string>; method?: string; body?: string; from?: string } = {},
): Promise<Reply> {
  let status: number;
  let headers: Reply['headers'];
  let text: string;
  if (opts.from === undefined) {
    const res = await request(url, {
      method: (opts.method ?? 'GET') as 'GET',
      headers: opts.headers,
      body: opts.body,
    });
    status = res.statusCode;
    headers = res.headers;
    text = await res.body.text();
  } else {
    // node:http, since undici's Agent ignores `connect.localAddress`.
    const res = await httpGet(url, { ...opts, localAddress: opts.from, timeoutMs: 10_000 });
    ({ status, headers, body: text } = res);
  }
  let endpoint: string | undefined;
  try {
    endpoint = (JSON.parse(text) as { endpoint?: string }).endpoint;
  } catch {
    endpoint = undefined;
  }
  return { status, headers, text, endpoint };
}

/** A client with a cookie jar (name → value), like a browser for one site. */
export class Client {
  readonly jar = new Map<string, string>();
  readonly setCookies: string[] = [];

  /** Sends a request with the jar's cookies and stores any Set-Cookie. */
  async get(url: string, headers: Record<string, string> = {}): Promise<Reply> {
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await get(url, { headers: cookie === '' ? headers : { ...headers, cookie } });
    const sc = r.headers['set-cookie'];
    this.setCookies.push(...(sc === undefined ? [] : Array.isArray(sc) ? sc : [sc]));
    for (const [name, value] of setCookiePairs(sc)) this.jar.set(name, value);
    return r;
  }
}

/** Polls `fn` every 50 ms until it returns true, for at most `ms`. */
export async function waitFor(
  fn: () => Promise<boolean> | boolean,
  ms = 5_000,
  what = 'condition',
): Promise<void> {
  if ((await pollUntil(fn, ms, 50)) === undefined)
    throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** The routing table revision the proxy serves, via its admin API. */
export async function servedRevision(p: ProxyProcess): Promise<number | undefined> {
  const r = await get(`${p.adminUrl}/v1/routing-table`);
  return r.status === 200 ? (JSON.parse(r.text) as { revision: number }).revision : undefined;
}
