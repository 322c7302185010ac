/**
 * A small circuit breaker for the session store on the request path, so a
 * store that hangs costs a few requests the full timeout, not every one
 * (the pattern of Envoy's outlier ejection and Hystrix: closed → open after
 * consecutive failures → half-open with one probe → closed or open again).
 * Pure: the caller passes the clock.
 *
 * Worked example, threshold 3, open 500 ms, max 5 s: three calls time out
 * (50 ms each) → open; for 500 ms every lookup falls back at once; then one
 * probe goes to the store: it times out → open for 1 s, then 2 s, 4 s, 5 s,
 * 5 s …; the first probe that succeeds closes it and resets the 500 ms.
 */

/** Settings of a {@link CircuitBreaker}. */
export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  readonly failureThreshold: number;
  /** First open period, ms; doubled after each failed probe. */
  readonly openMs: number;
  /** Longest open period, ms. */
  readonly maxOpenMs: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export class CircuitBreaker {
  private readonly o: BreakerOptions;
  private failures = 0;
  private openUntil = 0;
  private currentOpenMs: number;
  private probing = false;
  private s: BreakerState = 'closed';

  constructor(o: BreakerOptions) {
    this.o = o;
    this.currentOpenMs = o.openMs;
  }

  get state(): BreakerState {
    return this.s;
  }

  /** When an open breaker lets its probe through, Unix ms (the caller's clock); 0 unless open. */
  get probeAtMs(): number {
    return this.s === 'open' ? this.openUntil : 0;
  }

  /**
   * Whether a call may go to the store now. Once the open period is over,
   * exactly one caller gets true (the probe) until it reports back.
   *
   * @param nowMs - the caller's clock, ms.
   */
  allow(nowMs: number): boolean {
    if (this.s === 'closed') return true;
    if (this.s === 'open' && nowMs >= this.openUntil) {
      this.s = 'half-open';
      this.probing = false;
    }
    if (this.s === 'half-open' && !this.probing) {
      this.probing = true;
      return true;
    }
    return false;
  }

  /** A call answered: closes the breaker. */
  succeed(): void {
    this.s = 'closed';
    this.failures = 0;
    this.probing = false;
    this.currentOpenMs = this.o.openMs;
  }

  /**
   * A call failed (timed out or errored).
   * @returns true when this failure opened the breaker.
   */
  fail(nowMs: number): boolean {
    if (this.s === 'half-open') {
      this.currentOpenMs = Math.min(this.o.maxOpenMs, this.currentOpenMs * 2);
      this.open(nowMs);
      return true;
    }
    if (this.s === 'open') return false;
    this.failures++;
    if (this.failures < this.o.failureThreshold) return false;
    this.open(nowMs);
    return true;
  }

  private open(nowMs: number): void {
    this.s = 'open';
    this.probing = false;
    this.failures = 0;
    this.openUntil = nowMs + this.currentOpenMs;
  }
}
