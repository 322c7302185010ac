/**
 * The pod runner's image table: which container images it runs as real
 * processes of this checkout, and with which entry points. An image not in
 * the table is left to KWOK alone (the pod still goes Running, no process).
 *
 * To add an entry point: add a command to {@link TETHER_IMAGE_RULE}'s `commands`.
 * To add an image: append an {@link ImageRule} to {@link defaultImageTable}.
 */
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of this checkout (two levels above test/cluster). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The image name tests use for Tether itself. Any tag or registry matches, see {@link TETHER_IMAGE_RULE}. */
export const TETHER_IMAGE = 'ghcr.io/tether-dev/tether:dev';
/** The image name of the test backend (HTTP/WebSocket, answers with its pod name). */
export const TEST_BACKEND_IMAGE = 'tether-test-backend:dev';

/** One image (family) the runner knows. */
export interface ImageRule {
  /** Short name for logs, e.g. `tether`. */
  name: string;
  /** Matches the container's `image` field. */
  pattern: RegExp;
  /**
   * Entry points by command name: argv prefix (executable first). A container
   * without `command` gets {@link defaultCommand}; one with `command` picks by
   * the basename of `command[0]` (so `["/usr/local/bin/tether-proxy"]` works),
   * and the rest of `command` goes before `args`, as with an image's ENTRYPOINT.
   */
  commands: Record<string, string[]>;
  /** Key of {@link commands} used when the container sets no `command`. */
  defaultCommand: string;
}

/** A path matcher for `name` with any registry prefix and any tag or digest. */
function imageName(name: string): RegExp {
  return new RegExp(`^(?:[^/]+/)*${name.replace(/[.-]/g, '\\$&')}(?:[:@].*)?$`);
}

/**
 * Tether: one image, both bins, as the Dockerfile builds it. The default is
 * the image's ENTRYPOINT, `tether-operator` (the Helm chart sets only args);
 * proxy containers set `command: [tether-proxy]`.
 */
export const TETHER_IMAGE_RULE: ImageRule = {
  name: 'tether',
  pattern: imageName('tether'),
  commands: {
    'tether-operator': [process.execPath, join(REPO_ROOT, 'bin', 'tether-operator.js')],
    'tether-proxy': [process.execPath, join(REPO_ROOT, 'bin', 'tether-proxy.js')],
  },
  defaultCommand: 'tether-operator',
};

/** The HTTP/WebSocket test backend of test/cluster/test-backend.ts. */
export const TEST_BACKEND_IMAGE_RULE: ImageRule = {
  name: 'test-backend',
  pattern: imageName('tether-test-backend'),
  commands: {
    'test-backend': [process.execPath, join(REPO_ROOT, 'test', 'cluster', 'test-backend.ts')],
  },
  defaultCommand: 'test-backend',
};

/** The session store's image, as the operator's `--valkey-image` defaults to. Any tag or registry matches. */
export const VALKEY_IMAGE = 'docker.io/valkey/valkey:8.1';

/**
 * Valkey, played by Debian's Redis 7 (the same protocol, replication and
 * Sentinel): `valkey-server` → `redis-server`, `valkey-sentinel` →
 * `redis-sentinel`, each bound where the operator's args say (the pod IP).
 * `cp` is the image's own, for the Sentinel's init container that copies
 * the mounted config to a writable place (Sentinel rewrites its config).
 */
export const VALKEY_IMAGE_RULE: ImageRule = {
  name: 'valkey',
  pattern: imageName('valkey'),
  commands: {
    'valkey-server': ['redis-server'],
    'valkey-sentinel': ['redis-sentinel'],
    cp: ['cp'],
  },
  defaultCommand: 'valkey-server',
};

/** The table the harness uses unless told otherwise. A fresh array each call, so callers may extend it. */
export function defaultImageTable(): ImageRule[] {
  return [TETHER_IMAGE_RULE, TEST_BACKEND_IMAGE_RULE, VALKEY_IMAGE_RULE];
}

/** The rule for `image`, or undefined when the runner should leave the pod alone. */
export function findImage(table: readonly ImageRule[], image: string | undefined): ImageRule | undefined {
  if (!image) return undefined;
  return table.find((r) => r.pattern.test(image));
}

/**
 * The argv for a container of a known image, following Kubernetes' rule:
 * `command` replaces the image's entry point, `args` its default arguments.
 * Here `command[0]` must name one of the image's entry points.
 * @throws Error naming the known commands if `command[0]` is not one of them.
 */
export function buildArgv(
  rule: ImageRule,
  command: string[] | undefined,
  args: string[] | undefined,
): string[] {
  if (command && command.length > 0) {
    const name = basename(command[0]!);
    const entry = rule.commands[name];
    if (!entry) {
      throw new Error(
        `image ${rule.name} has no command ${JSON.stringify(command[0])} (known: ${Object.keys(rule.commands).join(', ')})`,
      );
    }
    return [...entry, ...command.slice(1), ...(args ?? [])];
  }
  const entry = rule.commands[rule.defaultCommand];
  if (!entry)
    throw new Error(`image ${rule.name}: default command ${rule.defaultCommand} is not in its table`);
  return [...entry, ...(args ?? [])];
}

/** Names of the images in `table`, for messages about unknown images. */
export function describeTable(table: readonly ImageRule[]): string {
  return table.map((r) => r.name).join(', ');
}
