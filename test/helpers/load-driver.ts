/**
 * A closed-loop load driver for fault tests and the faults-under-load
 * measurement: `clients` keep-alive clients (one connection each, a cookie
 * jar each), each sending its next request when the previous one ended,
 * until `total` requests were sent. Bounded in count, and in time by
 * `deadlineMs`.
 */
import { Client } from 'undici';

export interface DriveOptions {
  /** `http://host:port` of the proxy. */
  readonly url: string;
  readonly clients: number;
  readonly total: number;
  /** Stop sending after this long, ms (a bound, not a goal). */
  readonly deadlineMs?: number;
  readonly method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';
  readonly body?: string;
  /** Called after each answer with how many were sent so far. */
  readonly onProgress?: (sent: number) => void;
}

export interface DriveResult {
  readonly sent: number;
  /** Answers with status 200. */
  readonly ok: number;
  /** Answers with any other status, or no answer (a transport error), by status ("error" for none). */
  readonly failures: Record<string, number>;
  /** Endpoints that answered, by `endpoint` of their JSON. */
  readonly byEndpoint: Record<string, number>;
  readonly elapsedMs: number;
}

/** Runs the load; never throws for a failed request (it is counted). */
export async function drive(o: DriveOptions): Promise<DriveResult> {
  const started = Date.now();
  const deadline = started + (o.deadlineMs ?? 120_000);
  let sent = 0;
  let ok = 0;
  const failures: Record<string, number> = {};
  const byEndpoint: Record<string, number> = {};
  const fail = (why: string): void => {
    failures[why] = (failures[why] ?? 0) + 1;
  };
  const worker = async (): Promise<void> => {
    const client = new Client(o.url, { pipelining: 1, keepAliveTimeout: 30_000 });
    let cookie: string | undefined;
    try {
      while (sent < o.total && Date.now() < deadline) {
        sent++;
        try {
          const res = await client.request({
            path: `/r${sent}`,
            method: o.method ?? 'GET',
            headers: cookie === undefined ? {} : { cookie },
            body: o.body,
          });
          const text = await res.body.text();
          const sc = res.headers['set-cookie'];
          const first = Array.isArray(sc) ? sc[0] : sc;
          if (first !== undefined) cookie = first.split(';')[0];
          if (res.statusCode === 200) {
            ok++;
            try {
              const ep = (JSON.parse(text) as { endpoint?: string }).endpoint ?? '?';
              byEndpoint[ep] = (byEndpoint[ep] ?? 0) + 1;
            } catch {
              byEndpoint['?'] = (byEndpoint['?'] ?? 0) + 1;
            }
          } else fail(String(res.statusCode));
        } catch (err) {
          fail(`error ${(err as { code?: string }).code ?? (err as Error).message}`);
        }
        o.onProgress?.(sent);
      }
    } finally {
      await client.close().catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: o.clients }, () => worker()));
  return { sent, ok, failures, byEndpoint, elapsedMs: Date.now() - started };
}
