/**
 * The standalone proxy's pool file: a StickyBackendPool in YAML (or JSON)
 * with static `spec.backend.endpoints`, turned into a routing table.
 */
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { checkSpecDurations, stickyBackendPoolSchema } from './api/pool-spec.ts';
import { buildRoutingTable, type RoutingTable } from './api/routing-table.ts';
import { TetherError } from './errors.ts';
import { proxySupportProblems } from './support.ts';

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
    throw invalid((err as Error).message);
  }
  const unsupported = proxySupportProblems(table);
  if (unsupported.length > 0) throw invalid(unsupported.join('; '));
  return table;
}

/** Reads and parses a pool file. @throws {TetherError} `TETHER_INVALID_CONFIG`, also when unreadable. */
export async function loadPoolFile(path: string, revision: number): Promise<RoutingTable> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TetherError('TETHER_INVALID_CONFIG', `cannot read ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parsePoolFile(text, revision);
}

function invalid(message: string): TetherError {
  return new TetherError('TETHER_INVALID_CONFIG', message);
}
