/**
 * Holds the one routing table the proxy serves and decides whether an
 * offered table replaces it. Swaps are atomic: a request reads `current`
 * once and uses that table to the end.
 */
import { isDeepStrictEqual } from 'node:util';
import type { RoutingTable } from './api/routing-table.ts';
import { type CompiledTable, compileTable } from './routing/compiled-table.ts';

/** Where a table came from: the pool file, or a PUT on the admin API. */
export type TableSource = 'file' | 'admin';

export type OfferResult =
  | { accepted: true; changed: boolean; table: CompiledTable }
  | { accepted: false; reason: 'stale' | 'wrong_pool'; message: string };

export class TableStore {
  private table: CompiledTable | undefined;
  private readonly onSwap: (table: CompiledTable, source: TableSource) => void;

  /** @param onSwap - called after each swap, before the next request sees the table. */
  constructor(onSwap: (table: CompiledTable, source: TableSource) => void) {
    this.onSwap = onSwap;
  }

  get current(): CompiledTable | undefined {
    return this.table;
  }

  /**
   * Offers a validated table.
   *
   * - A lower revision is stale (the proxy answers 409 and keeps serving).
   * - The same revision with the same content is accepted unchanged, so an
   *   operator's retry is idempotent; with other content it is stale.
   * - From the admin API, a table of another pool is refused: a proxy serves
   *   one pool. The pool file may rename the pool (it is the whole config).
   */
  offer(next: RoutingTable, source: TableSource): OfferResult {
    const cur = this.table;
    if (cur !== undefined) {
      if (cur.pool !== next.pool && source === 'admin') {
        return {
          accepted: false,
          reason: 'wrong_pool',
          message: `this proxy serves pool ${cur.pool}, not ${next.pool}`,
        };
      }
      if (cur.pool === next.pool) {
        if (next.revision < cur.revision) {
          return {
            accepted: false,
            reason: 'stale',
            message: `revision ${next.revision} is older than ${cur.revision}, which is kept`,
          };
        }
        if (next.revision === cur.revision) {
          if (isDeepStrictEqual(next, cur.source)) return { accepted: true, changed: false, table: cur };
          return {
            accepted: false,
            reason: 'stale',
            message: `revision ${next.revision} is already served with other content`,
          };
        }
      }
    }
    const compiled = compileTable(next, cur, Date.now());
    this.table = compiled;
    this.onSwap(compiled, source);
    return { accepted: true, changed: true, table: compiled };
  }
}
