/**
 * `make bench-readme`: writes the README's benchmark tables from
 * bench/results/latest.json (the last `make bench`) between the markers in
 * README.md's Benchmarks section.
 *
 * Usage: node bench/render-readme.ts [RESULTS_JSON [README]]
 * Exit codes: 0 written, 1 unreadable or invalid results, missing markers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { computeRatios } from './ratios.ts';
import { renderBenchSection, spliceReadme } from './readme-table.ts';
import { benchResultsSchema } from './results.ts';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const [resultsPath = join(REPO, 'bench', 'results', 'latest.json'), readmePath = join(REPO, 'README.md')] =
  process.argv.slice(2);

function fail(message: string): never {
  process.stderr.write(`bench-readme: ${message}\n`);
  process.exit(1);
}

let raw: unknown;
try {
  raw = JSON.parse(readFileSync(resultsPath, 'utf8'));
} catch (err) {
  fail(`cannot read ${resultsPath} (run \`make bench\` first): ${(err as Error).message}`);
}
const parsed = benchResultsSchema.safeParse(raw);
if (!parsed.success)
  fail(`${resultsPath} is not a result of this bench (run \`make bench\` again): ${parsed.error.message}`);
try {
  const readme = readFileSync(readmePath, 'utf8');
  // Ratios recomputed from the figures: the goals' rules as the code has them now.
  const results = { ...parsed.data, ratios: computeRatios(parsed.data) };
  writeFileSync(readmePath, spliceReadme(readme, renderBenchSection(results)));
} catch (err) {
  fail(`${readmePath}: ${(err as Error).message}`);
}
process.stdout.write(`bench-readme: ${readmePath} updated from ${resultsPath} (${parsed.data.finishedAt})\n`);
