/**
 * Revisions never go backwards: across reconciles, operator restarts and
 * leader changes. The next revision is one above the highest ever seen —
 * in this process's memory, in the pool's status, and as reported by any
 * proxy (a proxy answers a stale PUT with 409 and the revision it holds) —
 * unless the content is unchanged since the last table, which keeps its
 * revision so an idle reconcile pushes nothing new.
 */

/** What is known about earlier revisions of one pool. */
export interface RevisionFacts {
  /** Highest revision this process built (undefined after a start). */
  memory?: number | undefined;
  /** `status.routingTableRevision` and `status.routingTableHash` as read. */
  status?: { revision?: number | undefined; hash?: string | undefined } | undefined;
  /** Highest revision a proxy reported holding. */
  proxies?: number | undefined;
  /** Hash the revision in `memory` was built from. */
  memoryHash?: string | undefined;
}

/**
 * Worked example: status says 7 (hash h1), a proxy says 8 (an operator died
 * after pushing 8 and before writing status): content h1 → 9 (8 may hold
 * other content, so 8 cannot be reused); content h2 → 9 as well.
 * Status 7 (h1), no proxy above 7, content h1 → 7 (unchanged).
 *
 * @returns the revision for a table of content `hash`, ≥ 1.
 */
export function nextRevision(hash: string, facts: RevisionFacts): number {
  const known = Math.max(facts.memory ?? 0, facts.status?.revision ?? 0, facts.proxies ?? 0);
  const sameAsMemory = facts.memory !== undefined && facts.memory === known && facts.memoryHash === hash;
  const sameAsStatus =
    facts.status?.revision !== undefined && facts.status.revision === known && facts.status.hash === hash;
  if (known > 0 && (sameAsMemory || sameAsStatus)) return known;
  return known + 1;
}
