/**
 * The controller's work queue, with client-go workqueue semantics:
 *
 * - de-duplicated: a key added many times before a worker takes it is processed once;
 * - a key is never in two workers: added while processing, it is marked dirty
 *   and queued again only when the worker calls {@link WorkQueue.done};
 * - {@link WorkQueue.addRateLimited} for failures (per-key backoff and an
 *   overall rate limit), {@link WorkQueue.addAfter} for "requeue after".
 */
import type { Clock } from './clock.ts';
import { RateLimiter, type RateLimiterOptions } from './rate-limiter.ts';

export interface QueueHooks {
  /** Depth changed (keys waiting, not counting delayed ones). */
  onDepth?(depth: number): void;
  /** A key was handed to a worker after waiting `ms` in the queue. */
  onLatency?(ms: number): void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; cancel: () => void }>();
  private readonly waiters: Array<(key: string | undefined) => void> = [];
  private shuttingDown = false;
  readonly limiter: RateLimiter;

  private readonly clock: Clock;
  private readonly hooks: QueueHooks;

  constructor(clock: Clock, limits?: RateLimiterOptions, hooks: QueueHooks = {}) {
    this.clock = clock;
    this.hooks = hooks;
    this.limiter = new RateLimiter(clock, limits);
  }

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, this.clock.now());
    if (this.processing.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.hand(key, waiter);
      return;
    }
    this.queue.push(key);
    this.hooks.onDepth?.(this.queue.length);
  }

  /** Adds `key` after `ms`; an earlier pending delay for the key wins (like client-go's waiting heap). */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const prev = this.delayed.get(key);
    if (prev !== undefined && prev.at <= at) return;
    prev?.cancel();
    const cancel = this.clock.after(ms, () => {
      this.delayed.delete(key);
      this.add(key);
    });
    this.delayed.set(key, { at, cancel });
  }

  /** Re-adds a failed key after its backoff. */
  addRateLimited(key: string): void {
    this.addAfter(key, this.limiter.when(key));
  }

  /** Ends the key's backoff after a success. */
  forget(key: string): void {
    this.limiter.forget(key);
  }

  /** The next key; waits while the queue is empty. `undefined` once shut down. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.hooks.onDepth?.(this.queue.length);
      return new Promise((resolve) => this.hand(key, resolve));
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The worker finished `key`; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) {
      const waiter = this.waiters.shift();
      if (waiter !== undefined) this.hand(key, waiter);
      else {
        this.queue.push(key);
        this.hooks.onDepth?.(this.queue.length);
      }
    }
  }

  /** Stops handing out keys: waiting `get`s resolve `undefined`, timers are cancelled. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) d.cancel();
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private hand(key: string, to: (key: string) => void): void {
    this.dirty.delete(key);
    this.processing.add(key);
    const since = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (since !== undefined) this.hooks.onLatency?.(this.clock.now() - since);
    to(key);
  }
}
