/**
 * client-go's default controller rate limiter: the larger of a per-key
 * exponential backoff (5 ms · 2^failures, at most 1000 s) and an overall
 * token bucket (10 per second, burst 100), so one failing pool backs off
 * alone and a storm of failures cannot hammer the apiserver.
 */
import type { Clock } from './clock.ts';

export interface RateLimiterOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Tokens per second of the overall bucket. */
  qps: number;
  burst: number;
}

export const DEFAULT_RATE_LIMITS: RateLimiterOptions = {
  baseDelayMs: 5,
  maxDelayMs: 1_000_000,
  qps: 10,
  burst: 100,
};

export class RateLimiter {
  private readonly failures = new Map<string, number>();
  private tokens: number;
  private last: number;

  private readonly clock: Clock;
  private readonly o: RateLimiterOptions;

  constructor(clock: Clock, o: RateLimiterOptions = DEFAULT_RATE_LIMITS) {
    this.clock = clock;
    this.o = o;
    this.tokens = o.burst;
    this.last = clock.now();
  }

  /**
   * The delay before `key` may be retried, in ms; counts one more failure.
   * Worked example: 5 ms, 10, 20, … the 19th failure gives 5·2^18 ≈ 1311 s → capped at 1000 s.
   */
  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const backoff = Math.min(this.o.baseDelayMs * 2 ** n, this.o.maxDelayMs);
    return Math.max(backoff, this.reserve());
  }

  /** Failures counted for `key` since its last {@link forget}. */
  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Clears the key's backoff (after a success). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Takes a token (possibly a future one, like golang.org/x/time/rate Reserve) and returns the wait in ms. */
  private reserve(): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.o.burst, this.tokens + ((now - this.last) / 1000) * this.o.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.o.qps) * 1000;
  }
}
