/**
 * The session store's wiring, decided from observations: which server is
 * the primary, which commands bring the others and the Sentinels in line,
 * and how healthy the store is. Pure: store-io.ts observes (each pod's IP,
 * `INFO replication`, each Sentinel's view) and carries the actions out.
 *
 * Who is primary (the rule established Redis operators follow):
 * - Sentinels are the authority once they monitor: the address a majority
 *   of the desired Sentinels reports (`SENTINEL MASTER`) is the primary, as
 *   long as a live server pod has it and says `role:master`. When the
 *   Sentinels report a dead address (the primary's pod is gone), nothing is
 *   changed: that is Sentinel's failover to do.
 * - With no Sentinel monitoring anything (first start, or every Sentinel
 *   replaced), the operator bootstraps: the master that already has linked
 *   replicas, else the server with the highest replication offset (data
 *   first), else pod 0 — so on first start, pod 0. It waits for every
 *   server to answer first, so pod 0 is not skipped because it started late.
 * - Some Sentinels monitoring but no majority: the most reported address
 *   when it is a live master (replaced Sentinels join it), else wait.
 *
 * Repairs: a server that is not a replica of the primary gets `REPLICAOF`
 * (a replaced pod comes back as an empty lone master: it joins as a
 * replica); a Sentinel monitoring nothing, or a dead address, gets
 * `SENTINEL MONITOR` for the primary; a Sentinel that still knows dead
 * replica or Sentinel addresses gets `SENTINEL RESET`, one Sentinel per
 * pass and only while every other knows its peers (Redis' advice: reset
 * one at a time, so a failover always finds a majority). Nothing is sent
 * to Sentinels while any of them reports the primary down or a failover.
 * A primary whose process restarted (it comes back detached, see
 * session-store-objects.ts) gets an immediate `SENTINEL FAILOVER`.
 */

/** A pod of the store, as the Pod informer shows it (deleting pods left out). */
export interface StorePod {
  name: string;
  /** StatefulSet ordinal (the `-N` suffix). */
  ordinal: number;
  /** Undefined until the pod has an IP. */
  ip: string | undefined;
}

/** One server's `INFO replication` and `CONFIG GET`. */
export interface ServerView {
  role: 'master' | 'slave';
  /** For a replica: the primary it follows. */
  masterHost?: string | undefined;
  masterPort?: number | undefined;
  /** For a replica: `master_link_status:up`. */
  linkUp: boolean;
  /** `master_repl_offset`, bytes. */
  offset: number;
  /** For a primary: its replicas' IPs with `state=online`. */
  onlineReplicas: string[];
  minReplicasToWrite: number | undefined;
}

/** One Sentinel's view of the store's master name. */
export interface SentinelView {
  /** Undefined when this Sentinel monitors no master of that name. */
  master?:
    | {
        ip: string;
        port: number;
        /** e.g. `master`, `s_down`, `o_down`, `failover_in_progress`. */
        flags: string[];
        quorum: number;
        downAfterMs: number;
        failoverTimeoutMs: number;
        parallelSyncs: number;
      }
    | undefined;
  /** `ip:port` of the replicas it knows. */
  replicas: string[];
  /** IPs of the other Sentinels it knows. */
  sentinels: string[];
}

/** What an observation found for one pod: a view, or why there is none. */
export type Observed<V> = StorePod & { view?: V | undefined; error?: string | undefined };

export interface StoreObservations {
  servers: Observed<ServerView>[];
  sentinels: Observed<SentinelView>[];
}

/** What the pool asks for. */
export interface WiringSpec {
  masterName: string;
  /** 1 + replicas. */
  servers: number;
  sentinels: number;
  quorum: number;
  minReplicasToWrite: number;
  serverPort: number;
  downAfterMs: number;
  failoverTimeoutMs: number;
  parallelSyncs: number;
}

export type StoreAction =
  /** `REPLICAOF ip port`, or `REPLICAOF NO ONE` when `primary` is undefined. */
  | { kind: 'replicaof'; pod: string; ip: string; primary: { ip: string; port: number } | undefined }
  | { kind: 'config-set'; pod: string; ip: string; parameter: string; value: string }
  /** `SENTINEL REMOVE` first when `replace`, then `SENTINEL MONITOR` + `SENTINEL SET` of every setting. */
  | {
      kind: 'sentinel-monitor';
      pod: string;
      ip: string;
      primary: { ip: string; port: number };
      replace: boolean;
    }
  | { kind: 'sentinel-set'; pod: string; ip: string; option: string; value: string }
  | { kind: 'sentinel-reset'; pod: string; ip: string }
  /** `SENTINEL FAILOVER`: promote a replica now (the primary came back detached after a restart). */
  | { kind: 'sentinel-failover'; pod: string; ip: string };

