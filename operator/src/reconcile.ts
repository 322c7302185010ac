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
import {
  DOWN_AFTER_MS,
  FAILOVER_TIMEOUT_MS,
  PARALLEL_SYNCS,
  SENTINEL_PORT,
  SERVER_PORT,
  STORE_LABEL,
  storeNames,
  storeObjects,
  storeSecretFor,
  storeSettingsFor,
} from './build/session-store-objects.ts';
import {
  type Observations,
  readyOf,
  type StoreObservation,
  statusFor,
  storeReasonForPool,
} from './build/status-for.ts';
import { planStoreWiring, type StorePod } from './build/store-wiring.ts';
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
import { carryOutStoreActions, describeAction, observeStore, type StoreIoOptions } from './store-io.ts';

/**
 * What a reconcile asks of the queue: nothing, or to come back later.
 * `done` with `afterMs`: all is well, look again then (a session store's
 * roles can change with no Kubernetes event: a Sentinel failover).
 */
export type ReconcileResult =
  | { outcome: 'done'; afterMs?: number }
  | { outcome: 'invalid' }
  /** Without `afterMs`: the queue's per-key backoff, but never later than `atMostMs`. */
  | { outcome: 'requeue'; afterMs?: number; atMostMs?: number };

/** Next look at a session store that is not settled (not Ready, or actions just sent), ms. */
export const STORE_UNSETTLED_RECHECK_MS = 2_000;
/**
 * Next look at a settled session store, ms: how late the status learns of a
 * failover, and how soon a primary that restarted in place (no pod event)
 * is failed over (Sentinel alone takes about 25 s).
 */
export const STORE_SETTLED_RECHECK_MS = 10_000;

