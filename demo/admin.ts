/**
 * What the demo reads from a proxy's admin API: readiness, the routing
 * table's revision, and Prometheus series from `/metrics`.
 */
import type { TetherProxy } from '../tools/tether-proxy-process.ts';
import { getText } from './http-client.ts';

/** What the demo needs of a proxy here: where its admin API is. */
type ProxyProcess = Pick<TetherProxy, 'adminUrl'>;

/** Whether `GET /readyz` answers 200 (a routing table is loaded). */
export async function isReady(p: ProxyProcess): Promise<boolean> {
  return (await getText(`${p.adminUrl}/readyz`)).status === 200;
}

/** The revision of the routing table the proxy serves (`GET /v1/routing-table`), or 0 when none. */
export async function tableRevision(p: ProxyProcess): Promise<number> {
  const res = await getText(`${p.adminUrl}/v1/routing-table`);
  if (res.status !== 200) return 0;
  try {
    const revision = (JSON.parse(res.body) as { revision?: unknown }).revision;
    return typeof revision === 'number' ? revision : 0;
  } catch {
    return 0;
  }
}

/** The proxy's `/metrics` text (Prometheus exposition format). */
export async function metricsText(p: ProxyProcess): Promise<string> {
  return (await getText(`${p.adminUrl}/metrics`)).body;
}

/** The sample lines of one metric family (no `# HELP`/`# TYPE`). */
export function metricLines(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

/**
 * The sum of a metric's samples whose labels include all of `labels`
 * (0 when there is none).
 *
 * @example metricSum(text, 'tether_proxy_affinity_decisions_total', { outcome: 'hit' })
 */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of metricLines(text, name)) {
    const close = line.lastIndexOf('}');
    const labelPart = close < 0 ? '' : line.slice(0, close + 1);
    if (!want.every((w) => labelPart.includes(w))) continue;
    const value = Number(
      line
        .slice(close + 1)
        .trim()
        .split(' ')[0],
    );
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}
