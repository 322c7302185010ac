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

/**
 * The answer to an offered table. `unavailable` only comes from `--workers`
 * mode: a worker did not take the table (it exited or did not answer in
 * time), so no worker took it.
 */
export type OfferResult =
  | { accepted: true; changed: boolean; table: CompiledTable }
  | { accepted: false; reason: 'stale' | 'wrong_pool' | 'invalid' | 'unavailable'; message: string };

/**
 * A table accepted by {@link TableStore.stage} and made ready to serve, not
 * yet served: exactly one of `commit` (serve it) or `abort` (drop what was
 * built for it) must follow. The first phase of a two-phase swap, so that
 * several processes (`--workers`) swap all or none.
 */
export type StagedOffer = Extract<OfferResult, { accepted: true }> & {
  /**
   * Serves the table (when `changed`) and reports the swap.
   * @throws {Error} when another table was swapped in since the stage (a caller's bug: swaps must be serialized).
   */
  commit(): void;
  /** Drops what preparing the table built; the served table was never touched. */
  abort(): void;
};

/** The two steps {@link PrepareTable} may return: serve the prepared table, or drop it. */
export interface PreparedSwap {
  commit(): void;
  abort(): void;
}

/**
 * Builds what serving a table needs (pools, runtimes) without serving it,
 * and returns the step that serves it (a function, or a {@link PreparedSwap}
 * that can also be dropped). Throws when the table cannot be served; the
 * steps it returns must not throw.
 */
export type PrepareTable = (table: CompiledTable) => (() => void) | PreparedSwap;

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
    const staged = this.stage(next, source);
    if (!staged.accepted) return staged;
    staged.commit();
    return { accepted: true, changed: staged.changed, table: staged.table };
  }

  /**
   * The first phase of {@link offer}: decides and prepares everything that
   * can fail, and serves nothing until `commit()`. The same rules as
   * {@link offer}; an unchanged table's commit and abort do nothing.
   */
  stage(next: RoutingTable, source: TableSource): StagedOffer | Extract<OfferResult, { accepted: false }> {
    const cur = this.table;
    const noop = (): void => {};
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
          if (isDeepStrictEqual(next, cur.source))
            return { accepted: true, changed: false, table: cur, commit: noop, abort: noop };
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
    let prepared: (() => void) | PreparedSwap | undefined;
    try {
      compiled = compileTable(next, cur, Date.now());
      prepared = this.prepare?.(compiled);
    } catch (err) {
      return {
        accepted: false,
        reason: 'invalid',
        message: `table cannot be applied: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
    let done = false;
    return {
      accepted: true,
      changed: true,
      table: compiled,
      commit: () => {
        if (done) return;
        if (this.table !== cur)
          throw new Error(`revision ${compiled.revision} was staged over another table`);
        done = true;
        this.table = compiled;
        if (typeof prepared === 'function') prepared();
        else prepared?.commit();
        this.onSwap(compiled, source);
      },
      abort: () => {
        if (done) return;
        done = true;
        if (typeof prepared === 'object') prepared.abort();
      },
    };
  }
}
