/**
 * Reconcile one pool, level-triggered (kubebuilder's shape): re-read the
 * world from the informer caches, build with the pure builders, then carry
 * it out — apply owned objects → push the table → write status. Idempotent;
 * an invalid spec is a status, not a throw; API failures throw (the
 * controller requeues with backoff).
 */

import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { checkSpecDurations } from '../../proxy/src/api/pool-spec.ts';
import { proxySupportProblems } from '../../proxy/src/support.ts';
import {
  API_VERSION,
  POOL_KIND,
  POOL_LABEL,
  POOL_PLURAL,
  type PoolStatus,
  type StickyBackendPool,
  stickyBackendPoolSchema,
} from './api/index.ts';
import {
  ADMIN_TOKEN_KEY,
  type DesiredSettings,
  desiredObjects,
  ownedNames,
  secretFor,
} from './build/desired-objects.ts';
import { nextRevision } from './build/revision.ts';
import {
  hashTableContent,
  isBackendProblem,
  routingTableFor,
  SERVICE_NAME_LABEL,
  withRevision,
} from './build/routing-table-for.ts';
import { type Observations, readyOf, statusFor } from './build/status-for.ts';
import { type KubeClient, resourcePath, statusOf } from './kube/client.ts';
import type { EventRecorder } from './kube/events.ts';
import type { Informer } from './kube/informer.ts';
import {
  type EndpointSlice,
  type KubeObject,
  type Pod,
  type Service,
  serviceSchema,
  splitKey,
} from './kube/types.ts';
import { type Pusher, proxyTargetsOf } from './push.ts';

/** What a reconcile asks of the queue: nothing, or to come back later. */
export type ReconcileResult = { outcome: 'done' | 'invalid' } | { outcome: 'requeue'; afterMs?: number };

export interface ReconcilerDeps {
  client: KubeClient;
  pools: Informer<KubeObject>;
  slices: Informer<EndpointSlice>;
  pods: Informer<Pod>;
  pusher: Pusher;
  events: EventRecorder;
  settings: DesiredSettings;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** How long an applied owned object is trusted before it is applied again (repairs manual edits). */
const REAPPLY_MS = 5 * 60_000;

export class Reconciler {
  private readonly d: ReconcilerDeps;
  /** Highest revision built per pool, and its content hash (revisions never go back; see build/revision.ts). */
  private readonly revisions = new Map<string, { revision: number; hash: string }>();
  private readonly tokens = new Map<string, string>();
  private readonly applied = new Map<string, { json: string; at: number }>();
  /** Last status written per pool: the informer's copy may lag behind it. */
  private readonly written = new Map<string, PoolStatus>();
  /** Pools (key@uid) whose managed objects were checked for removal after a switch to Sidecar. */
  private readonly cleaned = new Set<string>();

  constructor(d: ReconcilerDeps) {
    this.d = d;
  }

