/**
 * Reads `vegeta report -type json` (vegeta v12): the figures of one paced
 * run. vegeta gives latencies in nanoseconds; we keep microseconds like wrk.
 * Pure, so the parsing is tested on vegeta's real output.
 */
import { z } from 'zod';

const reportSchema = z.object({
  latencies: z.object({
    mean: z.number(),
    '50th': z.number(),
    '90th': z.number(),
    '99th': z.number(),
    max: z.number(),
  }),
  requests: z.number().int().nonnegative(),
  /** Requests sent per second of the attack. */
  rate: z.number(),
  /** Successful answers per second of attack + wait. */
  throughput: z.number(),
  success: z.number().min(0).max(1),
  status_codes: z.record(z.string(), z.number()),
  errors: z.array(z.string()).nullable(),
});

/** One paced run as the bench keeps it. Latencies in µs, rates in requests/s. */
export interface VegetaFigures {
  requests: number;
  achievedRate: number;
  success: number;
  latencyUs: { mean: number; p50: number; p90: number; p99: number; max: number };
  statusCodes: Record<string, number>;
  /** vegeta's distinct error messages (at most the first 5). */
  errors: string[];
}

/**
 * Parses vegeta's JSON report.
 *
 * @throws {Error} when `text` is not JSON or lacks a field the bench uses.
 */
export function parseVegetaReport(text: string): VegetaFigures {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`vegeta report is not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  }
  const parsed = reportSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`vegeta report lacks fields: ${parsed.error.message}`);
  const r = parsed.data;
  const us = (ns: number) => ns / 1000;
  return {
    requests: r.requests,
    achievedRate: r.rate,
    success: r.success,
    latencyUs: {
      mean: us(r.latencies.mean),
      p50: us(r.latencies['50th']),
      p90: us(r.latencies['90th']),
      p99: us(r.latencies['99th']),
      max: us(r.latencies.max),
    },
    statusCodes: r.status_codes,
    errors: (r.errors ?? []).slice(0, 5),
  };
}

/** The share of the asked rate below which a paced run counts as fallen behind. */
export const BEHIND_SHARE = 0.95;

/** Whether vegeta sent less than {@link BEHIND_SHARE} of the rate asked for. */
export function isBehind(rate: number, achievedRate: number): boolean {
  return achievedRate < rate * BEHIND_SHARE;
}

/**
 * The paced rate: `share` of HAProxy's saturated requests/s, rounded down to
 * a multiple of 100 (vegeta's rate is an integer per second), at least 100.
 */
export function pacedRate(haproxyRequestsPerS: number, share = 0.5): number {
  return Math.max(100, Math.floor((haproxyRequestsPerS * share) / 100) * 100);
}
