// CustomResourceDefinitions work as the operator will need them: applied with
// kubectl, served, validated by openAPI schema and CEL rules, and watchable.
import { fileURLToPath } from 'node:url';
import { CustomObjectsApi, Watch } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  apiError,
  controlPlane,
  eventually,
  kubeConfig,
  kubectl,
  useNamespace,
  waitForCrdEstablished,
} from './support.ts';

const crdFile = fileURLToPath(new URL('fixtures/widget-crd.yaml', import.meta.url));
const group = 'smoke.tether.dev';
const version = 'v1alpha1';
const plural = 'widgets';

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec: Record<string, unknown>;
}

const widget = (name: string, spec: Record<string, unknown>): Widget => ({
  apiVersion: `${group}/${version}`,
  kind: 'Widget',
  metadata: { name },
  spec,
});

describe('CustomResourceDefinition', () => {
  const ns = useNamespace('crd');
  const api = () => kubeConfig().makeApiClient(CustomObjectsApi);

  beforeAll(async () => {
    const cp = controlPlane();
    await kubectl(cp, ['apply', '-f', crdFile]);
    await waitForCrdEstablished(cp, `${plural}.${group}`);
  });

  it('is Established after kubectl apply', async () => {
    const { stdout } = await kubectl(controlPlane(), ['get', `crd/${plural}.${group}`, '-o', 'json']);
    const crd = JSON.parse(stdout) as { status: { conditions: { type: string; status: string }[] } };
    expect(crd.status.conditions).toContainEqual(
      expect.objectContaining({ type: 'Established', status: 'True' }),
    );
  });

  it('creates and reads a custom object', async () => {
    await api().createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body: widget('w1', { size: 3, color: 'green' }),
    });
    const got = (await api().getNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      name: 'w1',
    })) as Widget;
    expect(got.spec).toEqual({ size: 3, color: 'green' });
    expect(got.metadata.namespace).toBe(ns.name);
  });

  it('rejects an object that breaks the openAPI schema', async () => {
    for (const spec of [{ size: 11 }, { size: 2, color: 'purple' }, { color: 'red' }, { size: 'big' }]) {
      const err = await apiError(() =>
        api().createNamespacedCustomObject({
          group,
          version,
          namespace: ns.name,
          plural,
          body: widget('bad', spec),
        }),
      );
      expect(err.code, JSON.stringify(spec)).toBe(422);
    }
  });

  it('rejects an object that breaks a CEL rule', async () => {
    const err = await apiError(() =>
      api().createNamespacedCustomObject({
        group,
        version,
        namespace: ns.name,
        plural,
        body: widget('bad-cel', { size: 1, minReplicas: 5, maxReplicas: 2 }),
      }),
    );
    expect(err.code).toBe(422);
    expect(err.body).toContain('minReplicas must not exceed maxReplicas');
    // The same rule lets a valid object through.
    await api().createNamespacedCustomObject({
      group,
      version,
      namespace: ns.name,
      plural,
      body: widget('good-cel', { size: 1, minReplicas: 2, maxReplicas: 5 }),
    });
  });

  it('lets a watch see create, update and delete', async () => {
    const events: { type: string; name: string; size: unknown }[] = [];
    let watchError: unknown;
    const controller = await new Watch(kubeConfig()).watch(
      `/apis/${group}/${version}/namespaces/${ns.name}/${plural}`,
      {},
      (type, obj: Widget) => events.push({ type, name: obj.metadata.name, size: obj.spec?.size }),
      (err) => {
        watchError = err;
      },
    );
    try {
      await api().createNamespacedCustomObject({
        group,
        version,
        namespace: ns.name,
        plural,
        body: widget('w', { size: 1 }),
      });
      await eventually(() => events.some((e) => e.type === 'ADDED'), { what: 'ADDED event' });

      const current = (await api().getNamespacedCustomObject({
        group,
        version,
        namespace: ns.name,
        plural,
        name: 'w',
      })) as Widget;
      current.spec.size = 2;
      await api().replaceNamespacedCustomObject({
        group,
        version,
        namespace: ns.name,
        plural,
        name: 'w',
        body: current,
      });
      await eventually(() => events.some((e) => e.type === 'MODIFIED' && e.size === 2), {
        what: 'MODIFIED event',
      });

      await api().deleteNamespacedCustomObject({ group, version, namespace: ns.name, plural, name: 'w' });
      await eventually(() => events.some((e) => e.type === 'DELETED'), { what: 'DELETED event' });
      // Checked before abort(), which ends the watch with an AbortError of its own.
      expect(watchError ?? null).toBeNull();
    } finally {
      controller.abort();
    }
    expect(events.map((e) => `${e.type} ${e.name} ${e.size}`)).toEqual([
      'ADDED w 1',
      'MODIFIED w 2',
      'DELETED w 2',
    ]);
  });
});