  async reconcile(key: string, signal?: AbortSignal): Promise<ReconcileResult> {
    const raw = this.d.pools.get(key);
    if (raw === undefined || raw.metadata.deletionTimestamp) {
      // Owned objects go with the pool (ownerReferences → garbage collector).
      this.forget(key);
      return { outcome: 'done' };
    }
    const generation = raw.metadata.generation ?? 0;
    const previous = (raw as { status?: PoolStatus }).status;
    const target = {
      apiVersion: API_VERSION,
      kind: POOL_KIND,
      name: raw.metadata.name,
      namespace: raw.metadata.namespace ?? '',
      uid: raw.metadata.uid,
    };

    // 1. Validate: the same schema the proxy uses, then what the proxy cannot serve.
    const parsed = stickyBackendPoolSchema.safeParse(raw);
    const invalid = parsed.success
      ? [...checkSpecDurations(parsed.data.spec).map((p) => `spec.${p}`), ...unsupported(parsed.data)]
      : parsed.error.issues.slice(0, 3).map((i) => `${i.path.join('.')}: ${i.message}`);
    if (!parsed.success || invalid.length > 0) {
      const obs: Observations = {
        generation,
        invalid: invalid.join('; '),
        endpoints: { ready: 0, draining: 0 },
        proxies: { desired: 0, inSync: 0 },
        pushErrors: [],
        revision: undefined,
        hash: undefined,
        mode: 'Managed',
      };
      await this.writeStatus(
        raw,
        previous,
        statusFor(obs, previous, new Date().toISOString()),
        target,
        signal,
      );
      return { outcome: 'invalid' };
    }
    const pool = parsed.data;
    const ns = pool.metadata.namespace;

    // 2. Owned objects: the Secret once, the managed proxies by server-side apply.
    const token = await this.ensureSecret(pool, signal);
    for (const obj of desiredObjects(pool, this.d.settings)) await this.applyOwned(key, obj, signal);
    if (pool.spec.proxy.mode === 'Sidecar') await this.removeManaged(pool, signal);

    // 3. Build the table.
    const svc = pool.spec.backend.service;
    let service: Service | undefined;
    if (svc !== undefined && typeof svc.port === 'number')
      service = await this.getService(ns, svc.name, signal);
    const slices = svc === undefined ? [] : this.slicesOf(ns, svc.name);
    const content = routingTableFor(pool, slices, service);
    const pods = this.podsOf(ns, pool.metadata.name);
    const targets = proxyTargetsOf(pods);
    const obs: Observations = {
      generation,
      endpoints: { ready: 0, draining: 0 },
      proxies: { desired: targets.length, inSync: 0 },
      pushErrors: [],
      revision: undefined,
      hash: undefined,
      mode: pool.spec.proxy.mode,
    };
    if (isBackendProblem(content)) {
      obs.backendProblem = content;
    } else {
      obs.endpoints = {
        ready: content.endpoints.filter((e) => e.state === 'Ready').length,
        draining: content.endpoints.filter((e) => e.state === 'Draining').length,
      };
      // 4. Push, outbidding once if a proxy holds a higher revision (a leader before us pushed it).
      const hash = hashTableContent(content);
      let proxies: number | undefined;
      for (let attempt = 0; attempt < 2; attempt++) {
        const mem = this.revisions.get(key);
        const revision = nextRevision(hash, {
          memory: mem?.revision,
          memoryHash: mem?.hash,
          status: { revision: previous?.routingTableRevision, hash: previous?.routingTableHash },
          proxies,
        });
        this.revisions.set(key, { revision, hash });
        const result = await this.d.pusher.push(
          withRevision(content, revision),
          hash,
          targets,
          token,
          signal,
        );
        obs.revision = revision;
        obs.hash = hash;
        obs.proxies.inSync = result.inSync;
        obs.pushErrors = result.errors;
        if (result.unauthorized) this.tokens.delete(key);
        if (result.higherRevision === undefined || result.higherRevision < revision) break;
        proxies = result.higherRevision;
      }
    }

    // 5. Status, and an Event when Ready changes.
    const next = statusFor(obs, previous, new Date().toISOString());
    await this.writeStatus(raw, previous, next, target, signal);
    if (obs.proxies.inSync < obs.proxies.desired) {
      this.d.log('debug', 'proxies not in sync yet', { pool: key, errors: obs.pushErrors.slice(0, 3) });
      return { outcome: 'requeue' };
    }
    return { outcome: 'done' };
  }

  /** Drops what this process remembers of a pool (deleted, or leadership lost). */
  forget(key: string): void {
    this.revisions.delete(key);
    this.tokens.delete(key);
    this.written.delete(key);
    for (const k of this.applied.keys()) if (k.startsWith(`${key}|`)) this.applied.delete(k);
  }

  private slicesOf(ns: string, service: string): EndpointSlice[] {
    const out: EndpointSlice[] = [];
    for (const s of this.d.slices.cache.values()) {
      if (s.metadata.namespace === ns && s.metadata.labels?.[SERVICE_NAME_LABEL] === service) out.push(s);
    }
    return out;
  }

  private podsOf(ns: string, pool: string): Pod[] {
    const out: Pod[] = [];
    for (const p of this.d.pods.cache.values()) {
      if (p.metadata.namespace === ns && p.metadata.labels?.[POOL_LABEL] === pool) out.push(p);
    }
    return out;
  }

