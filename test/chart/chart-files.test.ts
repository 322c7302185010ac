// Pure checks of what the chart, the dashboard and the examples say about
// the code: every metric they query exists, every example is a valid pool,
// and the sidecar example wires the proxy the way the operator looks for it.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { POOL_LABEL } from '../../operator/src/api/index.ts';
import {
  ADMIN_PORT_NAME,
  ADMIN_TOKEN_KEY,
  COOKIE_KEYS_KEY,
  ownedNames,
  SECRET_MOUNT,
} from '../../operator/src/build/desired-objects.ts';
import { OperatorMetrics } from '../../operator/src/metrics.ts';
import { stickyBackendPoolSchema } from '../../proxy/src/api/pool-spec.ts';
import { ProxyMetrics } from '../../proxy/src/metrics.ts';

const REPO = join(import.meta.dirname, '..', '..');
const CHART = join(REPO, 'charts', 'tether');
const read = (...p: string[]): string => readFileSync(join(REPO, ...p), 'utf8');

/** Names of the metrics the proxy and the operator register (histograms as their base name). */
async function registeredNames(): Promise<Set<string>> {
  const proxy = new ProxyMetrics();
  const operator = new OperatorMetrics();
  const all = [...(await proxy.registry.getMetricsAsJSON()), ...(await operator.registry.getMetricsAsJSON())];
  return new Set(all.map((m) => m.name));
}

/** `tether_…` metric names in PromQL text, with histogram suffixes taken off. */
function metricNamesIn(text: string): string[] {
  const names = text.match(/\btether_(proxy|operator)_[a-z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))].sort();
}

interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Array<{ expr: string; refId: string }>;
}

describe('the dashboard and the alerts query metrics that exist', () => {
  const dashboard = JSON.parse(readFileSync(join(CHART, 'dashboards', 'tether.json'), 'utf8')) as {
    uid: string;
    panels: Panel[];
  };

  it.each([
    {
      desc: 'dashboards/tether.json',
      text: dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n'),
    },
    {
      desc: 'templates/prometheusrule.yaml',
      text: read('charts', 'tether', 'templates', 'prometheusrule.yaml'),
    },
  ])('$desc', async ({ text }) => {
    const names = metricNamesIn(text);
    expect(names.length).toBeGreaterThan(5);
    const known = await registeredNames();
    expect(names.filter((n) => !known.has(n))).toEqual([]);
  });

  it('every panel has a unique id and every query panel at least one target', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels.filter((x) => x.type !== 'row'))
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
  });

  it("the README's metrics table lists every metric of the proxy and the operator", async () => {
    const readme = read('README.md');
    const own = [...(await registeredNames())].filter(
      (n) => /^tether_(proxy|operator)_/.test(n) && !/^tether_proxy_(process|nodejs)_/.test(n),
    );
    expect(own.length).toBeGreaterThan(10);
    expect(own.filter((n) => !readme.includes(`| \`${n}\``))).toEqual([]);
  });
});

/** Values whose content is Kubernetes' own (free-form): documented as one key. */
const FREE_FORM = new Set([
  'resources',
  'podSecurityContext',
  'securityContext',
  'livenessProbe',
  'readinessProbe',
  'labels',
]);

/** Dotted paths of the documented values: leaves, and free-form maps as one key. */
function valuePaths(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => {
    const path = `${prefix}${k}`;
    const nested = v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0;
    return nested && !FREE_FORM.has(k) ? valuePaths(v as Record<string, unknown>, `${path}.`) : [path];
  });
}

/**
 * Keys named by the README's values table. A row's first cell names a full
 * path, then siblings by their last part: `` `a.b.c`, `d` `` documents a.b.c and a.b.d.
 */
function documentedValues(readme: string): Set<string> {
  const section = readme.slice(readme.indexOf('### Helm values'), readme.indexOf('### Alerts'));
  const out = new Set<string>();
  for (const row of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const names = [...row.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const parent = names[0]!.includes('.') ? names[0]!.slice(0, names[0]!.lastIndexOf('.') + 1) : '';
    out.add(names[0]!);
    for (const n of names.slice(1)) out.add(n.includes('.') ? n : `${parent}${n}`);
  }
  return out;
}

describe('README: Helm values', () => {
  it('the values table documents every key of values.yaml, and no key that is not there', () => {
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const paths = valuePaths(values);
    const documented = documentedValues(read('README.md'));
    expect(paths.length).toBeGreaterThan(40);
    expect(paths.filter((p) => !documented.has(p))).toEqual([]);
    expect([...documented].filter((d) => !paths.includes(d))).toEqual([]);
  });
});

describe('examples/', () => {
  const files = readdirSync(join(REPO, 'examples')).filter((f) => f.endsWith('.yaml'));
  const docs = files.flatMap((f) =>
    parseAllDocuments(read('examples', f)).map((d) => ({
      file: f,
      obj: d.toJS() as Record<string, unknown>,
    })),
  );
  const pools = docs.filter((d) => d.obj.kind === 'StickyBackendPool');

  it.each(pools.map((p) => ({ desc: `${p.file}: ${(p.obj.metadata as { name: string }).name}`, p })))(
    '$desc is a valid StickyBackendPool',
    ({ p }) => {
      const r = stickyBackendPoolSchema.safeParse(p.obj);
      expect(r.error?.message).toBeUndefined();
    },
  );

  it('there is a pool for each affinity type', () => {
    const types = pools.map((p) => stickyBackendPoolSchema.parse(p.obj).spec.affinity.type).sort();
    expect([...new Set(types)]).toEqual(['ClientIP', 'Cookie', 'Header', 'Learn']);
  });

  it('the sidecar example carries the pool label, the named admin port and the pool Secret', () => {
    const sidecar = docs.filter((d) => d.file === 'sidecar.yaml');
    const pool = stickyBackendPoolSchema.parse(sidecar.find((d) => d.obj.kind === 'StickyBackendPool')!.obj);
    expect(pool.spec.proxy.mode).toBe('Sidecar');
    // biome-ignore lint/suspicious/noExplicitAny: walking a plain manifest
    const pod = (sidecar.find((d) => d.obj.kind === 'Deployment')!.obj as any).spec.template;
    expect(pod.metadata.labels[POOL_LABEL]).toBe(pool.metadata.name);
    // biome-ignore lint/suspicious/noExplicitAny: walking a plain manifest
    const proxy = pod.spec.containers.find((c: any) => c.command?.[0] === 'tether-proxy');
    expect(proxy).toBeDefined();
    // biome-ignore lint/suspicious/noExplicitAny: walking a plain manifest
    const admin = proxy.ports.find((p: any) => p.name === ADMIN_PORT_NAME);
    expect(proxy.args).toContain(`--admin-listen=$(POD_IP):${admin.containerPort}`);
    expect(proxy.args).toContain(`--admin-token-file=${SECRET_MOUNT}/${ADMIN_TOKEN_KEY}`);
    expect(proxy.args).toContain(`--cookie-keys-file=${SECRET_MOUNT}/${COOKIE_KEYS_KEY}`);
    const mount = proxy.volumeMounts.find((m: { mountPath: string }) => m.mountPath === SECRET_MOUNT);
    // biome-ignore lint/suspicious/noExplicitAny: walking a plain manifest
    const volume = pod.spec.volumes.find((v: any) => v.name === mount.name);
    expect(volume.secret.secretName).toBe(ownedNames(pool.metadata.name).secret);
  });
});
