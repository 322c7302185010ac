/**
 * The standalone proxy's pool file: a StickyBackendPool in YAML (or JSON)
 * with static `spec.backend.endpoints`, turned into a routing table.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { checkSpecDurations, stickyBackendPoolSchema } from './api/pool-spec.ts';
import { buildRoutingTable, type RoutingTable } from './api/routing-table.ts';
import { TetherError } from './errors.ts';
import { proxySupportProblems } from './support.ts';
import type { OfferResult, TableSource } from './table-store.ts';

/**
 * Parses a pool file's text into a routing table.
 *
 * @param revision - the revision the table gets (the caller counts file reloads).
 * @throws {TetherError} code `TETHER_INVALID_CONFIG`, with every problem in the message.
 */
export function parsePoolFile(text: string, revision: number): RoutingTable {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs) || docs.length !== 1) throw invalid('want exactly one YAML document');
  const doc = docs[0];
  if (doc === undefined || doc.errors.length > 0)
    throw invalid(`YAML: ${doc?.errors.map((e) => e.message).join('; ')}`);
  const parsed = stickyBackendPoolSchema.safeParse(doc.toJS());
  if (!parsed.success) throw invalid(z.prettifyError(parsed.error));
  const problems = checkSpecDurations(parsed.data.spec);
  if (problems.length > 0) throw invalid(problems.join('; '));
  let table: RoutingTable;
  try {
    table = buildRoutingTable(parsed.data, revision);
  } catch (err) {
    throw invalid(err instanceof z.ZodError ? z.prettifyError(err) : (err as Error).message);
  }
  const unsupported = proxySupportProblems(table);
  if (unsupported.length > 0) throw invalid(unsupported.join('; '));
  return table;
}

function invalid(message: string): TetherError {
  return new TetherError('TETHER_INVALID_CONFIG', message);
}

/**
 * Where the pool file's tables go: a {@link TableStore} (one process), or
 * the primary of `--workers`, whose offer resolves once every worker decided.
 */
export interface TableSink {
  readonly current: { readonly revision: number } | undefined;
  offer(table: RoutingTable, source: TableSource): OfferResult | Promise<OfferResult>;
}

/** What one reload of the pool file did. */
export type ReloadResult = { outcome: 'swapped' | 'unchanged' } | { outcome: 'rejected'; error: TetherError };

/**
 * The pool file as a source of routing tables: each changed content becomes
 * the next revision; content seen before (an editor's touch, a repeated
 * watch event) is skipped, so a bad file is reported once, not per event.
 */
export class PoolFileSource {
  readonly path: string;
  private readonly store: TableSink;
  private lastDigest = '';

  constructor(path: string, store: TableSink) {
    this.path = path;
    this.store = store;
  }

  /**
   * Reads the file once and, when its content changed, offers it to the
   * store as the next revision. Never throws: a bad or unreadable file comes
   * back as `rejected`, and the store keeps its table.
   */
  async reload(): Promise<ReloadResult> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      return {
        outcome: 'rejected',
        error: new TetherError(
          'TETHER_INVALID_CONFIG',
          `cannot read ${this.path}: ${(err as Error).message}`,
          { cause: err },
        ),
      };
    }
    const digest = createHash('sha256').update(text).digest('hex');
    if (digest === this.lastDigest) return { outcome: 'unchanged' };
    this.lastDigest = digest;
    try {
      const result = await this.store.offer(
        parsePoolFile(text, (this.store.current?.revision ?? 0) + 1),
        'file',
      );
      if (!result.accepted)
        return {
          outcome: 'rejected',
          error: new TetherError(
            result.reason === 'invalid'
              ? 'TETHER_INVALID_CONFIG'
              : result.reason === 'unavailable'
                ? 'TETHER_WORKERS_UNAVAILABLE'
                : 'TETHER_STALE_REVISION',
            result.message,
          ),
        };
      return { outcome: result.changed ? 'swapped' : 'unchanged' };
    } catch (err) {
      return { outcome: 'rejected', error: err as TetherError };
    }
  }

  /** Forgets the last content, so the next reload re-reads and re-offers it (SIGHUP). */
  forget(): void {
    this.lastDigest = '';
  }
}
