/**
 * `--workers`: whether the workers agree on the routing table, for
 * `/readyz`. Pure: the primary gathers each worker's own report and asks.
 */

/** What the primary knows of one worker slot when `/readyz` is asked. */
export interface WorkerReport {
  /** The slot, 0..N-1: a re-forked worker takes its predecessor's slot. */
  readonly slot: number;
  /** `serving`: booted with the table and listening; `starting`: forked, not yet serving; `down`: waiting to be re-forked. */
  readonly state: 'starting' | 'serving' | 'down';
  /** The revision the worker itself reported just now; undefined when it has no table or did not answer. */
  readonly revision: number | undefined;
  /** Whether the worker answered the status request in time. */
  readonly answered: boolean;
}

/** The answer of {@link decideAgreement}. */
export type Agreement =
  | { readonly ready: true; readonly revision: number; readonly workers: number }
  | { readonly ready: false; readonly reason: string };

/**
 * Ready when a table is committed, every slot has a serving worker that
 * answered, and each of them reports exactly the committed revision. A
 * worker behind or ahead of the primary is not ready: the pod must not take
 * traffic while two revisions could answer.
 *
 * Example: 2 slots, committed 7, reports `[{0, serving, 7}, {1, starting}]`
 * → not ready, "worker 1 is starting"; once slot 1 serves 7 → ready, revision 7.
 *
 * @param slots - the N of `--workers N`.
 * @param committed - the revision the primary committed; undefined before the first table.
 */
export function decideAgreement(
  slots: number,
  committed: number | undefined,
  reports: readonly WorkerReport[],
): Agreement {
  if (committed === undefined) return { ready: false, reason: 'no routing table yet' };
  const problems: string[] = [];
  for (let slot = 0; slot < slots; slot++) {
    const r = reports.find((w) => w.slot === slot);
    if (r === undefined || r.state === 'down') problems.push(`worker ${slot} is down`);
    else if (r.state === 'starting') problems.push(`worker ${slot} is starting`);
    else if (!r.answered) problems.push(`worker ${slot} does not answer`);
    else if (r.revision !== committed)
      problems.push(`worker ${slot} serves revision ${r.revision ?? 'none'}, not ${committed}`);
  }
  if (problems.length > 0) return { ready: false, reason: problems.join('; ') };
  return { ready: true, revision: committed, workers: slots };
}
