/**
 * `--workers`: when to re-fork a worker that exited, as a supervisor would
 * (systemd `RestartSec` with a growing delay, kubelet's CrashLoopBackOff):
 * at once after a worker that had been up a while, then doubling delays
 * while it keeps dying soon after its start, so a crash loop neither spins
 * a core nor floods the log. Pure: the caller passes the times.
 */

/** Settings of {@link RestartBackoff}, ms. */
export interface BackoffOptions {
  /** Delay before the re-fork after the first quick exit, ms. */
  readonly initialMs: number;
  /** The delay never grows past this, ms. */
  readonly maxMs: number;
  /** A worker up at least this long was healthy: its exit starts the count again, ms. */
  readonly healthyAfterMs: number;
}

/** Defaults: 100 ms, doubling to 10 s; a worker up 10 s resets the count. */
export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 100, maxMs: 10_000, healthyAfterMs: 10_000 };

/**
 * The restart delay of one worker slot.
 *
 * Example (defaults): a worker that dies 1 s after each start is re-forked
 * after 100 ms, 200 ms, 400 ms, … 6.4 s, 10 s, 10 s; one that ran 10 s or
 * more before dying is re-forked after 0 ms, and its next quick exit waits
 * 100 ms again.
 */
export class RestartBackoff {
  private readonly o: BackoffOptions;
  /** Exits in a row that came sooner than `healthyAfterMs` after their start. */
  private quickExits = 0;

  constructor(o: Partial<BackoffOptions> = {}) {
    this.o = { ...DEFAULT_BACKOFF, ...o };
  }

  /**
   * Records an exit and returns the delay before the re-fork.
   *
   * @param upMs - how long the worker had run (fork to exit), ms.
   * @returns the delay, ms: 0 after a healthy run, else `initialMs × 2^(k-1)` for the k-th quick exit in a row, at most `maxMs`.
   */
  onExit(upMs: number): number {
    if (upMs >= this.o.healthyAfterMs) {
      this.quickExits = 0;
      return 0;
    }
    this.quickExits++;
    // 2^30 ms is already 12 days: cap the exponent before it overflows.
    const exp = Math.min(this.quickExits - 1, 30);
    return Math.min(this.o.maxMs, this.o.initialMs * 2 ** exp);
  }

  /** Quick exits in a row so far (for logs). */
  get consecutiveQuickExits(): number {
    return this.quickExits;
  }
}
