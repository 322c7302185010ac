/**
 * Kubernetes/Go-style durations ("500ms", "10s", "30m", "24h", "1h30m"), the
 * form `metav1.Duration` fields and Gateway API GEP-2257 use.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** Regex a duration string must match; also used in the CRD's OpenAPI `pattern`. */
export const DURATION_PATTERN = /^([0-9]{1,9}(ms|s|m|h))+$/;

/**
 * Parses a duration into milliseconds.
 *
 * Worked example: `"1h30m"` → 3_600_000 + 1_800_000 = 5_400_000 ms.
 *
 * @param text - one or more `<integer><unit>` groups, unit one of `ms`, `s`, `m`, `h`.
 * @returns the duration in ms (an integer ≥ 0).
 * @throws {RangeError} when the text is not of that form.
 */
export function parseDuration(text: string): number {
  if (!DURATION_PATTERN.test(text)) {
    throw new RangeError(
      `invalid duration ${JSON.stringify(text)}: want e.g. "500ms", "10s", "30m", "1h30m"`,
    );
  }
  let total = 0;
  for (const m of text.matchAll(/([0-9]+)(ms|s|m|h)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return total;
}
