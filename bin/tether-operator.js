#!/usr/bin/env node
// Entry point of the `tether-operator` bin: the compiled build when present
// (`make build`), else the TypeScript sources, which Node 24 runs directly.
import { existsSync } from 'node:fs';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `tether-operator: needs Node.js 24 or newer, this is ${process.version} (use node_modules/.bin/node)\n`,
  );
  process.exit(2);
}
const built = new URL('../dist/operator/src/cli.js', import.meta.url);
const { main } = await import(
  existsSync(built) ? built.href : new URL('../operator/src/cli.ts', import.meta.url).href
);
main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`tether-operator: ${err?.stack ?? err}\n`);
  process.exit(1);
});