export interface ReconcilerDeps {
  client: KubeClient;
  pools: Informer<KubeObject>;
  slices: Informer<EndpointSlice>;
  pods: Informer<Pod>;
  /** Pods labelled `tether.dev/session-store`. */
  storePods: Informer<Pod>;
  /** Connect and per-command timeout towards session store pods, ms. */
  storeTimeoutMs: number;
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
  /** Last known store primary (pod name) per pool: status omits it during a failover. */
  private readonly primaries = new Map<string, string>();
  /** Session store password per pool, once read from (or written to) its Secret. */
  private readonly storePasswords = new Map<string, string>();

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
    let store: StoreObservation | undefined;
    if (pool.spec.sessionStore.enabled) store = await this.reconcileStore(key, pool, signal);
    else if (previous?.sessionStore !== undefined) await this.removeStore(pool, signal);

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
      store,
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
    const primary = store?.plan.primary?.pod;
    if (primary !== undefined) {
      const was = this.primaries.get(key) ?? previous?.sessionStore?.primary?.pod;
      if (was !== undefined && was !== primary) {
        void this.d.events.record(
          target,
          'Normal',
          'SessionStorePrimaryChanged',
          `the primary is now ${primary} (was ${was}): ${store?.plan.source === 'bootstrap' ? 'chosen anew by the operator' : 'a Sentinel failover'}`,
        );
      }
      this.primaries.set(key, primary);
    }
    const storeSettled =
      store === undefined ||
      (store.plan.ready && store.plan.actions.length === 0 && store.errors.length === 0);
    if (obs.proxies.inSync < obs.proxies.desired) {
      this.d.log('debug', 'proxies not in sync yet', { pool: key, errors: obs.pushErrors.slice(0, 3) });
      // A session store is looked at on its own schedule, whatever the proxies' backoff.
      if (store === undefined) return { outcome: 'requeue' };
      return storeSettled
        ? { outcome: 'requeue', atMostMs: STORE_SETTLED_RECHECK_MS }
        : { outcome: 'requeue', afterMs: STORE_UNSETTLED_RECHECK_MS };
    }
    if (store !== undefined) {
      return {
        outcome: 'done',
        afterMs: storeSettled ? STORE_SETTLED_RECHECK_MS : STORE_UNSETTLED_RECHECK_MS,
      };
    }
    return { outcome: 'done' };
  }

  /**
   * The session store: its Secret (password kept, Sentinel IPs current),
   * its objects, then observe every pod by IP, plan the wiring and carry
   * it out. Store I/O failures are the plan's errors, never a throw: the
   * next pass retries.
   */
  private async reconcileStore(
    key: string,
    pool: StickyBackendPool,
    signal?: AbortSignal,
  ): Promise<StoreObservation> {
    const names = storeNames(pool.metadata.name);
    const settings = storeSettingsFor(pool);
    const password = await this.ensureStorePassword(pool, signal);
    const { servers, sentinels } = this.storePodsOf(pool.metadata.namespace, pool.metadata.name);
    const sentinelIps = sentinels.flatMap((p) => (p.ip === undefined ? [] : [p.ip]));
    await this.applyOwned(key, storeSecretFor(pool, password, sentinelIps), signal);
    for (const obj of storeObjects(pool, this.d.settings.valkeyImage))
      await this.applyOwned(key, obj, signal);
    const io: StoreIoOptions = {
      password,
      masterName: settings.masterName,
      serverPort: SERVER_PORT,
      sentinelPort: SENTINEL_PORT,
      timeoutMs: this.d.storeTimeoutMs,
      monitor: {
        quorum: settings.quorum,
        downAfterMs: DOWN_AFTER_MS,
        failoverTimeoutMs: FAILOVER_TIMEOUT_MS,
        parallelSyncs: PARALLEL_SYNCS,
      },
    };
    const observed = await observeStore(servers, sentinels, io);
    const plan = planStoreWiring(
      {
        masterName: settings.masterName,
        servers: settings.servers,
        sentinels: settings.sentinels,
        quorum: settings.quorum,
        minReplicasToWrite: settings.minReplicasToWrite,
        serverPort: SERVER_PORT,
        downAfterMs: DOWN_AFTER_MS,
        failoverTimeoutMs: FAILOVER_TIMEOUT_MS,
        parallelSyncs: PARALLEL_SYNCS,
      },
      observed,
    );
    let errors: string[] = [];
    if (plan.actions.length > 0 && !signal?.aborted) {
      this.d.log('info', 'wiring the session store', {
        pool: key,
        primary: plan.primary?.pod,
        source: plan.source,
        actions: plan.actions.map(describeAction),
      });
      errors = await carryOutStoreActions(plan.actions, io);
      if (errors.length > 0) this.d.log('warn', 'session store actions failed', { pool: key, errors });
    }
    return { secretName: names.secret, masterName: settings.masterName, plan, errors };
  }

  /** Live (not deleting) store pods of a pool, by component, with their StatefulSet ordinals. */
  private storePodsOf(ns: string, pool: string): { servers: StorePod[]; sentinels: StorePod[] } {
    const names = storeNames(pool);
    const servers: StorePod[] = [];
    const sentinels: StorePod[] = [];
    for (const p of this.d.storePods.cache.values()) {
      if (p.metadata.namespace !== ns || p.metadata.labels?.[STORE_LABEL] !== pool) continue;
      if (p.metadata.deletionTimestamp) continue;
      const phase = p.status?.phase;
      if (phase === 'Succeeded' || phase === 'Failed') continue;
      for (const [prefix, list] of [
        [names.servers, servers],
        [names.sentinels, sentinels],
      ] as const) {
        const m = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}-(\\d+)$`).exec(p.metadata.name);
        if (m) list.push({ name: p.metadata.name, ordinal: Number(m[1]), ip: p.status?.podIP || undefined });
      }
    }
    const byOrdinal = (a: StorePod, b: StorePod) => a.ordinal - b.ordinal;
    return { servers: servers.sort(byOrdinal), sentinels: sentinels.sort(byOrdinal) };
  }

  /** The store's password: from its Secret when there, else made now (and written by the next apply). */
  private async ensureStorePassword(pool: StickyBackendPool, signal?: AbortSignal): Promise<string> {
    const key = `${pool.metadata.namespace}/${pool.metadata.name}`;
    const cached = this.storePasswords.get(key);
    if (cached !== undefined) return cached;
    const path = resourcePath(
      'v1',
      'secrets',
      pool.metadata.namespace,
      storeNames(pool.metadata.name).secret,
    );
    let password: string | undefined;
    try {
      const s = await this.d.client.request<{ data?: Record<string, string> }>('GET', path, { signal });
      const b64 = s.data?.password;
      if (b64) password = Buffer.from(b64, 'base64').toString('utf8');
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    password ??= randomBytes(24).toString('base64url');
    this.storePasswords.set(key, password);
    return password;
  }

  /** The store was turned off: delete what it owned (the StatefulSets take their pods along). */
  private async removeStore(pool: StickyBackendPool, signal?: AbortSignal): Promise<void> {
    const uid = (pool.metadata as { uid?: string }).uid ?? '';
    const names = storeNames(pool.metadata.name);
    for (const [apiVersion, plural, name] of [
      ['apps/v1', 'statefulsets', names.servers],
      ['apps/v1', 'statefulsets', names.sentinels],
      ['v1', 'services', names.servers],
      ['v1', 'services', names.sentinels],
      ['v1', 'configmaps', names.configMap],
      ['policy/v1', 'poddisruptionbudgets', names.pdb],
      ['v1', 'secrets', names.secret],
    ] as const) {
      const path = resourcePath(apiVersion, plural, pool.metadata.namespace, name);
      try {
        const o = await this.d.client.request<KubeObject>('GET', path, { signal });
        if (o.metadata.ownerReferences?.some((r) => r.uid === uid)) {
          await this.d.client.request('DELETE', path, { signal, body: { propagationPolicy: 'Background' } });
        }
      } catch (err) {
        if (statusOf(err) !== 404) throw err;
      }
    }
    this.storePasswords.delete(`${pool.metadata.namespace}/${pool.metadata.name}`);
    this.d.log('info', 'session store turned off: deleted its objects', {
      pool: `${pool.metadata.namespace}/${pool.metadata.name}`,
    });
  }

  /** Drops what this process remembers of a pool (deleted, or leadership lost). */
  forget(key: string): void {
    this.revisions.delete(key);
    this.tokens.delete(key);
    this.storePasswords.delete(key);
    this.primaries.delete(key);
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
    // The session store's notable transitions: Ready changes, and a new primary (a failover).
    const storeBefore = last?.sessionStore;
    const storeAfter = next.sessionStore;
    if (storeAfter !== undefined) {
      const ready = (s: typeof storeAfter | undefined) => s?.conditions?.find((c) => c.type === 'Ready');
      const was = ready(storeBefore);
      const now = ready(storeAfter);
      if (now !== undefined && (was?.status !== now.status || was.reason !== now.reason)) {
        void this.d.events.record(
          target,
          now.status === 'True' ? 'Normal' : 'Warning',
          storeReasonForPool(now.reason),
          now.message,
        );
      }
    }
  }
}

/** What the proxy cannot serve, or the spec may not combine: one `spec.<field>: …` line each. */
export function unsupported(pool: StickyBackendPool): string[] {
  // The proxy refuses these tables (400); say so on the pool instead of failing every push.
  const problems = proxySupportProblems({ affinity: pool.spec.affinity } as Parameters<
    typeof proxySupportProblems
  >[0]);
  // Pins kept in the store need one: without it the managed proxies get no --session-store and
  // would refuse every table. The CRD's CEL rules say the same; this covers a CRD that predates them.
  const store = pool.spec.sessionStore.enabled;
  if (pool.spec.affinity.type === 'Learn' && !store) {
    problems.push(
      'affinity.type: Learn needs sessionStore.enabled: true (the learned pins live in the session store)',
    );
  }
  if (pool.spec.sessionStore.persistPins && !store) {
    problems.push(
      'sessionStore.persistPins: true needs sessionStore.enabled: true (the pins live in the session store)',
    );
  }
  return problems.map((p) => `spec.${p}`);
}

function stripUndefined(v: unknown): unknown {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}