  private async getService(ns: string, name: string, signal?: AbortSignal): Promise<Service | undefined> {
    try {
      return serviceSchema.parse(
        await this.d.client.request('GET', resourcePath('v1', 'services', ns, name), { signal }),
      );
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /** The pool's admin token; creates the Secret when absent (never replaces it). */
  private async ensureSecret(pool: StickyBackendPool, signal?: AbortSignal): Promise<string> {
    const key = `${pool.metadata.namespace}/${pool.metadata.name}`;
    const cached = this.tokens.get(key);
    if (cached !== undefined) return cached;
    const name = ownedNames(pool.metadata.name).secret;
    const path = resourcePath('v1', 'secrets', pool.metadata.namespace, name);
    let secret: { data?: Record<string, string> } | undefined;
    try {
      secret = await this.d.client.request('GET', path, { signal });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    if (secret === undefined) {
      try {
        secret = await this.d.client.request('POST', resourcePath('v1', 'secrets', pool.metadata.namespace), {
          body: secretFor(pool, randomBytes),
          signal,
        });
        this.d.log('info', 'created the pool Secret', { pool: key, secret: name });
      } catch (err) {
        if (statusOf(err) !== 409) throw err;
        secret = await this.d.client.request('GET', path, { signal });
      }
    }
    const b64 = secret?.data?.[ADMIN_TOKEN_KEY];
    if (!b64) throw new Error(`Secret ${pool.metadata.namespace}/${name} has no ${ADMIN_TOKEN_KEY}`);
    const token = Buffer.from(b64, 'base64').toString('utf8').trim();
    this.tokens.set(key, token);
    return token;
  }

  /** A pool switched from Managed to Sidecar: delete the proxy Deployment and Service it owned. */
  private async removeManaged(pool: StickyBackendPool, signal?: AbortSignal): Promise<void> {
    const uid = (pool.metadata as { uid?: string }).uid ?? '';
    const once = `${pool.metadata.namespace}/${pool.metadata.name}@${uid}`;
    if (this.cleaned.has(once)) return;
    const names = ownedNames(pool.metadata.name);
    for (const [apiVersion, plural, name] of [
      ['apps/v1', 'deployments', names.deployment],
      ['v1', 'services', names.service],
    ] as const) {
      const path = resourcePath(apiVersion, plural, pool.metadata.namespace, name);
      try {
        const o = await this.d.client.request<KubeObject>('GET', path, { signal });
        if (o.metadata.ownerReferences?.some((r) => r.uid === uid)) {
          await this.d.client.request('DELETE', path, { signal, body: { propagationPolicy: 'Background' } });
          this.d.log('info', 'deleted a managed proxy object of a Sidecar pool', {
            pool: once,
            object: `${plural}/${name}`,
          });
        }
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
    }
    this.cleaned.add(once);
  }

  private async applyOwned(key: string, obj: object, signal?: AbortSignal): Promise<void> {
    const o = obj as { apiVersion: string; kind: string; metadata: { name: string; namespace: string } };
    const cacheKey = `${key}|${o.kind}/${o.metadata.name}`;
    const json = JSON.stringify(obj);
    const prev = this.applied.get(cacheKey);
    if (prev !== undefined && prev.json === json && Date.now() - prev.at < REAPPLY_MS) return;
    const plural = `${o.kind.toLowerCase()}s`;
    await this.d.client.apply(
      resourcePath(o.apiVersion, plural, o.metadata.namespace, o.metadata.name),
      obj,
      signal,
    );
    this.applied.set(cacheKey, { json, at: Date.now() });
  }

  private async writeStatus(
    raw: KubeObject,
    previous: PoolStatus | undefined,
    next: PoolStatus,
    target: { apiVersion: string; kind: string; name: string; namespace: string; uid?: string | undefined },
    signal?: AbortSignal,
  ): Promise<void> {
    const key = `${raw.metadata.namespace}/${raw.metadata.name}`;
    const last = this.written.get(key) ?? previous;
    if (isDeepStrictEqual(stripUndefined(last), stripUndefined(next))) return;
    const { namespace, name } = splitKey(key);
    await this.d.client.apply(
      `${resourcePath(API_VERSION, POOL_PLURAL, namespace, name)}/status`,
      { apiVersion: API_VERSION, kind: POOL_KIND, metadata: { name, namespace }, status: next },
      signal,
    );
    this.written.set(key, next);
    const before = readyOf(last);
    const after = readyOf(next);
    if (after !== undefined && (before?.status !== after.status || before.reason !== after.reason)) {
      const msg = next.conditions?.find((c) => c.type === 'Ready')?.message ?? '';
      void this.d.events.record(target, after.status === 'True' ? 'Normal' : 'Warning', after.reason, msg);
    }
  }
}

function unsupported(pool: StickyBackendPool): string[] {
  // The proxy refuses these tables (400); say so on the pool instead of failing every push.
  return proxySupportProblems({ affinity: pool.spec.affinity } as Parameters<
    typeof proxySupportProblems
  >[0]).map((p) => `spec.${p}`);
}

function stripUndefined(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}
