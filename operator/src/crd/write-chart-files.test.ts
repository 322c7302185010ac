import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CLUSTER_RULES, LEADER_ELECTION_RULES } from '../rbac.ts';
import { buildPoolCrd } from './pool-crd.ts';
import { CHART_FILES } from './write-chart-files.ts';

describe('chart copies of the CRD and RBAC', () => {
  it.each(CHART_FILES.map((f) => ({ desc: f.file.split('/').slice(-3).join('/'), f })))(
    '$desc equals the generator output (run `make manifests`)',
    ({ f }) => {
      expect(readFileSync(f.file, 'utf8')).toBe(f.render());
    },
  );

  it('the CRD spec copy is the generated CRD spec, and the rules are the operator rules', () => {
    const [crd, rbac] = CHART_FILES.map((f) => parse(f.render()));
    expect(crd).toEqual((buildPoolCrd() as { spec: unknown }).spec);
    expect(rbac).toEqual({ clusterRules: CLUSTER_RULES, leaderElectionRules: LEADER_ELECTION_RULES });
  });
});
