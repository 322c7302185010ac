/** The leader-election Lease (coordination.k8s.io/v1) in the apiserver: a LeaseStore for controller/leader-election.ts. */
import type { LeaseRecord, LeaseStore, StoredLease } from '../controller/leader-election.ts';
import { type KubeClient, resourcePath, statusOf } from './client.ts';

interface LeaseObject {
  metadata: { resourceVersion: string };
  spec?: Partial<LeaseRecord>;
}

function toStored(l: LeaseObject): StoredLease {
  const s = l.spec ?? {};
  return {
    resourceVersion: l.metadata.resourceVersion,
    record: {
      holderIdentity: s.holderIdentity ?? '',
      leaseDurationSeconds: s.leaseDurationSeconds ?? 0,
      acquireTime: s.acquireTime ?? '',
      renewTime: s.renewTime ?? '',
      leaseTransitions: s.leaseTransitions ?? 0,
    },
  };
}

/** Each call is bounded by `timeoutMs` (a hung request must not outlive the renew deadline). */
export function apiLeaseStore(
  client: KubeClient,
  namespace: string,
  name: string,
  timeoutMs = 5_000,
): LeaseStore {
  const path = resourcePath('coordination.k8s.io/v1', 'leases', namespace, name);
  const body = (r: LeaseRecord, resourceVersion?: string) => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
    spec: r,
  });
  return {
    async get() {
      try {
        return toStored(await client.request<LeaseObject>('GET', path, { timeoutMs }));
      } catch (err) {
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    },
    async create(r) {
      return toStored(
        await client.request<LeaseObject>(
          'POST',
          resourcePath('coordination.k8s.io/v1', 'leases', namespace),
          {
            body: body(r),
            timeoutMs,
          },
        ),
      );
    },
    async update(r, resourceVersion) {
      return toStored(
        await client.request<LeaseObject>('PUT', path, { body: body(r, resourceVersion), timeoutMs }),
      );
    },
  };
}
