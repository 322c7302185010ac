/**
 * The replicated session store a pool with `spec.sessionStore.enabled`
 * owns, as server-side-apply bodies: a StatefulSet of `1 + replicas` Valkey
 * servers and one of `sentinels` Sentinels, a headless Service for each, a
 * ConfigMap with both configs, a PodDisruptionBudget, and the Secret whose
 * keys are the contract of proxy/src/session-store/connection.ts. Pure: no
 * I/O, no clock; the password and the Sentinel pod IPs are inputs.
 *
 * Wiring (who replicates from whom, what the Sentinels monitor) is not in
 * these objects: every server starts detached (a replica of itself), and the operator wires
 * them by pod IP (build/store-wiring.ts), as established Redis operators do,
 * so nothing depends on cluster DNS.
 */
import { formatSentinelList } from '../../../proxy/src/session-store/connection.ts';
import { API_VERSION, POOL_KIND, type StickyBackendPool } from '../api/index.ts';

/** Label on every store pod: `tether.dev/session-store: <pool>` (the operator's Pod informer selects it). */
export const STORE_LABEL = 'tether.dev/session-store';
/** `server` or `sentinel`. */
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const SERVER_PORT = 6379;
export const SENTINEL_PORT = 26379;
/** Where the store's Secret appears in managed proxy pods (one file per key), passed as `--session-store`. */
export const STORE_SECRET_MOUNT = '/etc/tether/session-store';
/** The default `--valkey-image`. */
export const DEFAULT_VALKEY_IMAGE = 'docker.io/valkey/valkey:8.1';

/** Sentinel `down-after-milliseconds`: a primary silent this long is judged down (Redis' default is 30 s). */
export const DOWN_AFTER_MS = 5_000;
/** Sentinel `failover-timeout`, ms. */
export const FAILOVER_TIMEOUT_MS = 10_000;
/** Replicas resynchronised at once after a failover (Sentinel `parallel-syncs`). */
export const PARALLEL_SYNCS = 1;
/** Valkey `min-replicas-max-lag`, s: a replica silent longer does not count for `min-replicas-to-write`. */
export const MIN_REPLICAS_MAX_LAG_S = 10;
/** What `WAIT` may block in `Sync` mode, ms (the Secret's `waitTimeoutMs`). */
export const WAIT_TIMEOUT_MS = 500;

/** Names of a pool's store objects. */
export function storeNames(pool: string): {
  servers: string;
  sentinels: string;
  configMap: string;
  secret: string;
  pdb: string;
} {
  return {
    servers: `${pool}-store`,
    sentinels: `${pool}-sentinel`,
    configMap: `${pool}-store`,
    secret: `${pool}-session-store`,
    pdb: `${pool}-store`,
  };
}

/** Labels of a store component's pods: the selector of its StatefulSet and Service. */
export function storeLabels(pool: string, component: 'server' | 'sentinel'): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'tether-session-store',
    [COMPONENT_LABEL]: component,
    [STORE_LABEL]: pool,
  };
}

/** The numbers that follow from a pool's `sessionStore` block; see the README's "Session store". */
export interface StoreSettings {
  /** Sentinel's name for the primary: `<namespace>-<pool>`, cut to 128 characters. */
  masterName: string;
  servers: number;
  sentinels: number;
  /** Sentinels that must agree the primary is down: a majority of `sentinels`. */
  quorum: number;
  /**
   * Valkey `min-replicas-to-write`: half the replicas, rounded down. One
   * lost replica (of 2) never stops writes, while a primary cut off from
   * all its replicas refuses writes after {@link MIN_REPLICAS_MAX_LAG_S},
   * which bounds what a partitioned old primary accepts before Sentinel
   * promotes another. 0 (off) for 0 or 1 replica: otherwise losing the
   * only replica would stop every write.
   */
  minReplicasToWrite: number;
  /**
   * `WAIT` count in `Sync` mode: half the replicas, rounded up, so the
   * primary and these hold every write: a majority of the servers
   * (2 replicas → 1, 4 → 2).
   */
  waitReplicas: number;
  writeMode: 'Async' | 'Sync';
}

/** The numbers for a pool; pure arithmetic over the spec. */
export function storeSettingsFor(pool: StickyBackendPool): StoreSettings {
  const s = pool.spec.sessionStore;
  const raw = `${pool.metadata.namespace}-${pool.metadata.name}`.replace(/[^A-Za-z0-9._-]/g, '-');
  return {
    masterName: raw.slice(0, 128),
    servers: 1 + s.replicas,
    sentinels: s.sentinels,
    quorum: Math.floor(s.sentinels / 2) + 1,
    minReplicasToWrite: s.replicas >= 2 ? Math.floor(s.replicas / 2) : 0,
    waitReplicas: Math.ceil(s.replicas / 2),
    writeMode: s.writeMode,
  };
}

