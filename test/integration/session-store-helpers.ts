/**
 * Shared by the session-store integration tests: a backend that behaves
 * like a Java app's session (it sets `JSESSIONID` on a login), the
 * stateless hash choice a proxy falls back to, and metric reading.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { compileTable } from '../../proxy/src/routing/compiled-table.ts';
import { digest, pickTop } from '../../proxy/src/routing/rendezvous.ts';
import type { BackendBehaviour } from '../helpers/backends.ts';
import { type TestEndpoint, testTable } from '../helpers/pools.ts';
import { get, type ProxyProcess } from '../helpers/proxy-process.ts';

/**
 * `/login?sid=S` sets `JSESSIONID=S` (as a servlet container does when it
 * creates a session); `/logout` deletes it; anything else is answered as usual.
 */
export const sessionApp: BackendBehaviour = (req: IncomingMessage, res: ServerResponse) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/login') {
    res.setHeader('set-cookie', `JSESSIONID=${url.searchParams.get('sid')}; Path=/; HttpOnly`);
  } else if (url.pathname === '/logout') {
    res.setHeader('set-cookie', 'JSESSIONID=; Path=/; Max-Age=0');
  }
  return false;
};

/** The endpoint the stateless consistent hash gives `key` over `endpoints` (all healthy): the fallback's choice. */
export function hashChoice(endpoints: readonly TestEndpoint[], key: string): string {
  const t = compileTable(testTable(1, endpoints), undefined, Date.now());
  return (t.endpoints[pickTop(digest(key), t.endpoints, () => true)] as { id: string }).id;
}

/** The value of one series of the proxy's /metrics (0 when absent). */
export async function metricValue(
  p: ProxyProcess,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = (await get(`${p.adminUrl}/metrics`)).text;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

let sidCounter = 0;
/** A fresh session id, unique in this test process. */
export function newSid(): string {
  sidCounter++;
  return `S${process.pid}x${sidCounter}x${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Logs a new session in through `p` until one lands on an endpoint other
 * than its cookie's hash choice (about 2 in 3 do with 3 endpoints), so that
 * following it proves the store, not the hash.
 *
 * @returns the session id and the endpoint it was learned on.
 */
export async function loginOffHash(
  p: ProxyProcess,
  endpoints: readonly TestEndpoint[],
): Promise<{ sid: string; endpoint: string }> {
  for (let i = 0; i < 30; i++) {
    const sid = newSid();
    const r = await get(`${p.url}/login?sid=${sid}`);
    if (r.status !== 200) throw new Error(`login answered ${r.status}: ${r.text}`);
    const endpoint = r.endpoint as string;
    if (endpoint !== hashChoice(endpoints, sid)) return { sid, endpoint };
  }
  throw new Error('30 logins all landed on their hash choice');
}

/** A GET with the session cookie. */
export async function withSession(p: ProxyProcess, sid: string, path = '/'): Promise<string | undefined> {
  const r = await get(`${p.url}${path}`, { headers: { cookie: `JSESSIONID=${sid}` } });
  if (r.status !== 200) throw new Error(`${path} answered ${r.status}: ${r.text}`);
  return r.endpoint;
}
