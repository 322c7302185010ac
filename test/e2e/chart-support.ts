/**
 * Helpers for the Helm chart's e2e tests: render charts/tether with the
 * pinned helm, install the prometheus-operator CRDs (fetched by build.sh)
 * so ServiceMonitor, PodMonitor and PrometheusRule can be checked by the
 * apiserver, and the values that turn every optional part on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { CONTROL_PLANE_DIR, defaultBinDir, parseEnvFile } from '../control-plane/control-plane.ts';
import { controlPlane, helm, kubectl, waitForCrdEstablished } from './support.ts';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CHART = join(REPO, 'charts', 'tether');

/** `--set` pairs that turn on every optional part of the chart. */
export const ALL_ON: readonly string[] = [
  'metrics.serviceMonitor.enabled=true',
  'metrics.podMonitor.enabled=true',
  'prometheusRule.enabled=true',
  'networkPolicy.enabled=true',
  'grafanaDashboard.enabled=true',
  'operator.watchNamespaces={default,shop}',
  'networkPolicy.apiServer.cidrs={10.0.0.1/32}',
];

/** A Kubernetes object as rendered. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are plain JSON
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are plain JSON
  [k: string]: any;
}

/** `--set a=b` flags for each pair. */
export function setFlags(pairs: readonly string[]): string[] {
  return pairs.flatMap((p) => ['--set', p]);
}

/**
 * `helm template <release> charts/tether` with `args`.
 * @returns the YAML text and its objects.
 * @throws CommandError (stderr holds helm's message) when helm refuses the values.
 */
export async function renderChart(
  args: readonly string[] = [],
  { release = 'tether', namespace = 'tether-system' } = {},
): Promise<{ yaml: string; objects: K8sObject[] }> {
  const { stdout } = await helm(controlPlane(), [
    'template',
    release,
    CHART,
    '--namespace',
    namespace,
    ...args,
  ]);
  const objects = parseAllDocuments(stdout)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
  return { yaml: stdout, objects };
}

/** The one object of `kind` (and `name` when given). @throws Error when there is not exactly one. */
export function only(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1)
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

/** Directory of the prometheus-operator CRDs build.sh copies from the Go module. */
export function monitoringCrdDir(): string {
  const env = parseEnvFile(readFileSync(join(CONTROL_PLANE_DIR, 'versions.env'), 'utf8'));
  const v = env.PROMETHEUS_OPERATOR_VERSION;
  if (!v) throw new Error('versions.env: PROMETHEUS_OPERATOR_VERSION is not set');
  return join(defaultBinDir(), `monitoring-crds-${v}`);
}

let monitoringInstalled: Promise<void> | undefined;
/** Installs ServiceMonitor, PodMonitor and PrometheusRule CRDs (once per test process) and waits until Established. */
export function installMonitoringCrds(): Promise<void> {
  monitoringInstalled ??= (async () => {
    const cp = controlPlane();
    await kubectl(cp, ['apply', '--server-side', '-f', monitoringCrdDir()]);
    for (const k of ['servicemonitors', 'podmonitors', 'prometheusrules'])
      await waitForCrdEstablished(cp, `${k}.monitoring.coreos.com`);
  })();
  return monitoringInstalled;
}

export { metricValue } from '../helpers/prometheus-text.ts';

/** A label selector (matchLabels and matchExpressions) as kubectl's `-l` text. */
export function selectorText(sel: {
  matchLabels?: Record<string, string>;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}): string {
  const parts = Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator.toLowerCase()} (${(e.values ?? []).join(',')})`);
  }
  return parts.join(',');
}

/** A Prometheus scrape job with static targets. */
export interface StaticJob {
  job_name: string;
  metrics_path: string;
  scheme: string;
  static_configs: Array<{ targets: string[]; labels: Record<string, string> }>;
}

// biome-ignore lint/suspicious/noExplicitAny: kubectl's JSON output
type Json = any;

/**
 * What prometheus-operator would make of a rendered ServiceMonitor: one job
 * whose targets are the ready endpoints of the selected Services' EndpointSlices
 * on the named port (one static_config per pod, with its namespace and pod).
 */
export async function serviceMonitorJob(
  cp: Parameters<typeof kubectl>[0],
  sm: K8sObject,
): Promise<StaticJob> {
  const ep = sm.spec.endpoints[0];
  const namespaces: string[] = sm.spec.namespaceSelector.matchNames;
  const configs: StaticJob['static_configs'] = [];
  for (const ns of namespaces) {
    const svcs = JSON.parse(
      (await kubectl(cp, ['get', 'services', '-n', ns, '-l', selectorText(sm.spec.selector), '-o', 'json']))
        .stdout,
    ).items as Json[];
    for (const svc of svcs) {
      const slices = JSON.parse(
        (
          await kubectl(cp, [
            'get',
            'endpointslices',
            '-n',
            ns,
            '-l',
            `kubernetes.io/service-name=${svc.metadata.name}`,
            '-o',
            'json',
          ])
        ).stdout,
      ).items as Json[];
      for (const slice of slices) {
        const port = (slice.ports ?? []).find((p: Json) => p.name === ep.port)?.port;
        if (!port) continue;
        for (const e of slice.endpoints ?? []) {
          if (e.conditions?.ready === false) continue;
          configs.push({
            targets: [`${e.addresses[0]}:${port}`],
            labels: { namespace: ns, pod: e.targetRef?.name ?? '', service: svc.metadata.name },
          });
        }
      }
    }
  }
  return {
    job_name: `serviceMonitor/${sm.metadata.namespace}/${sm.metadata.name}`,
    metrics_path: ep.path,
    scheme: ep.scheme,
    static_configs: configs,
  };
}

/**
 * What prometheus-operator would make of a rendered PodMonitor: one job whose
 * targets are the running pods matching its selector (in its namespaces, or
 * all) on the container port of the endpoint's name.
 */
export async function podMonitorJob(cp: Parameters<typeof kubectl>[0], pm: K8sObject): Promise<StaticJob> {
  const ep = pm.spec.podMetricsEndpoints[0];
  const nsArgs: string[][] = pm.spec.namespaceSelector.any
    ? [['--all-namespaces']]
    : (pm.spec.namespaceSelector.matchNames as string[]).map((n) => ['-n', n]);
  const configs: StaticJob['static_configs'] = [];
  for (const scope of nsArgs) {
    const pods = JSON.parse(
      (await kubectl(cp, ['get', 'pods', ...scope, '-l', selectorText(pm.spec.selector), '-o', 'json']))
        .stdout,
    ).items as Json[];
    for (const p of pods) {
      if (p.status?.phase !== 'Running' || !p.status?.podIP || p.metadata.deletionTimestamp) continue;
      const port = (p.spec.containers as Json[])
        .flatMap((c) => c.ports ?? [])
        .find((x: Json) => x.name === ep.port)?.containerPort;
      if (!port) continue;
      configs.push({
        targets: [`${p.status.podIP}:${port}`],
        labels: { namespace: p.metadata.namespace, pod: p.metadata.name },
      });
    }
  }
  return {
    job_name: `podMonitor/${pm.metadata.namespace}/${pm.metadata.name}`,
    metrics_path: ep.path,
    scheme: ep.scheme,
    static_configs: configs,
  };
}