/** Why the store is not Ready (the `Degraded` condition's reason). */
export type StoreReason =
  | 'StoreReady'
  | 'StoreNotReady'
  | 'FailoverInProgress'
  | 'ReplicasMissing'
  | 'SentinelsDisagree';

export interface StorePlan {
  /** The primary the actions wire to; undefined while waiting (failover, pods missing). */
  primary: { pod: string; ip: string } | undefined;
  /** How the primary was chosen. */
  source: 'sentinels' | 'bootstrap' | 'none';
  actions: StoreAction[];
  /** Role map for the status. */
  roles: {
    replicas: Array<{ pod: string; ip?: string; linked: boolean }>;
    sentinels: Array<{ pod: string; ip?: string; monitoring: boolean }>;
  };
  ready: boolean;
  reason: StoreReason;
  message: string;
}

const FAILING = new Set(['s_down', 'o_down', 'failover_in_progress', 'failover_state_select_slave']);

function hasIp<V>(p: Observed<V>): p is Observed<V> & { ip: string } {
  return p.ip !== undefined;
}

/**
 * The plan for one reconcile. Deterministic: same observations, same plan.
 *
 * Worked example (replicas 2, sentinels 3): the primary's pod store-0
 * (10.0.0.1) was deleted; the Sentinels promoted store-1 (10.0.0.2) and all
 * three report it; store-0 came back as 10.0.0.9, a lone empty master; the
 * Sentinels still list 10.0.0.1 as a (down) replica. Plan: `REPLICAOF
 * 10.0.0.2 6379` on store-0, and `SENTINEL RESET` on sentinel-0 (the next
 * passes reset the others, one each); not Ready: ReplicasMissing.
 */
