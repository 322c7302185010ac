/**
 * The `StickyBackendPool` API (tether.dev/v1alpha1) as zod schemas: the one
 * source of truth for the standalone proxy's pool file, the routing table and,
 * later, the CRD's OpenAPI schema (`z.toJSONSchema`).
 *
 * Field names follow Gateway API GEP-1619 (session persistence) where it has
 * them: `absoluteTimeout`, `idleTimeout`, `lifetimeType`.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseCidr } from '../routing/ip.ts';
import { DURATION_PATTERN, parseDuration } from './duration.ts';

/**
 * An endpoint address: an IP literal the proxy dials as is (IPv4 dotted quad,
 * or IPv6 without brackets). No host names: the proxy does no DNS (in a
 * cluster, EndpointSlices carry addresses; a static endpoint behind a name
 * would silently move when the name does). No URLs, ports or IPv6 zone ids
 * (`fe80::1%eth0` names an interface of one machine). One rule for the pool
 * spec and the routing table, so whatever the spec admits a proxy can serve.
 */
export const endpointAddressSchema = z
  .string()
  .min(1)
  .max(45)
  .refine(
    (a) => isIP(a) !== 0 && !a.includes('%'),
    'must be an IPv4 or IPv6 address literal (no host name, URL, port or zone id)',
  );

export const API_GROUP = 'tether.dev';
export const API_VERSION = `${API_GROUP}/v1alpha1`;
export const POOL_KIND = 'StickyBackendPool';

/** A duration string such as `"30m"`; see {@link parseDuration}. */
export const durationSchema = z
  .string()
  .regex(DURATION_PATTERN, 'a duration such as "500ms", "10s", "30m" or "1h30m"');

/** RFC 1123 label-ish name for cookies and headers: an HTTP token (RFC 9110 §5.6.2). */
const tokenSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "an HTTP token (letters, digits and !#$%&'*+.^_`|~-)");

const cidrSchema = z
  .string()
  .refine((c) => parseCidr(c) !== undefined, 'a CIDR such as "10.0.0.0/8" or "fd00::/8"');

/** One static endpoint, like an nginx `server` line. */
export const staticEndpointSchema = z.object({
  /** Stable id of the endpoint; it, never the address, is what cookies pin to. Defaults to `address:port`. */
  name: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/)
    .optional(),
  address: endpointAddressSchema,
  port: z.number().int().min(1).max(65535),
  weight: z.number().int().min(1).max(1000).default(1),
  zone: z.string().max(63).optional(),
  /** `true` makes the endpoint draining: pinned clients stay, no new pins (Kubernetes `terminating`). */
  draining: z.boolean().default(false),
});

export const backendSchema = z
  .object({
    service: z
      .object({
        name: z.string().min(1).max(63),
        port: z.union([z.string().min(1).max(15), z.number().int().min(1).max(65535)]),
      })
      .optional(),
    endpoints: z.array(staticEndpointSchema).max(1000).optional(),
  })
  .refine((b) => (b.service === undefined) !== (b.endpoints === undefined), {
    message: 'exactly one of backend.service and backend.endpoints must be set',
  });

export const cookieAffinitySchema = z.object({
  /** Cookie name; `route` is nginx-sticky-module's default. */
  name: tokenSchema.default('route'),
  path: z.string().startsWith('/').max(1024).default('/'),
  /** Empty: host-only cookie. */
  domain: z
    .string()
    .max(253)
    .regex(/^$|^\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/)
    .default(''),
  /** `Session`: no Expires/Max-Age (gone when the browser closes); `Permanent`: Max-Age = absoluteTimeout. */
  lifetimeType: z.enum(['Session', 'Permanent']).default('Session'),
  absoluteTimeout: durationSchema.default('24h'),
  idleTimeout: durationSchema.optional(),
  secure: z.enum(['Auto', 'Always', 'Never']).default('Auto'),
  httpOnly: z.boolean().default(true),
  sameSite: z.enum(['Strict', 'Lax', 'None']).default('Lax'),
});

export const clientIpAffinitySchema = z.object({
  /** nginx ip_hash hashes the first three octets: /24. */
  ipv4PrefixLength: z.number().int().min(1).max(32).default(24),
  ipv6PrefixLength: z.number().int().min(1).max(128).default(128),
  /** Peers whose X-Forwarded-For is believed (nginx `set_real_ip_from`). */
  trustedProxies: z.array(cidrSchema).max(64).default([]),
});

export const headerAffinitySchema = z.object({ name: tokenSchema.default('X-Session-Id') });

export const learnAffinitySchema = z.object({
  cookieName: tokenSchema.default('JSESSIONID'),
  timeout: durationSchema.default('30m'),
});

export const affinitySchema = z
  .object({
    type: z.enum(['Cookie', 'ClientIP', 'Header', 'Learn']).default('Cookie'),
    cookie: cookieAffinitySchema.prefault({}),
    clientIP: clientIpAffinitySchema.prefault({}),
    header: headerAffinitySchema.prefault({}),
    learn: learnAffinitySchema.prefault({}),
  })
  .refine((a) => a.type !== 'Cookie' || a.cookie.sameSite !== 'None' || a.cookie.secure !== 'Never', {
    message: 'cookie.sameSite None needs secure Auto or Always (browsers drop SameSite=None without Secure)',
    path: ['cookie', 'sameSite'],
  });

