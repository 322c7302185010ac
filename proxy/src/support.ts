/**
 * What a valid routing table may still ask of the proxy that this version,
 * or this process's configuration, cannot do. Refused up front (400 / file
 * rejected) rather than half-served.
 */
import type { RoutingTable } from './api/routing-table.ts';

/**
 * What this proxy version cannot serve, whatever its flags (the operator
 * asks this of a pool's spec too).
 *
 * @returns one sentence per unsupported feature; empty when the proxy can serve the table.
 */
export function proxySupportProblems(_table: RoutingTable): string[] {
  return [];
}

/**
 * What a table needs of the session store that this process lacks: Learn
 * affinity and persisted pins live in the store, so without `--session-store`
 * they are refused rather than served as something else.
 *
 * @param hasStore - the proxy was started with `--session-store`.
 * @returns one sentence per need; empty when the table can be served.
 */
export function sessionStoreProblems(
  table: Pick<RoutingTable, 'affinity' | 'sessionStore'>,
  hasStore: boolean,
): string[] {
  if (hasStore) return [];
  const problems: string[] = [];
  if (table.affinity.type === 'Learn')
    problems.push(
      'affinity.type Learn needs the session store: the learned pins live there (start tether-proxy with --session-store DIR)',
    );
  if (table.sessionStore?.persistPins === true && table.affinity.type !== 'Cookie')
    problems.push(
      'sessionStore.persistPins needs the session store: the pins live there (start tether-proxy with --session-store DIR)',
    );
  return problems;
}
