/**
 * An informer: list, then watch from the list's resourceVersion, keeping a
 * cache of `namespace/name` → object and calling back on every change.
 * It survives the known ways a @kubernetes/client-node-era watch dies
 * (kube-rs `watcher` is the model):
 *
 * - 410 Gone (the resourceVersion is too old): relist, and report the
 *   objects that changed or vanished meanwhile;
 * - any error (network, 5xx, apiserver restart): back off (200 ms doubling
 *   to 30 s, jittered) and watch again from the last resourceVersion;
 * - a watch the server ends (its `timeoutSeconds`, or early and silently):
 *   watch again at once from the last resourceVersion; bookmarks keep
 *   that resourceVersion fresh;
 * - a watch that goes quiet for too long (a half-open connection): aborted
 *   and restarted.
 *
 * Health for /readyz: synced once, and not failing for longer than
 * `unhealthyAfterMs`.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { KubeApiError, type KubeClient } from './client.ts';
import { type KubeObject, keyOf } from './types.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends KubeObject> {
  /** For logs and metrics, e.g. `endpointslices`. */
  name: string;
  /** Collection path, e.g. `/apis/discovery.k8s.io/v1/endpointslices` or a namespaced one. */
  path: string;
  labelSelector?: string;
  /** Validates an object from the apiserver; undefined drops it (logged once by the caller). */
  parse: (raw: unknown) => T | undefined;
  onEvent: (type: InformerEvent, obj: T, old: T | undefined) => void;
  /** A watch restart, with why: `gone` (410 → relist), `error`, `closed` (server ended it), `stalled`. */
  onRestart?: (reason: 'gone' | 'error' | 'closed' | 'stalled', err?: unknown) => void;
  /** Called after every (re)list. */
  onSynced?: () => void;
  /** Server-side watch timeout range, s (randomised like client-go's 5–10 min). */
  watchTimeoutSeconds?: [number, number];
  unhealthyAfterMs?: number;
  /** A watch without a byte (events or bookmarks) for this long is restarted. Default 5 min + timeout. */
  stallMs?: number;
}

export class Informer<T extends KubeObject> {
  readonly cache = new Map<string, T>();
  private resourceVersion: string | undefined;
  private synced = false;
  private failingSince: number | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly client: KubeClient;
  private readonly o: InformerOptions<T>;
  private loop: Promise<void> | undefined;
  private syncWaiters: Array<() => void> = [];
  /** Watches ended by the server, counted (tests read it). */
  restarts = 0;

  constructor(client: KubeClient, o: InformerOptions<T>) {
    this.client = client;
    this.o = o;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop?.catch(() => {});
  }

  /** True after the first list; stays true across relists. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** Synced and not failing for longer than unhealthyAfterMs (default 30 s). */
  get healthy(): boolean {
    if (!this.synced) return false;
    return (
      this.failingSince === undefined || Date.now() - this.failingSince < (this.o.unhealthyAfterMs ?? 30_000)
    );
  }

