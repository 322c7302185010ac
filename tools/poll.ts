/**
 * Polling: ask again and again until the answer is there or time is up.
 *
 * Units: every duration is in milliseconds.
 */

/** The pause between two calls of a probe, by default, ms. */
export const DEFAULT_POLL_INTERVAL_MS = 50;

/**
 * Calls `probe` until it returns something other than `undefined` or
 * `false`, pausing `intervalMs` between calls. `probe` runs at least once,
 * and once more after the last pause that starts before `timeoutMs` is up.
 *
 * @returns what `probe` returned, or `undefined` when `timeoutMs` passed first.
 * @throws whatever `probe` throws (the polling stops there); wrap it to retry on errors.
 */
export async function pollUntil<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs: number,
  intervalMs = DEFAULT_POLL_INTERVAL_MS,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined && got !== false) return got;
    if (Date.now() >= deadline) return undefined;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
