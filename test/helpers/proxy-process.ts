/**
 * Runs the real `tether-proxy` as a child process (the same bin users run)
 * and a small HTTP client with a cookie jar, for integration tests.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../..');
export const NODE = join(ROOT, 'node_modules/.bin/node');
export const PROXY_BIN = join(ROOT, 'bin/tether-proxy.js');

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
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

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

/** A pool file's YAML for static endpoints on loopback. */
export function poolYaml(
  endpoints: Array<{ name: string; port: number; draining?: boolean; weight?: number }>,
  spec: Record<string, unknown> = {},
  name = 'shop',
): string {
  return stringify({
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name, namespace: 'default' },
    spec: {
      backend: { endpoints: endpoints.map((e) => ({ address: '127.0.0.1', ...e })) },
      ...spec,
    },
  });
}

/**
 * Starts the proxy and waits until it logs that it listens.
 *
 * @param args - extra flags; `--listen` and `--admin-listen` default to port 0 on 127.0.0.1.
 * @throws {Error} when it exits or does not listen within 15 s, with its stderr.
 */
export async function startProxy(args: string[]): Promise<ProxyProcess> {
  const full = [PROXY_BIN, ...args];
  if (!args.includes('--listen')) full.push('--listen', '127.0.0.1:0');
  if (!args.includes('--admin-listen')) full.push('--admin-listen', '127.0.0.1:0');
  const child = spawn(NODE, full, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const logs: string[] = [];
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let buf = '';
  const listening = new Promise<{ listen: string; admin: string }>((res, rej) => {
    const timer = setTimeout(
      () => rej(new Error(`proxy did not listen in 15 s:\n${logs.join('\n')}`)),
      15_000,
    );
    child.stderr?.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        if (line.includes('"tether-proxy listening"')) {
          clearTimeout(timer);
          res(JSON.parse(line) as { listen: string; admin: string });
        }
        nl = buf.indexOf('\n');
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`proxy exited with ${code} before listening:\n${logs.join('\n')}${buf}`));
    });
  });
  const { listen, admin } = await listening;
  const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
  const adminPort = Number(admin.slice(admin.lastIndexOf(':') + 1));
  return {
    child,
    port,
    adminPort,
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    logs,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** `endpoint` of a test backend's JSON answer, when there is one. */
  endpoint: string | undefined;
}

/**
 * A request from a given local source address (127.0.0.x), for ClientIP
 * tests. node:http, since undici's Agent ignores `connect.localAddress`.
 */
function requestFrom(
  url: string,
  localAddress: string,
  opts: { headers?: Record<string, string>; method?: string; body?: string },
): Promise<{ status: number; headers: Reply['headers']; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, localAddress, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
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
    ({ status, headers, text } = await requestFrom(url, opts.from, opts));
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
    for (const line of sc === undefined ? [] : Array.isArray(sc) ? sc : [sc]) {
      this.setCookies.push(line);
      const [pair] = line.split(';');
      const eq = (pair as string).indexOf('=');
      this.jar.set((pair as string).slice(0, eq).trim(), (pair as string).slice(eq + 1).trim());
    }
    return r;
  }
}

/** Polls `fn` every 50 ms until it returns true, for at most `ms`. */
export async function waitFor(
  fn: () => Promise<boolean> | boolean,
  ms = 5_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** The routing table revision the proxy serves, via its admin API. */
export async function servedRevision(p: ProxyProcess): Promise<number | undefined> {
  const r = await get(`${p.adminUrl}/v1/routing-table`);
  return r.status === 200 ? (JSON.parse(r.text) as { revision: number }).revision : undefined;
}
