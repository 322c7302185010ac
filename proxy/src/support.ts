/**
 * What a valid routing table may still ask of the proxy that this version
 * cannot do. Refused up front (400 / file rejected) rather than half-served.
 */
import type { RoutingTable } from './api/routing-table.ts';

/** @returns one sentence per unsupported feature; empty when the proxy can serve the table. */
export function proxySupportProblems(table: RoutingTable): string[] {
  const problems: string[] = [];
  if (table.affinity.type === 'Learn') {
    problems.push(
      'affinity.type Learn needs the replicated session store, which this proxy version does not use yet',
    );
  }
  return problems;
}