export function planStoreWiring(spec: WiringSpec, o: StoreObservations): StorePlan {
  const servers = [...o.servers].sort((a, b) => a.ordinal - b.ordinal);
  const sentinels = [...o.sentinels].sort((a, b) => a.ordinal - b.ordinal);
  const liveServers = servers.filter(hasIp);
  const serverByIp = new Map(liveServers.map((s) => [s.ip, s]));
  const answering = liveServers.filter((s) => s.view !== undefined);
  const majority = Math.floor(spec.sentinels / 2) + 1;

  // Votes: which address each answering Sentinel monitors.
  const votes = new Map<string, number>();
  for (const s of sentinels) {
    const m = s.view?.master;
    if (m !== undefined) votes.set(`${m.ip}:${m.port}`, (votes.get(`${m.ip}:${m.port}`) ?? 0) + 1);
  }
  const ranked = [...votes].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const failing = sentinels.some((s) => s.view?.master?.flags.some((f) => FAILING.has(f)) ?? false);

  let primary: (Observed<ServerView> & { ip: string }) | undefined;
  let source: StorePlan['source'] = 'none';
  let waitReason: { reason: StoreReason; message: string } | undefined;
  let failover: StoreAction | undefined;

  const top = ranked[0];
  if (top === undefined) {
    if (answering.length < spec.servers) {
      waitReason = {
        reason: 'StoreNotReady',
        message: `${answering.length}/${spec.servers} servers answer; waiting for all before choosing the first primary`,
      };
    } else {
      primary = bootstrapPrimary(answering);
      source = 'bootstrap';
    }
  } else {
    const [addr, count] = top;
    const ip = addr.slice(0, addr.lastIndexOf(':'));
    const pod = serverByIp.get(ip);
    if (pod === undefined) {
      // The Sentinels monitor a dead address. They fail over when a replica they know lives;
      // when none does (every server replaced), nobody will: bootstrap anew.
      const knownAlive = sentinels.some((s) =>
        (s.view?.replicas ?? []).some((r) => serverByIp.has(r.slice(0, r.lastIndexOf(':')))),
      );
      if (knownAlive) {
        waitReason = {
          reason: 'FailoverInProgress',
          message: `the Sentinels report primary ${addr}, which no server pod has; waiting for their failover`,
        };
      } else if (answering.length < spec.servers) {
        waitReason = {
          reason: 'StoreNotReady',
          message: `the Sentinels monitor ${addr}, which no server pod has, and ${answering.length}/${spec.servers} servers answer`,
        };
      } else {
        primary = bootstrapPrimary(answering);
        source = 'bootstrap';
      }
    } else if (pod.view?.role !== 'master') {
      // A primary whose process restarted comes back detached (a replica of itself). Sentinel
      // would fail it over only after down-after + 2 INFO periods (about 25 s of refused
      // writes); `SENTINEL FAILOVER` starts that at once, and picks the best replica.
      const restarted = pod.view !== undefined && pod.view.masterHost === pod.ip;
      const asked =
        restarted && !failing ? sentinels.find((x) => x.view?.master?.ip === ip && x.ip) : undefined;
      if (asked?.ip !== undefined) failover = { kind: 'sentinel-failover', pod: asked.name, ip: asked.ip };
      waitReason = {
        reason: 'FailoverInProgress',
        message: restarted
          ? `primary ${pod.name} (${addr}) restarted detached; the Sentinels fail it over`
          : `the Sentinels report primary ${pod.name} (${addr}), which is not a master (yet)`,
      };
    } else if (count < majority && (ranked[1]?.[1] ?? 0) === count) {
      waitReason = {
        reason: 'SentinelsDisagree',
        message: `Sentinels report different primaries: ${fmtVotes(ranked)}`,
      };
    } else {
      primary = pod;
      source = 'sentinels';
    }
  }

  const actions: StoreAction[] = failover === undefined ? [] : [failover];
  if (primary !== undefined) {
    const p = primary;
    if (source === 'bootstrap' && p.view?.role !== 'master') {
      actions.push({ kind: 'replicaof', pod: p.name, ip: p.ip, primary: undefined });
    }
    for (const s of answering) {
      if (s.name === p.name) continue;
      const v = s.view as ServerView;
      if (v.role !== 'slave' || v.masterHost !== p.ip || v.masterPort !== spec.serverPort) {
        actions.push({
          kind: 'replicaof',
          pod: s.name,
          ip: s.ip,
          primary: { ip: p.ip, port: spec.serverPort },
        });
      }
    }
  }
  for (const s of answering) {
    if (s.view?.minReplicasToWrite !== undefined && s.view.minReplicasToWrite !== spec.minReplicasToWrite) {
      actions.push({
        kind: 'config-set',
        pod: s.name,
        ip: s.ip,
        parameter: 'min-replicas-to-write',
        value: String(spec.minReplicasToWrite),
      });
    }
  }

  const liveSentinels = sentinels.filter(hasIp);
  const sentinelIps = new Set(liveSentinels.map((s) => s.ip));
  const serverAddrs = new Set(liveServers.map((s) => `${s.ip}:${spec.serverPort}`));
  const staleOf = (s: Observed<SentinelView> & { ip: string }): boolean => {
    const v = s.view;
    if (v?.master === undefined) return false;
    return (
      v.replicas.some((r) => !serverAddrs.has(r)) ||
      v.sentinels.some((x) => !sentinelIps.has(x) || x === s.ip)
    );
  };
  if (primary !== undefined && !failing) {
    const p = primary;
    const want = `${p.ip}:${spec.serverPort}`;
    for (const s of liveSentinels) {
      const m = s.view?.master;
      if (s.view === undefined) continue;
      if (m === undefined) {
        actions.push({
          kind: 'sentinel-monitor',
          pod: s.name,
          ip: s.ip,
          primary: { ip: p.ip, port: spec.serverPort },
          replace: false,
        });
        continue;
      }
      const at = `${m.ip}:${m.port}`;
      if (at !== want) {
        // A live address that is not the primary converges by itself (Sentinel hello messages
        // carry the newer epoch); a dead one, or any after a bootstrap, never would.
        if (source === 'bootstrap' || !serverAddrs.has(at)) {
          actions.push({
            kind: 'sentinel-monitor',
            pod: s.name,
            ip: s.ip,
            primary: { ip: p.ip, port: spec.serverPort },
            replace: true,
          });
        }
        continue;
      }
      const settings: Array<[string, number, number]> = [
        ['quorum', m.quorum, spec.quorum],
        ['down-after-milliseconds', m.downAfterMs, spec.downAfterMs],
        ['failover-timeout', m.failoverTimeoutMs, spec.failoverTimeoutMs],
        ['parallel-syncs', m.parallelSyncs, spec.parallelSyncs],
      ];
      for (const [option, have, wantValue] of settings) {
        if (have !== wantValue)
          actions.push({ kind: 'sentinel-set', pod: s.name, ip: s.ip, option, value: String(wantValue) });
      }
    }
    // One reset per pass, and only while no Sentinel monitoring the primary is still
    // rediscovering the others that do (hello messages every 2 s bring them back).
    const onPrimary = liveSentinels.filter(
      (s) => s.view?.master !== undefined && `${s.view.master.ip}:${s.view.master.port}` === want,
    );
    const onPrimaryIps = new Set(onPrimary.map((s) => s.ip));
    const rediscovering = onPrimary.some(
      (s) => (s.view?.sentinels ?? []).filter((x) => onPrimaryIps.has(x)).length < onPrimary.length - 1,
    );
    const stale = onPrimary.find(staleOf);
    if (stale !== undefined && !rediscovering)
      actions.push({ kind: 'sentinel-reset', pod: stale.name, ip: stale.ip });
  }

  // Role map and health.
  const p = primary;
  const replicaRoles = servers
    .filter((s) => s.name !== p?.name)
    .map((s) => ({
      pod: s.name,
      ...(s.ip === undefined ? {} : { ip: s.ip }),
      linked:
        p !== undefined &&
        s.view?.role === 'slave' &&
        s.view.masterHost === p.ip &&
        s.view.linkUp &&
        (p.view?.onlineReplicas.includes(s.ip as string) ?? false),
    }));
  const sentinelRoles = sentinels.map((s) => ({
    pod: s.name,
    ...(s.ip === undefined ? {} : { ip: s.ip }),
    monitoring:
      p !== undefined &&
      s.view?.master !== undefined &&
      s.view.master.ip === p.ip &&
      s.view.master.port === spec.serverPort,
  }));
  const roles = { replicas: replicaRoles, sentinels: sentinelRoles };

  let reason: StoreReason = 'StoreReady';
  let message = '';
  if (waitReason !== undefined) {
    ({ reason, message } = waitReason);
  } else if (p === undefined) {
    reason = 'StoreNotReady';
    message = 'no primary yet';
  } else if (liveServers.length < spec.servers || answering.length < liveServers.length) {
    reason = 'StoreNotReady';
    message = `${answering.length}/${spec.servers} servers answer (${notAnswering(servers)})`;
  } else if (failing) {
    reason = 'FailoverInProgress';
    message = 'a Sentinel reports the primary down or a failover running';
  } else if (replicaRoles.some((r) => !r.linked) || replicaRoles.length < spec.servers - 1) {
    const linked = replicaRoles.filter((r) => r.linked).length;
    reason = 'ReplicasMissing';
    message = `${linked}/${spec.servers - 1} replicas linked to primary ${p.name}`;
  } else {
    const agreeing = liveSentinels.filter(
      (s) =>
        sentinelRoles.find((r) => r.pod === s.name)?.monitoring === true &&
        !staleOf(s) &&
        (s.view?.sentinels.length ?? 0) === liveSentinels.length - 1 &&
        (s.view?.replicas.length ?? 0) === spec.servers - 1,
    ).length;
    if (agreeing < spec.sentinels) {
      reason = 'SentinelsDisagree';
      message = `${agreeing}/${spec.sentinels} Sentinels monitor primary ${p.name} and know exactly the live replicas and Sentinels`;
    } else {
      message = `primary ${p.name}, ${spec.servers - 1} replicas linked, ${spec.sentinels} Sentinels agree`;
    }
  }
  return {
    primary: p === undefined ? undefined : { pod: p.name, ip: p.ip },
    source,
    actions,
    roles,
    ready: reason === 'StoreReady',
    reason,
    message,
  };
}

/** The first primary: a master with linked replicas, else the highest offset, else the lowest ordinal. */
function bootstrapPrimary(
  answering: Array<Observed<ServerView> & { ip: string }>,
): Observed<ServerView> & { ip: string } {
  const score = (s: Observed<ServerView>) => {
    const v = s.view as ServerView;
    return v.role === 'master' ? v.onlineReplicas.length : -1;
  };
  return [...answering].sort(
    (a, b) =>
      score(b) - score(a) ||
      (b.view as ServerView).offset - (a.view as ServerView).offset ||
      a.ordinal - b.ordinal,
  )[0] as Observed<ServerView> & { ip: string };
}

function fmtVotes(ranked: Array<[string, number]>): string {
  return ranked.map(([a, n]) => `${a} (${n})`).join(', ');
}

function notAnswering(servers: Observed<ServerView>[]): string {
  const bad = servers
    .filter((s) => s.view === undefined)
    .map((s) => `${s.name}: ${s.ip === undefined ? 'no IP yet' : (s.error ?? 'no answer')}`);
  return bad.length === 0 ? 'pods missing' : bad.join('; ');
}
