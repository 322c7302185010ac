// The Helm chart against the real apiserver: lint, render with defaults and
// with every optional part on, server-side dry-run of both, the schema's
// refusals, the single-source CRD and RBAC, and the alerts under promtool.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { DEFAULT_VALKEY_IMAGE } from '../../operator/src/build/session-store-objects.ts';
import { buildPoolCrd } from '../../operator/src/crd/pool-crd.ts';
import { CLUSTER_RULES, LEADER_ELECTION_RULES } from '../../operator/src/rbac.ts';
import { promtool } from '../helpers/promtool.ts';
import {
  ALL_ON,
  CHART,
  installMonitoringCrds,
  type K8sObject,
  only,
  REPO,
  renderChart,
  setFlags,
} from './chart-support.ts';
import { CommandError, controlPlane, helm, kubectl, useNamespace, waitForCrdEstablished } from './support.ts';

const kinds = (objects: readonly K8sObject[]): string[] => objects.map((o) => o.kind).sort();

describe('helm lint', () => {
  it.each([
    { desc: 'defaults', args: [] as string[] },
    { desc: 'every optional part on', args: setFlags(ALL_ON) },
  ])('--strict passes with $desc', async ({ args }) => {
    const { stdout } = await helm(controlPlane(), ['lint', '--strict', CHART, ...args]);
    expect(stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
  });
});

describe('helm template', () => {
  it('renders the operator, its RBAC, the CRD, the metrics Service and the PDB by default', async () => {
    const { objects } = await renderChart();
    expect(kinds(objects)).toEqual([
      'ClusterRole',
      'ClusterRoleBinding',
      'CustomResourceDefinition',
      'Deployment',
      'PodDisruptionBudget',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
    ]);
    const dep = only(objects, 'Deployment');
    expect(dep.spec.replicas).toBe(2);
    const pod = dep.spec.template.spec;
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const c = pod.containers[0];
    expect(c.command).toBeUndefined(); // the image's ENTRYPOINT is tether-operator
    expect(c.args).toEqual(expect.arrayContaining(['--leader-elect=true', '--leader-election-id=tether']));
    // The session store's image, as the operator defaults it.
    expect(c.args).toContain(`--valkey-image=${DEFAULT_VALKEY_IMAGE}`);
    expect(c.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c.resources.requests).toBeDefined();
    expect(pod.serviceAccountName).toBe(only(objects, 'ServiceAccount').metadata.name);
  });

  it('with every optional part on: ServiceMonitor, PodMonitor, PrometheusRule, NetworkPolicy, dashboard ConfigMap', async () => {
    const { objects } = await renderChart(setFlags(ALL_ON));
    for (const k of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule', 'NetworkPolicy', 'ConfigMap'])
      expect(kinds(objects)).toContain(k);
    const pm = only(objects, 'PodMonitor');
    expect(pm.spec.selector).toEqual({ matchExpressions: [{ key: 'tether.dev/pool', operator: 'Exists' }] });
    expect(pm.spec.namespaceSelector).toEqual({ matchNames: ['default', 'shop'] });
    expect(pm.spec.podMetricsEndpoints[0]).toMatchObject({ port: 'tether-admin', path: '/metrics' });
    const dashboard = only(objects, 'ConfigMap');
    expect(dashboard.metadata.labels?.grafana_dashboard).toBe('1');
    expect(JSON.parse(dashboard.data['tether.json'])).toEqual(
      JSON.parse(readFileSync(join(CHART, 'dashboards', 'tether.json'), 'utf8')),
    );
    expect(only(objects, 'Deployment').spec.template.spec.containers[0].args).toContain(
      '--namespaces=default,shop',
    );
  });

  it('the CRD is the generated one, kept on uninstall, and left out with crds.install=false', async () => {
    const crd = only((await renderChart()).objects, 'CustomResourceDefinition');
    expect(crd.metadata.name).toBe('stickybackendpools.tether.dev');
    expect(crd.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    expect(crd.spec).toEqual((buildPoolCrd() as { spec: unknown }).spec);
    const without = await renderChart(['--set', 'crds.install=false']);
    expect(kinds(without.objects)).not.toContain('CustomResourceDefinition');
  });

  it("the RBAC rules are the operator's own list", async () => {
    const { objects } = await renderChart();
    expect(only(objects, 'ClusterRole').rules).toEqual(CLUSTER_RULES);
    expect(only(objects, 'Role').rules).toEqual(LEADER_ELECTION_RULES);
    expect(only(objects, 'Role').metadata.namespace).toBe('tether-system');
  });
});

describe('kubectl apply --dry-run=server', () => {
  const ns = useNamespace('chart');
  beforeAll(() => installMonitoringCrds(), 120_000);

  it.each([
    { desc: 'defaults', args: [] as string[] },
    { desc: 'every optional part on', args: setFlags(ALL_ON) },
  ])('the apiserver accepts the chart rendered with $desc', async ({ args }) => {
    const { yaml, objects } = await renderChart(args, { namespace: ns.name });
    const { stdout } = await kubectl(controlPlane(), ['apply', '--dry-run=server', '-f', '-'], {
      input: yaml,
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(objects.length);
    for (const l of lines) expect(l).toMatch(/ (created|configured|unchanged) \(server dry run\)$/);
  });

  it('the apiserver accepts every example of examples/ under the chart CRD (its CEL rules included)', async () => {
    const cp = controlPlane();
    const crd = only((await renderChart()).objects, 'CustomResourceDefinition');
    // Server-side apply: the CRD may be there already (operator tests, or a
    // Helm release that adopted it); same content, so no conflict.
    await kubectl(cp, ['apply', '--server-side', '--field-manager=tether-chart-test', '-f', '-'], {
      input: JSON.stringify(crd),
    });
    await waitForCrdEstablished(cp, crd.metadata.name);
    const { stdout } = await kubectl(cp, ['apply', '--dry-run=server', '-f', join(REPO, 'examples')]);
    const accepted = / (created|configured|unchanged) \(server dry run\)$/;
    const lines = stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('stickybackendpool.tether.dev/'))).toHaveLength(5);
    expect(lines.some((l) => l.startsWith('deployment.apps/storefront'))).toBe(true);
    for (const l of lines) expect(l).toMatch(accepted);
  });

  it('is a real check: the apiserver refuses a PodMonitor with a bad field', async () => {
    const { objects } = await renderChart(setFlags(ALL_ON), { namespace: ns.name });
    const pm = only(objects, 'PodMonitor');
    pm.spec.podMetricsEndpoints[0].scheme = 'gopher';
    const err = await kubectl(controlPlane(), ['apply', '--dry-run=server', '-f', '-'], {
      input: JSON.stringify(pm),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderr).toMatch(/scheme/);
  });
});

describe('values.schema.json and the template checks refuse bad values', () => {
  it.each([
    {
      desc: 'zero replicas',
      set: 'operator.replicas=0',
      want: /at '\/operator\/replicas': minimum: got 0, want 1/,
    },
    {
      desc: 'an unknown log level',
      set: 'operator.logLevel=loud',
      want: /at '\/operator\/logLevel': value must be one of 'debug', 'info', 'warn', 'error'/,
    },
    {
      desc: 'a duration without unit',
      set: 'operator.resync=600',
      want: /at '\/operator\/resync': got number, want string/,
    },
    {
      desc: 'a duration in words',
      set: 'operator.pushTimeout=five',
      want: /at '\/operator\/pushTimeout': 'five' does not match pattern/,
    },
    {
      desc: 'a bad pull policy',
      set: 'image.pullPolicy=Sometimes',
      want: /at '\/image\/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'/,
    },
    {
      desc: 'a digest that is not sha256',
      set: 'image.digest=md5:abc',
      want: /at '\/image\/digest': 'md5:abc' does not match pattern/,
    },
    {
      desc: 'a 5xx ratio above 1',
      set: 'prometheusRule.proxy5xxRatio=5',
      want: /at '\/prometheusRule\/proxy5xxRatio': maximum: got 5, want 1/,
    },
    {
      desc: 'an empty Valkey image',
      set: 'operator.valkeyImage=',
      want: /at '\/operator\/valkeyImage': minLength: got 0, want 1/,
    },
    {
      desc: 'a misspelt key',
      set: 'operator.replica=3',
      want: /at '\/operator': additional properties 'replica' not allowed/,
    },
    { desc: 'an unknown top-level key', set: 'bogus=1', want: /additional properties 'bogus' not allowed/ },
    {
      desc: 'a namespace that is no DNS label',
      set: 'operator.watchNamespaces={Bad_NS}',
      want: /at '\/operator\/watchNamespaces\/0': 'Bad_NS' does not match pattern/,
    },
    {
      desc: 'a privileged metrics port',
      set: 'operator.metricsPort=80',
      want: /at '\/operator\/metricsPort': minimum: got 80, want 1,024/,
    },
    {
      desc: 'a flag without dashes in extraArgs',
      set: 'operator.extraArgs={workers=3}',
      want: /at '\/operator\/extraArgs\/0': 'workers=3' does not match pattern/,
    },
    {
      desc: 'a bad Prometheus interval',
      set: 'metrics.podMonitor.interval=soon',
      want: /at '\/metrics\/podMonitor\/interval'/,
    },
    {
      desc: 'two replicas without leader election',
      set: 'operator.leaderElection.enabled=false',
      want: /operator.replicas > 1 needs operator.leaderElection.enabled=true/,
    },
    {
      desc: 'both PDB bounds',
      set: 'podDisruptionBudget.minAvailable=1',
      want: /set one of minAvailable and maxUnavailable, not both/,
    },
    {
      desc: 'a ServiceMonitor without the Service',
      set: 'metrics.serviceMonitor.enabled=true,metrics.service.enabled=false',
      want: /metrics.serviceMonitor.enabled needs metrics.service.enabled/,
    },
  ])('$desc', async ({ set, want }) => {
    const err = await renderChart(['--set', set]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).stderr).toMatch(want);
  });

  it("takes the session store's image from operator.valkeyImage (a private registry's copy)", async () => {
    const { objects } = await renderChart(
      setFlags(['operator.valkeyImage=registry.internal/mirror/valkey:8.1.1']),
    );
    expect(only(objects, 'Deployment').spec.template.spec.containers[0].args).toContain(
      '--valkey-image=registry.internal/mirror/valkey:8.1.1',
    );
  });

  it('accepts one replica without leader election, and a percentage PDB', async () => {
    const { objects } = await renderChart(
      setFlags([
        'operator.replicas=1',
        'operator.leaderElection.enabled=false',
        'podDisruptionBudget.maxUnavailable=null',
        'podDisruptionBudget.minAvailable=50%',
      ]),
    );
    expect(only(objects, 'Deployment').spec.template.spec.containers[0].args).toContain(
      '--leader-elect=false',
    );
    expect(only(objects, 'PodDisruptionBudget').spec).toMatchObject({ minAvailable: '50%' });
  });
});

describe('the alerts under promtool', () => {
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-rules-'));
    const rule = only(
      (await renderChart(['--set', 'prometheusRule.enabled=true'])).objects,
      'PrometheusRule',
    );
    writeFileSync(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }));
    writeFileSync(join(dir, 'tests.yaml'), readFileSync(join(REPO, 'test/chart/alerts.promtool-test.yaml')));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('promtool check rules accepts the rendered groups', () => {
    const r = promtool(['check', 'rules', join(dir, 'rules.yaml')]);
    expect(r.out).toMatch(/SUCCESS: 6 rules found/);
    expect(r.status).toBe(0);
  });

  it('promtool test rules: each alert fires on its condition and stays quiet otherwise', () => {
    const r = promtool(['test', 'rules', join(dir, 'tests.yaml')]);
    expect(r.out).toMatch(/SUCCESS/);
    expect(r.status).toBe(0);
  });
});
