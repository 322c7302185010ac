/**
 * promtool (Debian's prometheus package, installed by `make test`) as a
 * test oracle: `check metrics` lints a /metrics page, `check rules` and
 * `test rules` check alerting rules the way Prometheus loads them.
 */
import { spawnSync } from 'node:child_process';

/** promtool's output and exit code. @throws Error when promtool is not installed. */
export function promtool(args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync('promtool', args, { input, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`promtool: ${r.error.message} (make test installs the prometheus package)`);
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/**
 * prom-client's default Node.js metrics name three gauges `…_total`
 * (nodejs_active_handles_total, …_requests_total, …_resources_total): its
 * naming, not ours, and promtool flags them. Exactly these are tolerated;
 * any other complaint counts.
 */
const PROM_CLIENT_DEFAULTS =
  /^\w+_nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;

/**
 * `promtool check metrics` on a page: its complaints, less
 * {@link PROM_CLIENT_DEFAULTS}; empty when the page is clean. Exit code 3
 * means "lint problems" (listed); any other non-zero code is added as a line.
 */
export function metricsComplaints(page: string): string[] {
  const r = promtool(['check', 'metrics'], page);
  const lines = r.out.split('\n').filter((l) => l.trim() !== '' && !PROM_CLIENT_DEFAULTS.test(l));
  if (r.status !== 0 && r.status !== 3) lines.push(`promtool exited with ${r.status}`);
  return lines;
}
