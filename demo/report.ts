/**
 * Plain-text output of the demo: headings, aligned tables, and the claims
 * checked along the way (the exit status is whether they all held).
 */

const INDENT = '  ';

/** Prints a section heading. */
export function heading(title: string): void {
  process.stdout.write(`\n${title}\n${'─'.repeat(Math.min(title.length, 78))}\n`);
}

/** Prints indented lines of prose. */
export function say(...lines: string[]): void {
  for (const line of lines) process.stdout.write(`${INDENT}${line}\n`);
}

/**
 * Prints a table with left-aligned columns sized to their widest cell.
 *
 * @param header - column titles.
 * @param rows - cells, converted with `String()`.
 */
export function table(header: readonly string[], rows: readonly (readonly unknown[])[]): void {
  const cells = [header, ...rows.map((r) => r.map((c) => String(c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    `${INDENT}${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('   ')}`.trimEnd();
  process.stdout.write(`${line(header)}\n`);
  process.stdout.write(`${line(widths.map((w) => '-'.repeat(w)))}\n`);
  for (const r of cells.slice(1)) process.stdout.write(`${line(r)}\n`);
}

/** One claim of the demo and whether it held. */
interface Claim {
  readonly section: string;
  readonly claim: string;
  readonly ok: boolean;
  readonly detail: string;
}

/**
 * The claims the demo checks. Each is printed where it is made (`ok` or
 * `FAIL` with what was seen instead) and summed up at the end.
 */
export class Claims {
  private readonly all: Claim[] = [];
  private section = '';

  /** Names the section the next claims belong to (for the summary). */
  enter(section: string): void {
    this.section = section;
  }

  /**
   * Records and prints one claim.
   *
   * @param detail - what was seen when it failed (request, expected, got).
   * @returns `ok`, so a caller can skip what depends on it.
   */
  check(ok: boolean, claim: string, detail = ''): boolean {
    this.all.push({ section: this.section, claim, ok, detail });
    say(ok ? `ok    ${claim}` : `FAIL  ${claim}${detail === '' ? '' : `: ${detail}`}`);
    return ok;
  }

  get failed(): readonly Claim[] {
    return this.all.filter((c) => !c.ok);
  }

  get count(): number {
    return this.all.length;
  }

  /** Prints the summary; returns whether every claim held. */
  summarize(): boolean {
    const failed = this.failed;
    heading('Result');
    if (failed.length === 0) {
      say(`all ${this.all.length} claims held`);
      return true;
    }
    say(`${failed.length} of ${this.all.length} claims failed:`);
    for (const c of failed) say(`  [${c.section}] ${c.claim}${c.detail === '' ? '' : `: ${c.detail}`}`);
    return false;
  }
}