export const drainingSchema = z.object({
  keepSessions: z.boolean().default(true),
  timeout: durationSchema.default('5m'),
});

export const passiveHealthSchema = z.object({
  /** nginx max_fails: failures within failTimeout that mark the endpoint unavailable; 0 disables. */
  maxFails: z.number().int().min(0).max(1000).default(1),
  /** nginx fail_timeout: the window for counting and the time the endpoint then stays unavailable. */
  failTimeout: durationSchema.default('10s'),
});

export const activeHealthSchema = z.object({
  path: z.string().startsWith('/').max(1024).default('/healthz'),
  interval: durationSchema.default('5s'),
  timeout: durationSchema.default('1s'),
  healthyThreshold: z.number().int().min(1).max(100).default(1),
  unhealthyThreshold: z.number().int().min(1).max(100).default(2),
});

export const healthCheckSchema = z.object({
  passive: passiveHealthSchema.prefault({}),
  /** Absent: no active checks. */
  active: activeHealthSchema.optional(),
});

export const proxySettingsSchema = z.object({
  mode: z.enum(['Managed', 'Sidecar']).default('Managed'),
  replicas: z.number().int().min(1).max(100).default(2),
});

export const sessionStoreSchema = z.object({
  enabled: z.boolean().default(false),
  replicas: z.number().int().min(0).max(10).default(2),
  sentinels: z.number().int().min(1).max(9).default(3),
  writeMode: z.enum(['Async', 'Sync']).default('Async'),
  /**
   * Keep ClientIP and Header pins in the store too (HAProxy `stick-table`
   * + `stick on src` with peers), so adding endpoints moves no pinned client
   * while new clients spread over all of them. Off: pins are the stateless
   * consistent hash, and a scale-up moves about k/(n+k) of the clients.
   */
  persistPins: z.boolean().default(false),
  /** How long a persisted pin lives without a request, sliding (refreshed on every use). */
  pinTimeout: durationSchema.default('30m'),
});

/** `spec` of a StickyBackendPool, with every default applied by `parse`. */
export const poolSpecSchema = z.object({
  backend: backendSchema,
  affinity: affinitySchema.prefault({}),
  /** `Repin`: consistent re-pin and a new cookie; `Reject`: 503 (nginx-sticky-module `no_fallback`). */
  onEndpointFailure: z.enum(['Repin', 'Reject']).default('Repin'),
  draining: drainingSchema.prefault({}),
  healthCheck: healthCheckSchema.prefault({}),
  /** HAProxy hash-balance-factor: a new pin goes to an endpoint only below factor% of the mean load. Absent: off. */
  balanceFactor: z.number().int().min(100).max(10_000).optional(),
  proxy: proxySettingsSchema.prefault({}),
  sessionStore: sessionStoreSchema.prefault({}),
});

const nameSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a DNS subdomain name (lower case)');

/** A whole StickyBackendPool object, as in a pool file or from the API server. */
export const stickyBackendPoolSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(POOL_KIND),
  metadata: z.looseObject({
    name: nameSchema,
    namespace: nameSchema.default('default'),
    generation: z.number().int().optional(),
  }),
  spec: poolSpecSchema,
});

/** Spec with defaults applied. */
export type PoolSpec = z.infer<typeof poolSpecSchema>;
/** Spec as a user writes it (defaults optional). */
export type PoolSpecInput = z.input<typeof poolSpecSchema>;
export type StickyBackendPool = z.infer<typeof stickyBackendPoolSchema>;
export type AffinitySpec = z.infer<typeof affinitySchema>;
export type CookieAffinity = z.infer<typeof cookieAffinitySchema>;
export type ClientIpAffinity = z.infer<typeof clientIpAffinitySchema>;
export type HealthCheckSpec = z.infer<typeof healthCheckSchema>;

/** Durations of the spec that must also parse: the regex bounds digits, this bounds meaning. */
export function checkSpecDurations(spec: PoolSpec): string[] {
  const problems: string[] = [];
  const c = spec.affinity.cookie;
  if (parseDuration(c.absoluteTimeout) < 1_000) problems.push('affinity.cookie.absoluteTimeout must be ≥ 1s');
  if (c.idleTimeout !== undefined && parseDuration(c.idleTimeout) < 1_000) {
    problems.push('affinity.cookie.idleTimeout must be ≥ 1s');
  }
  if (parseDuration(spec.affinity.learn.timeout) < 1_000)
    problems.push('affinity.learn.timeout must be ≥ 1s');
  if (parseDuration(spec.sessionStore.pinTimeout) < 1_000)
    problems.push('sessionStore.pinTimeout must be ≥ 1s');
  const a = spec.healthCheck.active;
  if (a && parseDuration(a.timeout) >= parseDuration(a.interval)) {
    problems.push('healthCheck.active.timeout must be shorter than interval');
  }
  return problems;
}
