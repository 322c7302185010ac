/**
 * The status a reconcile writes, from what it observed: conditions `Ready`,
 * `Progressing`, `Degraded` with reasons (kubebuilder's convention), counts,
 * the table's revision, and `observedGeneration`. Pure: the clock is an input.
 */
import type { Condition, PoolStatus, SessionStoreStatus } from '../api/index.ts';
import type { StorePlan } from './store-wiring.ts';

/** What one reconcile saw and did. */
export interface Observations {
  generation: number;
  /** Set when the spec is invalid: the message names the field. */
  invalid?: string | undefined;
  /** Set when the backend yields no table: Service or its port missing. */
  backendProblem?: { reason: string; message: string } | undefined;
  endpoints: { ready: number; draining: number };
  /** Proxy pods that should hold the table, and those that report its revision. */
  proxies: { desired: number; inSync: number };
  /** One line per proxy a push failed for (first few). */
  pushErrors: string[];
  revision: number | undefined;
  hash: string | undefined;
  /** Sidecar pools: no pods labelled for the pool is not an error of the operator's. */
  mode: 'Managed' | 'Sidecar';
  /** The session store's plan and what failed carrying it out; absent when the store is off. */
  store?: StoreObservation | undefined;
}

/** What a reconcile saw of the pool's session store. */
export interface StoreObservation {
  secretName: string;
  masterName: string;
  plan: StorePlan;
  /** Actions that failed (first few). */
  errors: string[];
}

type CondInput = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

/** The three conditions for the observations, before transition times. */
export function conditionsFor(o: Observations): CondInput[] {
  const ok = (type: string, status: 'True' | 'False', reason: string, message: string): CondInput => ({
    type,
    status,
    reason,
    message,
  });
  if (o.invalid !== undefined) {
    return [
      ok('Ready', 'False', 'InvalidSpec', o.invalid),
      ok('Progressing', 'False', 'InvalidSpec', 'fix the spec; nothing is pushed meanwhile'),
      ok('Degraded', 'True', 'InvalidSpec', o.invalid),
    ];
  }
  if (o.backendProblem !== undefined) {
    const { reason, message } = o.backendProblem;
    return [
      ok('Ready', 'False', reason, message),
      ok('Progressing', 'False', reason, message),
      ok('Degraded', 'True', reason, message),
    ];
  }
  const { desired, inSync } = o.proxies;
  const pushing = inSync < desired;
  const progressing = pushing
    ? ok(
        'Progressing',
        'True',
        'PushingRoutingTable',
        `${inSync}/${desired} proxies hold revision ${o.revision}`,
      )
    : ok('Progressing', 'False', 'AsExpected', `all ${desired} proxies hold revision ${o.revision}`);
  const store = o.store?.plan;
  const degraded =
    o.pushErrors.length > 0
      ? ok('Degraded', 'True', 'PushFailed', o.pushErrors.slice(0, 3).join('; '))
      : store !== undefined && !store.ready
        ? ok('Degraded', 'True', storeReasonForPool(store.reason), `session store: ${store.message}`)
        : ok('Degraded', 'False', 'AsExpected', 'no errors');
  let ready: CondInput;
  if (o.endpoints.ready === 0) {
    ready = ok(
      'Ready',
      'False',
      'NoReadyEndpoints',
      `the backend has no ready endpoints (${o.endpoints.draining} draining); the proxies answer 503`,
    );
  } else if (desired === 0) {
    ready = ok(
      'Ready',
      'False',
      'NoProxies',
      o.mode === 'Sidecar'
        ? 'no running pod is labelled for this pool (tether.dev/pool) with a proxy sidecar'
        : 'no managed proxy pod is running yet',
    );
  } else if (inSync === 0) {
    ready = ok('Ready', 'False', 'ProxiesNotInSync', `no proxy holds revision ${o.revision} yet`);
  } else {
    ready = ok(
      'Ready',
      'True',
      'RoutingTableServed',
      `${inSync}/${desired} proxies serve revision ${o.revision} with ${o.endpoints.ready} ready endpoints`,
    );
  }
  return [ready, progressing, degraded];
}

/**
 * The status to write. A condition keeps its `lastTransitionTime` while its
 * status is unchanged (so "since when not Ready" stays true).
 *
 * @param previous - the pool's current status (for transition times and the revision kept on invalid specs).
 * @param now - RFC 3339 time of this reconcile.
 */
export function statusFor(o: Observations, previous: PoolStatus | undefined, now: string): PoolStatus {
  const before = new Map((previous?.conditions ?? []).map((c) => [c.type, c]));
  const conditions = conditionsFor(o).map((c): Condition => {
    const prev = before.get(c.type);
    return {
      ...c,
      observedGeneration: o.generation,
      lastTransitionTime: prev !== undefined && prev.status === c.status ? prev.lastTransitionTime : now,
    };
  });
  const revision = o.revision ?? previous?.routingTableRevision;
  const hash = o.hash ?? previous?.routingTableHash;
  return {
    observedGeneration: o.generation,
    conditions,
    endpoints: o.endpoints,
    proxies: o.proxies,
    ...(revision === undefined ? {} : { routingTableRevision: revision }),
    ...(hash === undefined ? {} : { routingTableHash: hash }),
    ...(o.store === undefined
      ? {}
      : { sessionStore: storeStatusFor(o.store, o.generation, previous?.sessionStore, now) }),
  };
}

/** A store reason as the pool (conditions, Events) says it: `StoreNotReady` → `SessionStoreNotReady`. */
export function storeReasonForPool(reason: string): string {
  return `SessionStore${reason.replace(/^Store/, '')}`;
}

/**
 * `status.sessionStore`: the Secret's name, the role map and `Ready` /
 * `Degraded` (kubebuilder's pair: exactly one of them True). Transition
 * times kept while a condition's status is unchanged.
 */
export function storeStatusFor(
  s: StoreObservation,
  generation: number,
  previous: SessionStoreStatus | undefined,
  now: string,
): SessionStoreStatus {
  const { plan } = s;
  const message =
    s.errors.length > 0 ? `${plan.message}; failed: ${s.errors.slice(0, 3).join('; ')}` : plan.message;
  const before = new Map((previous?.conditions ?? []).map((c) => [c.type, c]));
  const cond = (type: string, status: 'True' | 'False'): Condition => {
    const prev = before.get(type);
    return {
      type,
      status,
      reason: plan.reason,
      message,
      observedGeneration: generation,
      lastTransitionTime: prev !== undefined && prev.status === status ? prev.lastTransitionTime : now,
    };
  };
  return {
    secretName: s.secretName,
    masterName: s.masterName,
    ...(plan.primary === undefined ? {} : { primary: { pod: plan.primary.pod, ip: plan.primary.ip } }),
    replicas: plan.roles.replicas,
    sentinels: plan.roles.sentinels,
    conditions: [
      cond('Ready', plan.ready ? 'True' : 'False'),
      cond('Degraded', plan.ready ? 'False' : 'True'),
    ],
  };
}

/** `Ready` of a status, for events: the transitions worth an Event. */
export function readyOf(s: PoolStatus | undefined): { status: string; reason: string } | undefined {
  const c = s?.conditions?.find((x) => x.type === 'Ready');
  return c === undefined ? undefined : { status: c.status, reason: c.reason };
}
