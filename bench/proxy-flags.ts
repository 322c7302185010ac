/**
 * What the bench asks of `tether-proxy`'s command line. Pure.
 */

/**
 * Whether `tether-proxy --help` offers `--workers` (issue 12's N processes
 * on one port, being added on its own branch): the workers step measures
 * scaling only when it does, and says it skipped otherwise.
 */
export function hasWorkersFlag(helpText: string): boolean {
  return /(^|[\s[])--workers(?![\w-])/m.test(helpText);
}

/** The limit a process needs for `connections` sockets of its own, plus room for endpoints, logs, pipes. */
export function fdsNeeded(connections: number): number {
  return connections + 1_024;
}

/**
 * The soft and hard `Max open files` of `/proc/<pid>/limits` text, or
 * undefined when the line is absent; `unlimited` reads as Infinity.
 */
export function parseNofileLimit(limitsText: string): { soft: number; hard: number } | undefined {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limitsText);
  if (m === null) return undefined;
  const num = (s: string) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  return { soft: num(m[1] as string), hard: num(m[2] as string) };
}
