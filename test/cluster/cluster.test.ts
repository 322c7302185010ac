import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { cidrContains, cidrHost, kwokConfig, parseCidr } from './cluster.ts';

describe('CIDR helpers', () => {
  it('parses and rejects', () => {
    expect(parseCidr('10.244.1.7/24')).toEqual({
      base: (10 * 2 ** 24 + 244 * 2 ** 16 + 256) >>> 0,
      bits: 24,
    });
    expect(() => parseCidr('10.244.1.0')).toThrow(/not an IPv4 CIDR/);
    expect(() => parseCidr('10.300.1.0/24')).toThrow(/not an IPv4 CIDR/);
  });

  it('tells containment', () => {
    expect(cidrContains('10.244.0.0/16', '10.244.3.0/24')).toBe(true);
    expect(cidrContains('10.244.0.0/16', '10.245.0.0/24')).toBe(false);
    expect(cidrContains('10.244.0.0/16', '10.0.0.0/8')).toBe(false);
    expect(cidrContains('10.244.1.0/24', '10.244.1.9/32')).toBe(true);
  });

  it('numbers hosts', () => {
    expect(cidrHost('10.244.1.0/24', 1)).toBe('10.244.1.1');
    expect(cidrHost('10.244.0.0/16', 257)).toBe('10.244.1.1');
  });
});

describe('kwokConfig', () => {
  it('keeps the stages, speeds up pod stages, and makes pod-delete wait for the grace period', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stages-'));
    try {
      const stage = (name: string, kind: string, delay: object) =>
        `apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nmetadata:\n  name: ${name}\nspec:\n  resourceRef:\n    apiGroup: v1\n    kind: ${kind}\n  delay: ${JSON.stringify(delay)}\n`;
      writeFileSync(join(dir, 'a.yaml'), stage('node-initialize', 'Node', { durationMilliseconds: 5 }));
      writeFileSync(
        join(dir, 'b.yaml'),
        stage('pod-create', 'Pod', { durationMilliseconds: 1000, jitterDurationMilliseconds: 5000 }),
      );
      writeFileSync(
        join(dir, 'c.yaml'),
        stage('pod-delete', 'Pod', {
          durationMilliseconds: 1000,
          jitterDurationFrom: { expressionFrom: 'x' },
        }),
      );
      const docs = parseAllDocuments(kwokConfig(dir, 200, 500)).map((d) => d.toJS());
      expect(docs.every((d) => d.kind === 'Stage')).toBe(true);
      const byName = Object.fromEntries(docs.map((d) => [d.metadata.name, d.spec.delay]));
      expect(byName['node-initialize']).toEqual({ durationMilliseconds: 5 });
      expect(byName['pod-create']).toEqual({ durationMilliseconds: 200, jitterDurationMilliseconds: 700 });
      expect(byName['pod-delete']).toEqual({
        durationMilliseconds: 0,
        durationFrom: { expressionFrom: '.metadata.deletionTimestamp' },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
