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
  | { accepted: false; reason: 'stale' | 'wrong_pool' | 'invalid'; message: string };

/**
 * Builds what serving a table needs (pools, runtimes) without serving it,
 * and returns the step that serves it. Throws when the table cannot be
 * served; the step it returns must not throw.
 */
export type PrepareTable = (table: CompiledTable) => () => void;

export class TableStore {
  private table: CompiledTable | undefined;
  private readonly onSwap: (table: CompiledTable, source: TableSource) => void;
  private readonly prepare: PrepareTable | undefined;

  /**
   * @param onSwap - called after each swap, before the next request sees the table.
   * @param prepare - run before a swap; when it throws, the offer is rejected
   *   (`invalid`) and the served table is left as it was.
   */
  constructor(onSwap: (table: CompiledTable, source: TableSource) => void, prepare?: PrepareTable) {
    this.onSwap = onSwap;
    this.prepare = prepare;
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
    // All or nothing: everything that can fail happens before the swap.
    let compiled: CompiledTable;
    let serve: (() => void) | undefined;
    try {
      compiled = compileTable(next, cur, Date.now());
      serve = this.prepare?.(compiled);
    } catch (err) {
      return {
        accepted: false,
        reason: 'invalid',
        message: `table cannot be applied: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
    this.table = compiled;
    serve?.();
    this.onSwap(compiled, source);
    return { accepted: true, changed: true, table: compiled };
  }
}
