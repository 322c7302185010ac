// RBAC is enforced: a minted non-admin identity can do what its Role or
// ClusterRole grants and nothing else. The operator's RBAC will be tested
// the same way.
import { CoreV1Api } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  apiError,
  bindIdentity,
  controlPlane,
  eventually,
  kubeConfig,
  kubectl,
  mintIdentity,
  useNamespace,
} from './support.ts';

describe('RBAC with a minted identity', () => {
  const ns = useNamespace('rbac');

  it('allows what a Role grants and forbids everything else', async () => {
    const cp = controlPlane();
    const admin = kubeConfig().makeApiClient(CoreV1Api);
    const other = `${ns.name.slice(0, 55)}-other`;
    await admin.createNamespace({ body: { metadata: { name: other } } });
    try {
      for (const namespace of [ns.name, other]) {
        await admin.createNamespacedConfigMap({
          namespace,
          body: { metadata: { name: 'cm' }, data: { a: '1' } },
        });
      }
      await kubectl(cp, [
        'create',
        'role',
        'configmap-reader',
        '--verb=get,list,watch',
        '--resource=configmaps',
        '-n',
        ns.name,
      ]);
      const id = await mintIdentity(cp, { user: 'smoke-reader', groups: ['smoke-group'] });
      await bindIdentity(cp, id, { kind: 'Role', role: 'configmap-reader', namespace: ns.name });

      const asUser = kubeConfig(id.kubeconfig).makeApiClient(CoreV1Api);
      // The RBAC authorizer learns of new bindings through an informer: allow it a moment.
      const cm = await eventually(() => asUser.readNamespacedConfigMap({ name: 'cm', namespace: ns.name }), {
        what: 'RoleBinding in effect',
      });
      expect(cm.data).toEqual({ a: '1' });
      // kube-root-ca.crt is put in every namespace by the controller-manager, as on any cluster.
      const listed = (await asUser.listNamespacedConfigMap({ namespace: ns.name })).items;
      expect(listed.map((c) => c.metadata?.name).filter((n) => n !== 'kube-root-ca.crt')).toEqual(['cm']);

      // Outside the Role: another namespace, another verb, another resource, cluster scope.
      const denied = [
        () => asUser.readNamespacedConfigMap({ name: 'cm', namespace: other }),
        () => asUser.createNamespacedConfigMap({ namespace: ns.name, body: { metadata: { name: 'new' } } }),
        () => asUser.deleteNamespacedConfigMap({ name: 'cm', namespace: ns.name }),
        () => asUser.listNamespacedSecret({ namespace: ns.name }),
        () => asUser.listNamespace(),
      ];
      for (const call of denied) {
        const err = await apiError(call);
        expect(err.code).toBe(403);
        expect(err.body).toContain('User \\"smoke-reader\\"');
      }

      // kubectl with the minted kubeconfig sees the same answers.
      const canI = async (...args: string[]) =>
        (
          await kubectl(cp, ['auth', 'can-i', ...args], { kubeconfig: id.kubeconfig }).catch((e) => e)
        ).stdout.trim();
      expect(await canI('list', 'configmaps', '-n', ns.name)).toBe('yes');
      expect(await canI('list', 'configmaps', '-n', other)).toBe('no');
      expect(await canI('create', 'configmaps', '-n', ns.name)).toBe('no');
    } finally {
      await admin.deleteNamespace({ name: other }).catch(() => undefined);
    }
  });

  it('grants a ClusterRole cluster-wide through a ClusterRoleBinding', async () => {
    const cp = controlPlane();
    const role = `${ns.name}-ns-reader`;
    await kubectl(cp, ['create', 'clusterrole', role, '--verb=get,list', '--resource=namespaces']);
    try {
      const id = await mintIdentity(cp, { user: `${ns.name}-user` });
      const asUser = kubeConfig(id.kubeconfig).makeApiClient(CoreV1Api);
      expect((await apiError(() => asUser.listNamespace())).code).toBe(403);

      await bindIdentity(cp, id, { kind: 'ClusterRole', role });
      const list = await eventually(() => asUser.listNamespace(), { what: 'ClusterRoleBinding in effect' });
      const names = list.items.map((n) => n.metadata?.name);
      expect(names).toContain(ns.name);
      expect((await apiError(() => asUser.listNamespacedConfigMap({ namespace: ns.name }))).code).toBe(403);
    } finally {
      await kubectl(cp, ['delete', 'clusterrole', role, '--ignore-not-found']);
      await kubectl(cp, ['delete', 'clusterrolebinding', `${role}-${ns.name}-user`, '--ignore-not-found']);
    }
  });
});
