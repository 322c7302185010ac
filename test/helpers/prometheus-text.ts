/**
 * Reading the Prometheus text exposition format (what `/metrics` answers) in
 * tests: the value of one series, without a parser library for a few lines.
 */

/**
 * Value of the first series of `name` whose labels include `labels`, in a
 * Prometheus text page; `undefined` when no such series is on the page.
 * E.g. `metricValue(page, 'tether_operator_leader')` → `1`.
 */
export function metricValue(
  page: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of page.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eE]+|NaN)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => ls[k] === v)) return Number(m[3]);
  }
  return undefined;
}
