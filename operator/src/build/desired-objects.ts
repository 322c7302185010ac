/**
 * The objects a pool owns, as server-side-apply bodies: for
 * `proxy.mode: Managed` the proxy Deployment and its Service; for every
 * pool the Secret with the cookie keys and the admin token (created once,
 * never re-generated: see {@link secretFor}). Pure: no I/O, no clock.
 */
import { SESSION_STORE_KEYS } from '../../../proxy/src/session-store/connection.ts';
import { API_VERSION, POOL_KIND, POOL_LABEL, type StickyBackendPool } from '../api/index.ts';
import { STORE_SECRET_MOUNT, storeNames } from './session-store-objects.ts';

/** Port name of the proxy's admin API in any container; push.ts looks for it (default 9901 when absent). */
export const ADMIN_PORT_NAME = 'tether-admin';
export const DEFAULT_ADMIN_PORT = 9901;
export const PROXY_HTTP_PORT = 8080;
/** Where the Secret is mounted in managed proxies (and where sidecars should mount it). */
export const SECRET_MOUNT = '/etc/tether';
export const ADMIN_TOKEN_KEY = 'admin-token';
export const COOKIE_KEYS_KEY = 'cookie-keys';

/** Settings the operator is started with that shape owned objects. */
export interface DesiredSettings {
  /** Image of the managed proxy container, e.g. `ghcr.io/tether-dev/tether:0.1.0` (entry point `tether-proxy`). */
  proxyImage: string;
  /** Image of the session store's servers and Sentinels (`valkey-server`, `valkey-sentinel`), e.g. `docker.io/valkey/valkey:8.1`. */
  valkeyImage: string;
}

/** Names of a pool's owned objects. */
export function ownedNames(poolName: string): { deployment: string; service: string; secret: string } {
  return { deployment: `${poolName}-proxy`, service: `${poolName}-proxy`, secret: `${poolName}-tether` };
}

/** Labels of the managed proxy pods, and the selector of their Deployment and Service. */
export function proxyLabels(poolName: string): Record<string, string> {
  return { 'app.kubernetes.io/name': 'tether-proxy', [POOL_LABEL]: poolName };
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

function metaFor(pool: StickyBackendPool, name: string) {
  return {
    name,
    namespace: pool.metadata.namespace,
    labels: { ...proxyLabels(pool.metadata.name), 'app.kubernetes.io/managed-by': 'tether-operator' },
    ownerReferences: [ownerReference(pool)],
  };
}

/**
 * Objects applied by server-side apply on every reconcile (idempotent).
 * Empty for `Sidecar` pools: their proxies run in the users' own pods.
 *
 * The proxy listens on the pod IP (`$(POD_IP)`, downward API), not 0.0.0.0,
 * so processes of several pods sharing one network namespace (the test
 * cluster's pod runner) do not collide. Readiness is the proxy's `/readyz`:
 * a pod takes Service traffic only once it holds a routing table.
 */
export function desiredObjects(pool: StickyBackendPool, s: DesiredSettings): object[] {
  if (pool.spec.proxy.mode !== 'Managed') return [];
  const names = ownedNames(pool.metadata.name);
  const labels = proxyLabels(pool.metadata.name);
  const store = pool.spec.sessionStore.enabled;
  // With the store on, one projected volume holds both Secrets: the store's keys in its
  // session-store/ directory (a volume mounted inside a read-only Secret volume cannot be).
  const volume = store
    ? {
        name: 'tether',
        projected: {
          sources: [
            { secret: { name: names.secret } },
            {
              secret: {
                name: storeNames(pool.metadata.name).secret,
                items: SESSION_STORE_KEYS.map((k) => ({ key: k, path: `session-store/${k}` })),
              },
            },
          ],
        },
      }
    : { name: 'tether', secret: { secretName: names.secret } };
  const deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metaFor(pool, names.deployment),
    spec: {
      replicas: pool.spec.proxy.replicas,
      selector: { matchLabels: labels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 40,
          containers: [
            {
              name: 'proxy',
              image: s.proxyImage,
              // One image holds both entry points (tether-proxy, tether-operator).
              command: ['tether-proxy'],
              args: [
                `--listen=$(POD_IP):${PROXY_HTTP_PORT}`,
                `--admin-listen=$(POD_IP):${DEFAULT_ADMIN_PORT}`,
                `--admin-token-file=${SECRET_MOUNT}/${ADMIN_TOKEN_KEY}`,
                `--cookie-keys-file=${SECRET_MOUNT}/${COOKIE_KEYS_KEY}`,
                ...(store ? [`--session-store=${STORE_SECRET_MOUNT}`] : []),
              ],
              env: [{ name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }],
              ports: [
                { name: 'http', containerPort: PROXY_HTTP_PORT, protocol: 'TCP' },
                { name: ADMIN_PORT_NAME, containerPort: DEFAULT_ADMIN_PORT, protocol: 'TCP' },
              ],
              readinessProbe: {
                httpGet: { path: '/readyz', port: ADMIN_PORT_NAME },
                periodSeconds: 2,
                failureThreshold: 1,
              },
              livenessProbe: { httpGet: { path: '/healthz', port: ADMIN_PORT_NAME }, periodSeconds: 10 },
              volumeMounts: [{ name: 'tether', mountPath: SECRET_MOUNT, readOnly: true }],
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                capabilities: { drop: ['ALL'] },
              },
            },
          ],
          volumes: [volume],
        },
      },
    },
  };
  const service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metaFor(pool, names.service),
    spec: {
      selector: labels,
      ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }],
    },
  };
  return [deployment, service];
}

/**
 * The pool's Secret, with fresh random material: created once when absent and
 * never re-applied, so a reconcile never logs users out or locks the
 * operator out of its proxies.
 *
 * @param random - n → n random bytes (crypto.randomBytes; injected for tests).
 */
export function secretFor(pool: StickyBackendPool, random: (n: number) => Buffer): object {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: metaFor(pool, ownedNames(pool.metadata.name).secret),
    type: 'Opaque',
    stringData: {
      [ADMIN_TOKEN_KEY]: random(32).toString('base64url'),
      // One key per line; the first signs, all verify (proxy/src/cookie-keys.ts).
      [COOKIE_KEYS_KEY]: `${random(32).toString('base64')}\n`,
    },
  };
}