function ownerReference(pool: StickyBackendPool) {
  const uid = (pool.metadata as { uid?: string }).uid;
  if (!uid) throw new Error(`pool ${pool.metadata.name} has no uid (not read from the apiserver?)`);
  return {
    apiVersion: API_VERSION,
    kind: POOL_KIND,
    name: pool.metadata.name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

function metaFor(pool: StickyBackendPool, name: string, component?: 'server' | 'sentinel') {
  return {
    name,
    namespace: pool.metadata.namespace,
    labels: {
      'app.kubernetes.io/name': 'tether-session-store',
      ...(component === undefined ? {} : { [COMPONENT_LABEL]: component }),
      [STORE_LABEL]: pool.metadata.name,
      'app.kubernetes.io/managed-by': 'tether-operator',
    },
    ownerReferences: [ownerReference(pool)],
  };
}

/** `valkey.conf` of every server (the role is set at run time by the operator or Sentinel, never here). */
export function serverConfig(s: StoreSettings): string {
  return [
    `port ${SERVER_PORT}`,
    // Bound to the pod IP and password-protected (both given as arguments).
    'protected-mode no',
    // Append-only file on the pod's emptyDir: a server process that restarts inside its pod
    // comes back with its data, so replicas never resynchronise from an empty primary.
    'appendonly yes',
    'appendfsync everysec',
    'save ""',
    'replica-read-only yes',
    'repl-diskless-sync yes',
    `min-replicas-to-write ${s.minReplicasToWrite}`,
    `min-replicas-max-lag ${MIN_REPLICAS_MAX_LAG_S}`,
    '',
  ].join('\n');
}

/**
 * `sentinel.conf` of every Sentinel. Copied to a writable emptyDir before
 * the Sentinel starts (Sentinel rewrites its config file): the init
 * container `config`. What it monitors is set by the operator at run time
 * (`SENTINEL MONITOR`), and kept by Sentinel in that copy.
 */
export function sentinelConfig(): string {
  return [
    `port ${SENTINEL_PORT}`,
    'protected-mode no',
    'sentinel resolve-hostnames no',
    'sentinel announce-hostnames no',
    '',
  ].join('\n');
}

const podSecurity = { runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999 };
const containerSecurity = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
};

/** Preferred (never required) spreading of one component's pods over hosts. */
function antiAffinity(labels: Record<string, string>) {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: { labelSelector: { matchLabels: labels }, topologyKey: 'kubernetes.io/hostname' },
        },
      ],
    },
  };
}

/**
 * Objects applied on every reconcile of a pool with the store enabled
 * (the Secret apart: see {@link storeSecretFor}).
 *
 * Servers and Sentinels listen on the pod IP only (`$(POD_IP)`, downward
 * API), as the managed proxies do, so pods sharing one network namespace
 * (the test cluster's pod runner) do not collide. `podManagementPolicy:
 * Parallel`: the operator, not start order, decides the roles.
 */
