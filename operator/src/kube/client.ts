/**
 * A small JSON client for the apiserver on top of @kubernetes/client-node's
 * KubeConfig (which does kubeconfig, in-cluster config and authentication).
 * The generated API classes are not used: the operator needs a handful of
 * verbs on a handful of paths (list, watch, get, create, apply, status
 * apply), the same error type for all of them, one keep-alive connection
 * pool (KubeConfig makes a new dispatcher per request), and AbortSignals.
 */
import { KubeConfig, RequestContext } from '@kubernetes/client-node';
import { type Dispatcher, fetch } from 'undici';

/** Field manager of every server-side apply the operator makes. */
export const FIELD_MANAGER = 'tether-operator';

/** A failed API call: HTTP status and the Status object's reason/message. */
export class KubeApiError extends Error {
  readonly code = 'TETHER_KUBE_API';
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
    this.reason = reason;
    this.name = 'KubeApiError';
  }
}

/** HTTP status of a KubeApiError (or undefined for other errors, e.g. network). */
export function statusOf(err: unknown): number | undefined {
  return err instanceof KubeApiError ? err.status : undefined;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Default application/json; `application/apply-patch+yaml` for server-side apply (JSON is valid YAML). */
  contentType?: string;
  signal?: AbortSignal | undefined;
  /** Per-request timeout, ms. Default 30 000. */
  timeoutMs?: number;
}

export class KubeClient {
  readonly server: string;
  private auth:
    | { headers: Record<string, string>; dispatcher: Dispatcher | undefined; at: number }
    | undefined;

  readonly kc: KubeConfig;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = cluster.server.replace(/\/$/, '');
  }

  /** A client from a kubeconfig file, else $KUBECONFIG / ~/.kube/config / in-cluster (client-node's loadFromDefault). */
  static fromConfig(file?: string): KubeClient {
    const kc = new KubeConfig();
    if (file) kc.loadFromFile(file);
    else kc.loadFromDefault();
    return new KubeClient(kc);
  }

  /**
   * One request; the JSON answer, or undefined for an empty body.
   * @throws {KubeApiError} for a non-2xx answer; network errors and aborts as undici throws them.
   */
  async request<T = unknown>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.raw(method, path, o);
    const text = await res.body.text();
    if (res.status < 200 || res.status > 299) throw errorFrom(res.status, text, method, path);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /**
   * The response of a request, body not read (for watches).
   * @throws network errors and aborts; the caller checks the status.
   */
  async raw(method: string, path: string, o: RequestOptions = {}) {
    const { headers, dispatcher } = await this.authentication();
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(o.query ?? {}))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const signals = [
      o.signal,
      o.timeoutMs === 0 ? undefined : AbortSignal.timeout(o.timeoutMs ?? 30_000),
    ].filter((s): s is AbortSignal => s !== undefined);
    const res = await fetch(url, {
      method,
      headers: {
        ...headers,
        accept: 'application/json',
        ...(o.body === undefined ? {} : { 'content-type': o.contentType ?? 'application/json' }),
      },
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
      dispatcher,
      signal: AbortSignal.any(signals),
    });
    return { status: res.status, body: res };
  }

  /** Server-side apply (force: the operator owns these fields) of a whole object at `path`. */
  apply<T = unknown>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    return this.request<T>('PATCH', path, {
      query: { fieldManager: FIELD_MANAGER, force: true },
      body,
      contentType: 'application/apply-patch+yaml',
      signal,
    });
  }

  /** Headers and TLS dispatcher, computed once a minute (tokens from exec plugins or files rotate). */
  private async authentication() {
    if (this.auth !== undefined && Date.now() - this.auth.at < 60_000) return this.auth;
    const ctx = new RequestContext(this.server, 'GET' as never);
    await this.kc.applySecurityAuthentication(ctx);
    const old = this.auth?.dispatcher;
    this.auth = {
      headers: ctx.getHeaders(),
      dispatcher: ctx.getDispatcher() as Dispatcher | undefined,
      at: Date.now(),
    };
    // The old pool finishes its requests (watches included) before closing.
    if (old !== undefined && old !== this.auth.dispatcher) void old.close().catch(() => {});
    return this.auth;
  }
}

function errorFrom(status: number, text: string, method: string, path: string): KubeApiError {
  let reason = 'Unknown';
  let message = text.slice(0, 500);
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason ?? reason;
    message = s.message ?? message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, `${method} ${path}: ${status} ${reason}: ${message}`);
}

/** API path of a collection or object: core (`v1`) or grouped (`apps/v1`) resources. */
export function resourcePath(apiVersion: string, plural: string, namespace?: string, name?: string): string {
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return `${base}${namespace ? `/namespaces/${namespace}` : ''}/${plural}${name ? `/${name}` : ''}`;
}
