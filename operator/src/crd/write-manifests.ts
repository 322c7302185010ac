/**
 * `make manifests`: writes the generated manifests (the CRD, the operator's
 * RBAC) next to the sources that read them. Run with the repo's Node 24.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderRbacYaml } from '../rbac.ts';
import { renderPoolCrdYaml } from './pool-crd.ts';

const root = join(import.meta.dirname, '..', '..', '..');
export const MANIFESTS: ReadonlyArray<{ file: string; render: () => string }> = [
  { file: join(root, 'crds', 'tether.dev_stickybackendpools.yaml'), render: renderPoolCrdYaml },
  { file: join(root, 'operator', 'rbac.yaml'), render: renderRbacYaml },
];

if (import.meta.main) {
  for (const m of MANIFESTS) {
    writeFileSync(m.file, m.render());
    process.stdout.write(`wrote ${m.file}\n`);
  }
}
