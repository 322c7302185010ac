/**
 * Workloads on the test cluster, with Kubernetes' own controllers doing the
 * work: Deployments roll pods, the scheduler places them on KWOK Nodes, the
 * EndpointSlice controller marks endpoints, the garbage collector follows
 * ownerReferences; the pod runner runs the test backend's real processes.
 */
import { describe, expect, it } from 'vitest';
import { cidrContains } from '../cluster/cluster.ts';
import {
  answeringPods,
  apply,
  cluster,
  listPods,
  podEvents,
  podLog,
  podPids,
  processAlive,
  type SliceEndpoint,
  sliceEndpoints,
  testBackendDeployment,
} from './cluster-support.ts';
import { eventually, kubectl, useNamespace } from './support.ts';

const ns = useNamespace('wl');

describe('a Deployment of test backends', () => {
  it('runs 3 pods with IPs in the pod CIDRs, each answering with its own name, all ready in the EndpointSlice', async () => {
    await apply(...testBackendDeployment('web', ns.name, 3));
    const pods = await eventually(
      async () => {
        const ps = await answeringPods(ns.name, 'web');
        return ps.length === 3 && ps;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: '3 test backends answering' },
    );
    const c = cluster();
    for (const p of pods) {
      const node = c.nodes.find((n) => n.name === p.spec.nodeName);
      expect(node, `pod ${p.metadata.name} on a simulated node`).toBeDefined();
      expect(cidrContains(node!.podCIDR, `${p.status.podIP}/32`)).toBe(true);
    }
    const eps = await eventually(
      async () => {
        const e = await sliceEndpoints(ns.name, 'web');
        return e.filter((x) => x.conditions.ready).length === 3 && e;
      },
      { timeoutMs: 30_000, what: 'EndpointSlice with 3 ready endpoints' },
    );
    expect(eps.map((e) => e.addresses[0]).sort()).toEqual(pods.map((p) => p.status.podIP).sort());
    expect(eps.map((e) => e.targetRef?.name).sort()).toEqual(pods.map((p) => p.metadata.name).sort());
  });

  it('scales to 5 and back to 2; rollout restart keeps old pods serving+terminating until their grace ends', async () => {
    await apply(...testBackendDeployment('web', ns.name, 3, { graceSeconds: 4, args: ['--drain=-1'] }));
    await eventually(async () => (await answeringPods(ns.name, 'web')).length === 3, {
      timeoutMs: 60_000,
      intervalMs: 250,
      what: '3 backends',
    });

    const t0 = Date.now();
    await kubectl(cluster(), ['scale', 'deployment/web', '-n', ns.name, '--replicas=5']);
    await eventually(async () => (await answeringPods(ns.name, 'web')).length === 5, {
      timeoutMs: 60_000,
      intervalMs: 100,
      what: '5 backends answering',
    });
    process.stderr.write(
      `[e2e] kubectl scale 3→5 until the new pods' processes answer: ${Date.now() - t0} ms\n`,
    );
    await eventually(
      async () => (await sliceEndpoints(ns.name, 'web')).filter((e) => e.conditions.ready).length === 5,
      {
        timeoutMs: 30_000,
        what: '5 ready endpoints',
      },
    );

    await kubectl(cluster(), ['scale', 'deployment/web', '-n', ns.name, '--replicas=2']);
    const two = await eventually(
      async () => {
        const all = await listPods(ns.name, 'app=web');
        return all.length === 2 && all;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'scaled down to 2 pods' },
    );
    expect((await answeringPods(ns.name, 'web')).length).toBe(2);

    // rollout restart: watch the slices while the old pods terminate.
    const old = two.map((p) => ({ namespace: ns.name, name: p.metadata.name, uid: p.metadata.uid }));
    await kubectl(cluster(), ['rollout', 'restart', 'deployment/web', '-n', ns.name]);
    const seen = new Map<string, { first: number; last: number }>();
    const deadline = Date.now() + 60_000;
    let done = false;
    while (!done && Date.now() < deadline) {
      const eps: SliceEndpoint[] = await sliceEndpoints(ns.name, 'web');
      for (const e of eps) {
        const name = e.targetRef?.name ?? '';
        if (old.some((o) => o.name === name) && e.conditions.serving && e.conditions.terminating) {
          const s = seen.get(name) ?? { first: Date.now(), last: 0 };
          s.last = Date.now();
          seen.set(name, s);
        }
      }
      const pods = await listPods(ns.name, 'app=web');
      done = pods.every((p) => !old.some((o) => o.uid === p.metadata.uid)) && pods.length === 2;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(done, 'old pods gone after the rollout').toBe(true);
    for (const o of old) {
      const s = seen.get(o.name);
      expect(s, `${o.name} seen serving+terminating`).toBeDefined();
      // The backend ignores SIGTERM (--drain=-1): its pod lasts the whole 4 s grace period.
      expect(s!.last - s!.first).toBeGreaterThanOrEqual(2_000);
      const events = podEvents(o);
      expect(events).toMatch(/sent SIGTERM/);
      expect(events).toMatch(/grace period over[\s\S]*sent SIGKILL/);
      expect(podLog(o, 'backend')).toMatch(/SIGTERM received/);
      for (const pid of podPids(o)) expect(processAlive(pid)).toBe(false);
    }
    await eventually(async () => (await answeringPods(ns.name, 'web')).length === 2, {
      timeoutMs: 30_000,
      what: '2 new backends answering',
    });
  });

  it('garbage-collects the ReplicaSet and Pods of a deleted Deployment, and their processes end', async () => {
    await apply(...testBackendDeployment('gc', ns.name, 2));
    const pods = await eventually(
      async () => {
        const ps = await answeringPods(ns.name, 'gc');
        return ps.length === 2 && ps;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: '2 backends' },
    );
    const refs = pods.map((p) => ({ namespace: ns.name, name: p.metadata.name, uid: p.metadata.uid }));
    const pids = refs.flatMap(podPids);
    expect(pids.length).toBe(2);
    await kubectl(cluster(), ['delete', 'deployment/gc', '-n', ns.name, '--wait=false']);
    await eventually(
      async () => {
        const { stdout } = await kubectl(cluster(), [
          'get',
          'replicasets,pods',
          '-n',
          ns.name,
          '-l',
          'app=gc',
          '-o',
          'name',
        ]);
        return stdout.trim() === '';
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'ReplicaSet and Pods garbage-collected' },
    );
    await eventually(() => pids.every((pid) => !processAlive(pid)), {
      timeoutMs: 10_000,
      what: 'processes ended',
    });
    for (const r of refs) expect(podEvents(r)).toMatch(/exited backend/);
  });
});
