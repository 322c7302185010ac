/**
 * Health of one endpoint, from passive observation of real requests and
 * from active checks. Pure state machine: the shell feeds it events and the
 * time; it never reads a clock itself.
 *
 * Passive (nginx `max_fails`/`fail_timeout`): `maxFails` failed attempts
 * within `failTimeout` make the endpoint unavailable for `failTimeout`; after
 * that it gets traffic again, and one more failure counts afresh.
 * `maxFails: 0` turns passive health off.
 *
 * Worked example: maxFails 2, failTimeout 10 s. Failures at t=0 s and t=4 s
 * → down until t=14 s. Failures at t=0 s and t=11 s → the first has aged
 * out of the window, so still up.
 *
 * Active (HAProxy `rise`/`fall`): `unhealthyThreshold` consecutive failed
 * checks mark it down, `healthyThreshold` consecutive good ones mark it up.
 * An endpoint starts up, so a new table serves at once (HAProxy's default).
 */
export class EndpointHealth {
  private failures: number[] = [];
  private passiveDownUntilMs = 0;
  private activeUp = true;
  private okStreak = 0;
  private failStreak = 0;

  /** Healthy by both passive and active health at `nowMs` (Unix ms). */
  isHealthy(nowMs: number): boolean {
    return this.activeUp && nowMs >= this.passiveDownUntilMs;
  }

  /** Whether active checks currently say up. */
  get activeHealthy(): boolean {
    return this.activeUp;
  }

  /**
   * Records a failed attempt of a real request (connect error, reset, timeout).
   *
   * @returns true when this failure took the endpoint down.
   */
  recordFailure(nowMs: number, maxFails: number, failTimeoutMs: number): boolean {
    if (maxFails <= 0) return false;
    const since = nowMs - failTimeoutMs;
    this.failures = this.failures.filter((t) => t > since);
    this.failures.push(nowMs);
    if (this.failures.length >= maxFails) {
      this.failures = [];
      this.passiveDownUntilMs = nowMs + failTimeoutMs;
      return true;
    }
    return false;
  }

  /**
   * Records one active check result.
   *
   * @returns true when the endpoint's active state changed.
   */
  recordCheck(ok: boolean, healthyThreshold: number, unhealthyThreshold: number): boolean {
    if (ok) {
      this.failStreak = 0;
      this.okStreak++;
      if (!this.activeUp && this.okStreak >= healthyThreshold) {
        this.activeUp = true;
        // A recovered endpoint starts with a clean passive slate too.
        this.passiveDownUntilMs = 0;
        this.failures = [];
        return true;
      }
    } else {
      this.okStreak = 0;
      this.failStreak++;
      if (this.activeUp && this.failStreak >= unhealthyThreshold) {
        this.activeUp = false;
        return true;
      }
    }
    return false;
  }
}
