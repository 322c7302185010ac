/**
 * The operator's settings: flags, each also settable as an environment
 * variable `TETHER_OPERATOR_<FLAG_IN_UPPER_SNAKE>` (flags win), validated
 * with zod at the edge. Pure: parseConfig takes argv and env.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseDuration } from '../../proxy/src/api/duration.ts';
import { durationSchema } from '../../proxy/src/api/pool-spec.ts';
import { DEFAULT_VALKEY_IMAGE } from './build/session-store-objects.ts';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):[0-9]{1,5}$/, 'HOST:PORT, e.g. 127.0.0.1:8080 or :8080')
  .transform((s) => {
    const at = s.lastIndexOf(':');
    return { host: s.slice(0, at).replace(/^\[|\]$/g, '') || '0.0.0.0', port: Number(s.slice(at + 1)) };
  })
  .refine((a) => a.port <= 65535, 'port above 65535');

const dnsLabel = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'a DNS label (lower case letters, digits, -)')
  .max(63);
const boolText = z.enum(['true', 'false']).transform((s) => s === 'true');

export const USAGE = `usage: tether-operator [flags]   (each flag also as env TETHER_OPERATOR_<FLAG>, e.g. TETHER_OPERATOR_WORKERS=8)

  --kubeconfig F                 kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)
  --namespaces a,b               watch only these namespaces (default: all)
  --workers N                    concurrent reconciles (default 4; a pool is never in two at once)
  --leader-elect true|false      run leader election (default true)
  --leader-election-namespace NS namespace of the Lease (default: $POD_NAMESPACE or default)
  --leader-election-id NAME      name of the Lease (default tether-operator)
  --identity ID                  this candidate's name (default: host name + random suffix)
  --lease-duration D             client-go LeaseDuration (default 15s)
  --renew-deadline D             client-go RenewDeadline (default 10s)
  --retry-period D               client-go RetryPeriod (default 2s)
  --proxy-image IMAGE            image of managed proxy pods (default ghcr.io/tether-dev/tether:0.1.0)
  --valkey-image IMAGE           image of session store servers and Sentinels (default docker.io/valkey/valkey:8.1)
  --store-timeout D              connect, and each command, to a session store pod (default 1s)
  --metrics-listen HOST:PORT     /metrics, /healthz, /readyz (default 127.0.0.1:8080)
  --push-timeout D               per PUT to a proxy's admin API (default 5s)
  --resync D                     re-reconcile every pool this often (default 10m)
  --watch-timeout D              server-side watch timeout, randomised in [D, 2D] like client-go (default 5m)
  --log-level debug|info|warn|error
`;

export const configSchema = z
  .object({
    kubeconfig: z.string().min(1).optional(),
    namespaces: z
      .string()
      .default('')
      .transform((s) =>
        s
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      )
      .pipe(z.array(dnsLabel)),
    workers: z.coerce.number().int().min(1).max(64).default(4),
    'leader-elect': boolText.default(true),
    'leader-election-namespace': dnsLabel.default('default'),
    'leader-election-id': dnsLabel.default('tether-operator'),
    identity: z.string().min(1).max(128).optional(),
    'lease-duration': durationSchema.default('15s').transform(parseDuration),
    'renew-deadline': durationSchema.default('10s').transform(parseDuration),
    'retry-period': durationSchema.default('2s').transform(parseDuration),
    'proxy-image': z.string().min(1).max(512).default('ghcr.io/tether-dev/tether:0.1.0'),
    'valkey-image': z.string().min(1).max(512).default(DEFAULT_VALKEY_IMAGE),
    'store-timeout': durationSchema.default('1s').transform(parseDuration),
    'metrics-listen': hostPort.prefault('127.0.0.1:8080'),
    'push-timeout': durationSchema.default('5s').transform(parseDuration),
    resync: durationSchema.default('10m').transform(parseDuration),
    'watch-timeout': durationSchema.default('5m').transform(parseDuration),
    'log-level': z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  })
  .refine((c) => c['lease-duration'] > c['renew-deadline'] && c['renew-deadline'] > c['retry-period'] * 1.2, {
    message: 'need lease-duration > renew-deadline > 1.2 × retry-period (client-go rule)',
    path: ['renew-deadline'],
  });

export type OperatorConfig = z.infer<typeof configSchema> & { identity: string };

const FLAGS = Object.keys(configSchema.shape);

/** `--lease-duration` → `TETHER_OPERATOR_LEASE_DURATION`. */
export function envNameOf(flag: string): string {
  return `TETHER_OPERATOR_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * @returns the validated config, or `'help'`.
 * @throws {Error} with a readable message (which flag, what is wrong) for bad flags or env.
 */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv): OperatorConfig | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      ...Object.fromEntries(FLAGS.map((f) => [f, { type: 'string' as const }])),
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const merged: Record<string, unknown> = {};
  for (const f of FLAGS) {
    const v = (values as Record<string, unknown>)[f] ?? env[envNameOf(f)];
    if (v !== undefined) merged[f] = v;
  }
  if (merged['leader-election-namespace'] === undefined && env.POD_NAMESPACE) {
    merged['leader-election-namespace'] = env.POD_NAMESPACE;
  }
  const r = configSchema.safeParse(merged);
  if (!r.success) throw new Error(`bad flags:\n${z.prettifyError(r.error)}`);
  return {
    ...r.data,
    identity: r.data.identity ?? `${hostname()}_${Math.random().toString(36).slice(2, 8)}`,
  };
}
