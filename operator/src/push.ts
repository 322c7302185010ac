/**
 * Pushes a pool's routing table to every proxy of the pool — managed proxy
 * pods and users' pods with the proxy sidecar, both labelled
 * `tether.dev/pool: <pool>` — with `PUT /v1/routing-table` and the pool's
 * bearer token, and reports which hold the revision. A proxy already known
 * to hold this exact table (same pod uid and container restarts, revision
 * and content) is not asked again, so an idle reconcile sends nothing.
 */
import { Agent, request } from 'undici';
import type { RoutingTable } from './api/index.ts';
import { ADMIN_PORT_NAME, DEFAULT_ADMIN_PORT } from './build/desired-objects.ts';
import type { Pod } from './kube/types.ts';
import type { OperatorMetrics } from './metrics.ts';

/** One proxy's admin API. */
export interface ProxyTarget {
  pod: string;
  address: string;
  port: number;
  /** Changes when the proxy process may have lost its table: pod uid + container restarts. */
  incarnation: string;
}

/**
 * The proxies to push to: pods with an IP, `Running`, not being deleted. Not
 * only Ready pods: a managed proxy is Ready only once it holds a table.
 * The admin port is the container port named `tether-admin`, else 9901.
 */
export function proxyTargetsOf(pods: readonly Pod[]): ProxyTarget[] {
  const out: ProxyTarget[] = [];
  for (const p of pods) {
    const ip = p.status?.podIP;
    if (!ip || p.status?.phase !== 'Running' || p.metadata.deletionTimestamp) continue;
    let port = DEFAULT_ADMIN_PORT;
    for (const c of p.spec?.containers ?? []) {
      const named = c.ports?.find((x) => x.name === ADMIN_PORT_NAME);
      if (named) port = named.containerPort;
    }
    const restarts = (p.status?.containerStatuses ?? []).reduce((n, c) => n + (c.restartCount ?? 0), 0);
    out.push({
      pod: p.metadata.name,
      address: ip,
      port,
      incarnation: `${p.metadata.uid ?? p.metadata.name}/${restarts}`,
    });
  }
  return out.sort((a, b) => (a.pod < b.pod ? -1 : 1));
}

export interface PushResult {
  /** Proxies that hold the revision. */
  inSync: number;
  /** One line per proxy that failed. */
  errors: string[];
  /** Highest revision a proxy said it holds when refusing ours (409): the next revision must exceed it. */
  higherRevision: number | undefined;
  /** A proxy refused the token (401): the Secret may have been replaced. */
  unauthorized: boolean;
}

export class Pusher {
  private readonly agent: Agent;
  private readonly held = new Map<string, string>();
  private readonly metrics: OperatorMetrics;
  private readonly timeoutMs: number;

  /** @param timeoutMs - per PUT (connect + answer), ms. */
  constructor(metrics: OperatorMetrics, timeoutMs = 5_000) {
    this.metrics = metrics;
    this.timeoutMs = timeoutMs;
    this.agent = new Agent({ keepAliveTimeout: 30_000, connections: 4, connectTimeout: timeoutMs });
  }

  /**
   * PUTs `table` to every target (in parallel) that is not known to hold it.
   * @param hash - the table content's hash (with the revision, what "holds it" means).
   */
  async push(
    table: RoutingTable,
    hash: string,
    targets: readonly ProxyTarget[],
    token: string,
    signal?: AbortSignal,
  ): Promise<PushResult> {
    const want = `${table.pool}@${table.revision}#${hash}`;
    const result: PushResult = { inSync: 0, errors: [], higherRevision: undefined, unauthorized: false };
    const body = JSON.stringify(table);
    await Promise.all(
      targets.map(async (t) => {
        if (this.held.get(t.incarnation) === want) {
          result.inSync++;
          return;
        }
        const outcome = await this.putOne(t, body, token, signal);
        this.metrics.pushes.inc({ result: outcome.result });
        if (outcome.result === 'ok') {
          this.held.set(t.incarnation, want);
          result.inSync++;
          return;
        }
        this.held.delete(t.incarnation);
        if (outcome.result === 'stale' && outcome.revision !== undefined) {
          result.higherRevision = Math.max(result.higherRevision ?? 0, outcome.revision);
        }
        if (outcome.result === 'unauthorized') result.unauthorized = true;
        result.errors.push(`${t.pod}: ${outcome.message}`);
      }),
    );
    return result;
  }

  /** Forgets proxies that are gone (bounded memory). */
  retain(incarnations: ReadonlySet<string>): void {
    for (const k of this.held.keys()) if (!incarnations.has(k)) this.held.delete(k);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async putOne(
    t: ProxyTarget,
    body: string,
    token: string,
    signal?: AbortSignal,
  ): Promise<{
    result: 'ok' | 'stale' | 'unauthorized' | 'rejected' | 'error';
    message: string;
    revision?: number;
  }> {
    const host = t.address.includes(':') ? `[${t.address}]` : t.address;
    try {
      const res = await request(`http://${host}:${t.port}/v1/routing-table`, {
        method: 'PUT',
        dispatcher: this.agent,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.any([AbortSignal.timeout(this.timeoutMs), ...(signal ? [signal] : [])]),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      const text = await res.body.text();
      if (res.statusCode === 200) return { result: 'ok', message: 'ok' };
      let parsed: { error?: string; revision?: number; details?: string } = {};
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the status
      }
      const message = `${res.statusCode} ${parsed.error ?? text.slice(0, 200)}${parsed.details ? `: ${parsed.details}` : ''}`;
      // 409 for another pool is a wiring mistake (two pools on one proxy), not a revision to outbid.
      if (res.statusCode === 409 && !/serves pool/.test(parsed.error ?? '')) {
        return {
          result: 'stale',
          message,
          ...(typeof parsed.revision === 'number' ? { revision: parsed.revision } : {}),
        };
      }
      if (res.statusCode === 401 || res.statusCode === 403) return { result: 'unauthorized', message };
      return { result: res.statusCode >= 500 ? 'error' : 'rejected', message };
    } catch (err) {
      return { result: 'error', message: (err as Error).message };
    }
  }
}
