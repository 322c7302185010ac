/**
 * `--workers`: the decision of a two-phase table swap, from every worker's
 * answer to `prepare` (pure; the primary does the I/O). One rule, as in a
 * two-phase commit: commit only when every worker prepared the table,
 * otherwise every worker aborts and none serves it.
 */

/** One worker's answer to `prepare`. */
export type PrepareAnswer =
  | { readonly slot: number; readonly ok: true }
  | {
      readonly slot: number;
      readonly ok: false;
      /** `invalid`: the worker could not build what the table needs; `failed`: no answer, an exit, an error; `stale`/`wrong_pool`: it disagrees with the primary. */
      readonly reason: 'invalid' | 'failed' | 'stale' | 'wrong_pool';
      readonly message: string;
    };

/** What the primary does next, and what the offer answers when it aborts. */
export type SwapDecision =
  | { readonly commit: true }
  | {
      readonly commit: false;
      /** `invalid` (400) when a worker found the table unusable, as a single process would; else `unavailable` (503, retry). */
      readonly reason: 'invalid' | 'unavailable';
      /** Every refusal, by worker: `worker 1: …; worker 3: …`. */
      readonly why: string;
    };

/**
 * Example: answers `[{0, ok}, {1, failed, "did not answer prepare within 1000 ms"}]`
 * → abort, `unavailable`, "worker 1: did not answer prepare within 1000 ms".
 * No answers at all (no worker serving) → commit: the primary's record
 * changes alone and each worker boots with it.
 */
export function decideSwap(answers: readonly PrepareAnswer[]): SwapDecision {
  const refused = answers.filter((a): a is Extract<PrepareAnswer, { ok: false }> => !a.ok);
  if (refused.length === 0) return { commit: true };
  return {
    commit: false,
    reason: refused.some((a) => a.reason === 'invalid') ? 'invalid' : 'unavailable',
    why: refused.map((a) => `worker ${a.slot}: ${a.message}`).join('; '),
  };
}
