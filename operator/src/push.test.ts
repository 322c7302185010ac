import { describe, expect, it } from 'vitest';
import type { Pod } from './kube/types.ts';
import { proxyTargetsOf } from './push.ts';

const pod = (
  name: string,
  o: { ip?: string; phase?: string; deleting?: boolean; port?: number; restarts?: number },
): Pod => ({
  metadata: {
    name,
    uid: `uid-${name}`,
    ...(o.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
  },
  spec: {
    containers: [
      { name: 'app' },
      { name: 'proxy', ports: o.port ? [{ name: 'tether-admin', containerPort: o.port }] : [] },
    ],
  },
  status: {
    phase: o.phase ?? 'Running',
    ...(o.ip ? { podIP: o.ip } : {}),
    containerStatuses: [{ restartCount: o.restarts ?? 0 }],
  },
});

describe('proxyTargetsOf', () => {
  it.each([
    { desc: 'running with an IP', p: pod('a', { ip: '10.0.0.1' }), want: ['a@10.0.0.1:9901'] },
    { desc: 'named admin port', p: pod('a', { ip: '10.0.0.1', port: 7000 }), want: ['a@10.0.0.1:7000'] },
    { desc: 'no IP yet', p: pod('a', {}), want: [] },
    { desc: 'pending', p: pod('a', { ip: '10.0.0.1', phase: 'Pending' }), want: [] },
    { desc: 'being deleted', p: pod('a', { ip: '10.0.0.1', deleting: true }), want: [] },
  ])('$desc', ({ p, want }) => {
    expect(proxyTargetsOf([p]).map((t) => `${t.pod}@${t.address}:${t.port}`)).toEqual(want);
  });

  it('a container restart is a new incarnation (its table is gone)', () => {
    const [a] = proxyTargetsOf([pod('a', { ip: '10.0.0.1' })]);
    const [b] = proxyTargetsOf([pod('a', { ip: '10.0.0.1', restarts: 1 })]);
    expect(a?.incarnation).not.toBe(b?.incarnation);
  });
});
