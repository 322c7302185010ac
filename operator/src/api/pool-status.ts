/**
 * `status` of a StickyBackendPool: written by the operator only (status
 * subresource), so its schema lives here rather than in the proxy.
 */
import { z } from 'zod';

/** A `metav1.Condition`, as kubebuilder operators write them. */
export const conditionSchema = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(['True', 'False', 'Unknown']),
  observedGeneration: z.number().int().min(0).optional(),
  lastTransitionTime: z.string().min(1),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});

const podAddressSchema = z.object({
  pod: z.string().max(253),
  /** `ip` of the pod, absent until it has one. */
  ip: z.string().max(64).optional(),
});

/** The replicated session store's part of the status: where apps find it, who holds which role, its health. */
export const sessionStoreStatusSchema = z.object({
  /** The Secret with the connection (keys of proxy/src/session-store/connection.ts), for apps to mount. */
  secretName: z.string().max(253),
  /** Sentinel's name for the primary. */
  masterName: z.string().max(128),
  /** The server pod the writes go to, absent while unknown (first start, failover). */
  primary: podAddressSchema.optional(),
  replicas: z
    .array(podAddressSchema.extend({ linked: z.boolean() }))
    .max(16)
    .optional(),
  sentinels: z
    .array(podAddressSchema.extend({ monitoring: z.boolean() }))
    .max(16)
    .optional(),
  /** `Ready` and `Degraded`, with reasons StoreReady, StoreNotReady, FailoverInProgress, ReplicasMissing, SentinelsDisagree. */
  conditions: z.array(conditionSchema).max(4).optional(),
});

export const poolStatusSchema = z.object({
  /** `metadata.generation` of the spec this status describes. */
  observedGeneration: z.number().int().min(0).optional(),
  conditions: z.array(conditionSchema).max(8).optional(),
  endpoints: z
    .object({
      ready: z.number().int().min(0),
      draining: z.number().int().min(0),
    })
    .optional(),
  proxies: z
    .object({
      desired: z.number().int().min(0),
      inSync: z.number().int().min(0),
    })
    .optional(),
  /** Revision of the last routing table built; never goes down (see build/revision.ts). */
  routingTableRevision: z.number().int().min(0).optional(),
  /** Hash of the last table's content, so a reconcile that changes nothing keeps the revision. */
  routingTableHash: z.string().max(64).optional(),
  /** Present while `spec.sessionStore.enabled`. */
  sessionStore: sessionStoreStatusSchema.optional(),
});

export type Condition = z.infer<typeof conditionSchema>;
export type PoolStatus = z.infer<typeof poolStatusSchema>;
export type SessionStoreStatus = z.infer<typeof sessionStoreStatusSchema>;
