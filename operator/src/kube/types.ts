/**
 * The few Kubernetes object shapes the operator reads, as zod schemas:
 * objects from informers are validated at the edge (loose: unknown fields
 * kept), so the pure builders can trust the types.
 */
import { z } from 'zod';

export const objectMetaSchema = z.looseObject({
  name: z.string(),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  deletionTimestamp: z.string().optional(),
  creationTimestamp: z.string().optional(),
  ownerReferences: z.array(z.looseObject({ uid: z.string(), kind: z.string(), name: z.string() })).optional(),
});
export type ObjectMeta = z.infer<typeof objectMetaSchema>;

/** Any object with metadata, as a watch delivers it. */
export const kubeObjectSchema = z.looseObject({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: objectMetaSchema,
});
export type KubeObject = z.infer<typeof kubeObjectSchema>;

/** discovery.k8s.io/v1 EndpointSlice: only what a routing table needs. */
export const endpointSliceSchema = z.looseObject({
  metadata: objectMetaSchema,
  addressType: z.string(),
  endpoints: z
    .array(
      z.looseObject({
        addresses: z.array(z.string()),
        conditions: z
          .looseObject({
            ready: z.boolean().nullish(),
            serving: z.boolean().nullish(),
            terminating: z.boolean().nullish(),
          })
          .optional(),
        targetRef: z.looseObject({ kind: z.string().optional(), name: z.string().optional() }).optional(),
        zone: z.string().optional(),
      }),
    )
    .nullish(),
  ports: z
    .array(
      z.looseObject({
        name: z.string().nullish(),
        port: z.number().int().nullish(),
        protocol: z.string().nullish(),
      }),
    )
    .nullish(),
});
export type EndpointSlice = z.infer<typeof endpointSliceSchema>;

/** core/v1 Service: the ports, to find the EndpointSlice port a pool's `backend.service.port` means. */
export const serviceSchema = z.looseObject({
  metadata: objectMetaSchema,
  spec: z
    .looseObject({
      ports: z
        .array(
          z.looseObject({
            name: z.string().optional(),
            port: z.number().int(),
            targetPort: z.union([z.number(), z.string()]).optional(),
          }),
        )
        .optional(),
    })
    .optional(),
});
export type Service = z.infer<typeof serviceSchema>;

/** core/v1 Pod: what push.ts needs to reach a proxy's admin API. */
export const podSchema = z.looseObject({
  metadata: objectMetaSchema,
  spec: z
    .looseObject({
      containers: z
        .array(
          z.looseObject({
            name: z.string(),
            ports: z
              .array(z.looseObject({ name: z.string().optional(), containerPort: z.number().int() }))
              .optional(),
          }),
        )
        .optional(),
    })
    .optional(),
  status: z
    .looseObject({
      phase: z.string().optional(),
      podIP: z.string().optional(),
      conditions: z.array(z.looseObject({ type: z.string(), status: z.string() })).optional(),
      containerStatuses: z.array(z.looseObject({ restartCount: z.number().int().optional() })).optional(),
    })
    .optional(),
});
export type Pod = z.infer<typeof podSchema>;

/** `namespace/name`, the key of the work queue and of informer caches. */
export function keyOf(o: { metadata: { name: string; namespace?: string | undefined } }): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** Splits a `namespace/name` key. @throws {Error} for a key without a namespace. */
export function splitKey(key: string): { namespace: string; name: string } {
  const at = key.indexOf('/');
  if (at <= 0) throw new Error(`key ${JSON.stringify(key)} is not namespace/name`);
  return { namespace: key.slice(0, at), name: key.slice(at + 1) };
}
