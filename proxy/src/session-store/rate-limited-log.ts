/**
 * At most one log line per interval for a condition that can repeat on
 * every request (a store that is down), with the count of the ones left
 * out since (nginx logs every upstream error; at thousands of requests per
 * second that buries everything else). Pure: the caller passes the clock.
 */
export class RateLimitedLog {
  private readonly intervalMs: number;
  private last = Number.NEGATIVE_INFINITY;
  private suppressed = 0;

  /** @param intervalMs - the least time between two lines, ms. */
  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /**
   * Called once per occurrence.
   * @returns `{ suppressed }` (occurrences not logged since the last line) when this one is to be logged, else undefined.
   */
  take(nowMs: number): { suppressed: number } | undefined {
    if (nowMs - this.last < this.intervalMs) {
      this.suppressed++;
      return undefined;
    }
    const suppressed = this.suppressed;
    this.last = nowMs;
    this.suppressed = 0;
    return { suppressed };
  }
}
