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
import { controlPlane, helm, kubectl } from './support.ts';

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
    for (const k of ['servicemonitors', 'podmonitors', 'prometheusrules']) {
      await kubectl(
        cp,
        ['wait', '--for=condition=Established', `crd/${k}.monitoring.coreos.com`, '--timeout=60s'],
        { timeoutMs: 70_000 },
      );
    }
  })();
  return monitoringInstalled;
}