  /** Resolves after the first list. */
  waitForSync(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  private async run(): Promise<void> {
    let backoffMs = 200;
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.list();
          needList = false;
        }
        const outcome = await this.watch();
        this.failingSince = undefined;
        backoffMs = 200;
        if (outcome === 'gone') {
          needList = true;
          this.restarts++;
          this.o.onRestart?.('gone');
        } else if (outcome === 'closed' || outcome === 'stalled') {
          this.restarts++;
          this.o.onRestart?.(outcome);
        }
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof KubeApiError && err.status === 410) needList = true;
        this.failingSince ??= Date.now();
        this.restarts++;
        this.o.onRestart?.('error', err);
        await sleep(backoffMs * (0.8 + Math.random() * 0.4), this.abort.signal);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
  }

  /** Lists all pages, replaces the cache, reports differences. */
  private async list(): Promise<void> {
    const fresh = new Map<string, T>();
    let cont: string | undefined;
    let rv: string | undefined;
    do {
      const page = await this.client.request<{
        metadata: { resourceVersion: string; continue?: string };
        items: unknown[];
      }>('GET', this.o.path, {
        query: { labelSelector: this.o.labelSelector, limit: 500, continue: cont },
        signal: this.abort.signal,
      });
      for (const raw of page.items) {
        const obj = this.o.parse(raw);
        if (obj !== undefined) fresh.set(keyOf(obj), obj);
      }
      cont = page.metadata.continue || undefined;
      rv = page.metadata.resourceVersion;
    } while (cont !== undefined);
    const old = new Map(this.cache);
    this.cache.clear();
    for (const [k, v] of fresh) this.cache.set(k, v);
    for (const [k, v] of fresh) {
      const before = old.get(k);
      if (before === undefined) this.o.onEvent('add', v, undefined);
      else if (before.metadata.resourceVersion !== v.metadata.resourceVersion)
        this.o.onEvent('update', v, before);
    }
    for (const [k, v] of old) if (!fresh.has(k)) this.o.onEvent('delete', v, v);
    this.resourceVersion = rv;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
    this.o.onSynced?.();
  }

  /** One watch, until the server ends it ('closed'), 410 ('gone'), or it stalls. */
  private async watch(): Promise<'closed' | 'gone' | 'stalled' | 'stopped'> {
    const [lo, hi] = this.o.watchTimeoutSeconds ?? [300, 600];
    const timeoutSeconds = Math.round(lo + Math.random() * (hi - lo));
    const local = new AbortController();
    const signal = AbortSignal.any([this.abort.signal, local.signal]);
    const res = await this.client.raw('GET', this.o.path, {
      query: {
        watch: 1,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        labelSelector: this.o.labelSelector,
        timeoutSeconds,
      },
      signal,
      timeoutMs: 0,
    });
    if (res.status === 410) return 'gone';
    if (res.status !== 200) {
      const text = await res.body.text();
      throw new KubeApiError(
        res.status,
        'WatchFailed',
        `watch ${this.o.path}: ${res.status}: ${text.slice(0, 300)}`,
      );
    }
    const stallMs = this.o.stallMs ?? (timeoutSeconds + 60) * 1000;
    let stalled = false;
    let timer = setTimeout(() => {}, 0);
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        local.abort();
      }, stallMs);
    };
    arm();
    let gone = false;
    const body = Readable.fromWeb(res.body.body as unknown as WebReadableStream);
    try {
      const lines = createInterface({ input: body, crlfDelay: Number.POSITIVE_INFINITY });
      for await (const line of lines) {
        arm();
        if (line === '') continue;
        const ev = JSON.parse(line) as { type: string; object: Record<string, unknown> };
        if (ev.type === 'ERROR') {
          const code = (ev.object as { code?: number }).code;
          if (code === 410) {
            gone = true;
            break;
          }
          throw new KubeApiError(
            code ?? 500,
            'WatchError',
            `watch ${this.o.path}: ${JSON.stringify(ev.object)}`,
          );
        }
        const rv = (ev.object.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
        if (ev.type === 'BOOKMARK') {
          if (rv) this.resourceVersion = rv;
          continue;
        }
        const obj = this.o.parse(ev.object);
        if (rv) this.resourceVersion = rv;
        if (obj === undefined) continue;
        const key = keyOf(obj);
        const before = this.cache.get(key);
        if (ev.type === 'DELETED') {
          this.cache.delete(key);
          this.o.onEvent('delete', obj, before);
        } else {
          this.cache.set(key, obj);
          this.o.onEvent(before === undefined ? 'add' : 'update', obj, before);
        }
      }
    } catch (err) {
      if (this.stopped) return 'stopped';
      if (!stalled) throw err;
    } finally {
      clearTimeout(timer);
      local.abort();
      body.destroy();
    }
    if (this.stopped) return 'stopped';
    if (gone) return 'gone';
    return stalled ? 'stalled' : 'closed';
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}