export function storeObjects(pool: StickyBackendPool, valkeyImage: string): object[] {
  const p = pool.metadata.name;
  const names = storeNames(p);
  const s = storeSettingsFor(pool);
  const serverLabels = storeLabels(p, 'server');
  const sentinelLabels = storeLabels(p, 'sentinel');
  const env = [
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'VALKEY_PASSWORD', valueFrom: { secretKeyRef: { name: names.secret, key: 'password' } } },
  ];
  // Every store container reads the ConfigMap at /etc/valkey and keeps its files in /data.
  const storeMounts = [
    { name: 'config', mountPath: '/etc/valkey', readOnly: true },
    { name: 'data', mountPath: '/data' },
  ];
  const storeVolumes = [
    { name: 'config', configMap: { name: names.configMap } },
    { name: 'data', emptyDir: {} },
  ];
  const configMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metaFor(pool, names.configMap),
    data: { 'valkey.conf': serverConfig(s), 'sentinel.conf': sentinelConfig() },
  };
  const servers = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: metaFor(pool, names.servers, 'server'),
    spec: {
      serviceName: names.servers,
      replicas: s.servers,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: serverLabels },
      template: {
        metadata: { labels: serverLabels },
        spec: {
          terminationGracePeriodSeconds: 10,
          securityContext: podSecurity,
          affinity: antiAffinity(serverLabels),
          containers: [
            {
              name: 'valkey',
              image: valkeyImage,
              command: ['valkey-server'],
              args: [
                '/etc/valkey/valkey.conf',
                '--bind',
                '$(POD_IP)',
                '--dir',
                '/data',
                // Replicas announce their pod IP, not the source address the primary sees (which
                // NAT or a shared network namespace may change): Sentinels learn replicas from it.
                '--replica-announce-ip',
                '$(POD_IP)',
                // Every server starts as a replica of itself: read-only, and refusing to be a sync
                // source, until the operator or Sentinel attaches it. A restarted primary (a new pod
                // may even get the old IP) must never come up as an empty master that its replicas
                // and Sentinels would follow: Sentinel fails such a "master reporting replica" over.
                '--replicaof',
                '$(POD_IP)',
                String(SERVER_PORT),
                '--requirepass',
                '$(VALKEY_PASSWORD)',
                '--masterauth',
                '$(VALKEY_PASSWORD)',
              ],
              env,
              ports: [{ name: 'valkey', containerPort: SERVER_PORT, protocol: 'TCP' }],
              readinessProbe: { tcpSocket: { port: 'valkey' }, periodSeconds: 5 },
              livenessProbe: { tcpSocket: { port: 'valkey' }, periodSeconds: 10, failureThreshold: 6 },
              volumeMounts: storeMounts,
              securityContext: containerSecurity,
            },
          ],
          volumes: storeVolumes,
        },
      },
    },
  };
  const sentinels = {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: metaFor(pool, names.sentinels, 'sentinel'),
    spec: {
      serviceName: names.sentinels,
      replicas: s.sentinels,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: sentinelLabels },
      template: {
        metadata: { labels: sentinelLabels },
        spec: {
          terminationGracePeriodSeconds: 10,
          securityContext: podSecurity,
          affinity: antiAffinity(sentinelLabels),
          initContainers: [
            {
              // Sentinel refuses a read-only config file: start from a writable copy.
              name: 'config',
              image: valkeyImage,
              command: ['cp', '/etc/valkey/sentinel.conf', '/data/sentinel.conf'],
              volumeMounts: storeMounts,
              securityContext: containerSecurity,
            },
          ],
          containers: [
            {
              name: 'sentinel',
              image: valkeyImage,
              command: ['valkey-sentinel'],
              args: [
                '/data/sentinel.conf',
                '--bind',
                '$(POD_IP)',
                '--dir',
                '/data',
                '--sentinel',
                'announce-ip',
                '$(POD_IP)',
                '--requirepass',
                '$(VALKEY_PASSWORD)',
                '--sentinel',
                'sentinel-pass',
                '$(VALKEY_PASSWORD)',
              ],
              env,
              ports: [{ name: 'sentinel', containerPort: SENTINEL_PORT, protocol: 'TCP' }],
              readinessProbe: { tcpSocket: { port: 'sentinel' }, periodSeconds: 5 },
              livenessProbe: { tcpSocket: { port: 'sentinel' }, periodSeconds: 10, failureThreshold: 6 },
              volumeMounts: storeMounts,
              securityContext: containerSecurity,
            },
          ],
          volumes: storeVolumes,
        },
      },
    },
  };
  const headless = (name: string, labels: Record<string, string>, port: number, portName: string) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metaFor(pool, name, labels[COMPONENT_LABEL] as 'server' | 'sentinel'),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: labels,
      ports: [{ name: portName, port, targetPort: portName, protocol: 'TCP' }],
    },
  });
  const pdb = {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: metaFor(pool, names.pdb),
    spec: {
      // One store pod (server or Sentinel) evicted at a time: the Sentinel majority and
      // `min-replicas-to-write` both survive any single voluntary disruption.
      maxUnavailable: 1,
      selector: { matchLabels: { [STORE_LABEL]: p } },
    },
  };
  return [
    configMap,
    servers,
    headless(names.servers, serverLabels, SERVER_PORT, 'valkey'),
    sentinels,
    headless(names.sentinels, sentinelLabels, SENTINEL_PORT, 'sentinel'),
    pdb,
  ];
}

/**
 * The store's Secret: the keys of proxy/src/session-store/connection.ts.
 * Applied whenever the Sentinel pod IPs change; the password is read from
 * the Secret already there (or made once), never regenerated.
 *
 * @param password - AUTH for servers and Sentinels.
 * @param sentinelIps - IPs of the Sentinel pods, in pod order (may be empty
 *   while no Sentinel pod has an IP yet: `sentinels` is then empty).
 */
export function storeSecretFor(
  pool: StickyBackendPool,
  password: string,
  sentinelIps: readonly string[],
): object {
  const s = storeSettingsFor(pool);
  const values: Record<string, string> = {
    sentinels:
      sentinelIps.length === 0
        ? ''
        : formatSentinelList(sentinelIps.map((host) => ({ host, port: SENTINEL_PORT }))),
    masterName: s.masterName,
    password,
    writeMode: s.writeMode,
    waitReplicas: String(s.waitReplicas),
    waitTimeoutMs: String(WAIT_TIMEOUT_MS),
  };
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: metaFor(pool, storeNames(pool.metadata.name).secret),
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}
