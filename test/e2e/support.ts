/**
 * Helpers for e2e test files: the shared control plane, API clients for it,
 * a fresh namespace per test, and bounded waits.
 */
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach, inject } from 'vitest';
import type { ControlPlaneInfo } from '../control-plane/control-plane.ts';

export {
  bindIdentity,
  CommandError,
  helm,
  type Identity,
  kubectl,
  mintIdentity,
  waitForCrdEstablished,
} from '../control-plane/control-plane.ts';

/** The control plane started by global-setup.ts. */
export function controlPlane(): ControlPlaneInfo {
  return inject('controlPlane');
}

/**
 * A client-node KubeConfig for a kubeconfig file.
 * @param file default: the admin kubeconfig of the shared control plane.
 */
export function kubeConfig(file: string = controlPlane().adminKubeconfig): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

/** Handle returned by {@link useNamespace}; `name` is valid inside a test. */
export interface NamespaceHandle {
  readonly name: string;
}

/**
 * Gives each test of the calling file its own namespace: created before the
 * test (name `<prefix>-<slug of test name>-<random>`, at most 63 characters,
 * labelled `tether.dev/e2e=true`), deleted after it (the namespace
 * controller then deletes its objects, and the pod runner ends their
 * processes); the whole etcd is thrown away at the end of the run.
 */
export function useNamespace(prefix = 'e2e'): NamespaceHandle {
  let current: string | undefined;
  beforeEach(async (ctx) => {
    const slug = ctx.task.name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
      .slice(0, 30)
      .replace(/-$/, '');
    const suffix = Math.random().toString(36).slice(2, 8);
    current = [prefix, slug, suffix].filter(Boolean).join('-').slice(0, 63);
    await kubeConfig()
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: current, labels: { 'tether.dev/e2e': 'true' } } } });
  });
  afterEach(async () => {
    if (!current) return;
    const name = current;
    current = undefined;
    try {
      await kubeConfig().makeApiClient(CoreV1Api).deleteNamespace({ name });
    } catch {
      // Best effort: a failed delete must not hide the test's own result.
    }
  });
  return {
    get name(): string {
      if (!current) throw new Error('useNamespace: the namespace exists only inside a test');
      return current;
    },
  };
}

/**
 * Polls `fn` every `intervalMs` (default 100) until it returns a value other
 * than `undefined`/`false`, and returns that value.
 * @throws Error after `timeoutMs` (default 10 000), with the last error seen.
 */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 10_000, intervalMs = 100, what = 'condition' } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what} not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
}

/** HTTP status of a client-node ApiException (or undefined for other errors). */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * Runs `fn`, expecting it to fail with a client-node ApiException.
 * @returns the HTTP status and the response body (the API's Status object, as text).
 * @throws Error if `fn` succeeds.
 */
export async function apiError(
  fn: () => Promise<unknown>,
): Promise<{ code: number | undefined; body: string }> {
  try {
    await fn();
  } catch (err) {
    const body = (err as { body?: unknown }).body;
    return {
      code: statusOf(err),
      body: typeof body === 'string' ? body : JSON.stringify(body ?? String(err)),
    };
  }
  throw new Error('expected the API call to fail, but it succeeded');
}
