import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  binaryPaths,
  buildKubeconfig,
  CONTROL_PLANE_DIR,
  defaultBinDir,
  parseEnvFile,
  readVersions,
} from './control-plane.ts';

describe('parseEnvFile', () => {
  it('reads KEY=value lines, skipping comments and blanks, unquoting values', () => {
    expect(parseEnvFile('# c\n\nA=1\nexport B="two"\nC=\'3\'\n')).toEqual({ A: '1', B: 'two', C: '3' });
  });

  it('rejects lines it does not understand', () => {
    expect(() => parseEnvFile('not a pair\n')).toThrow(/cannot parse/);
  });
});

describe('readVersions', () => {
  it('reads the pinned versions file', () => {
    const v = readVersions();
    expect(v.kubernetes).toMatch(/^v1\.\d+\.\d+$/);
    expect(v.etcd).toMatch(/^v3\.\d+\.\d+$/);
    expect(v.helm).toMatch(/^v[34]\.\d+\.\d+$/);
    expect(v.kwok).toMatch(/^v0\.\d+\.\d+$/);
  });

  it('agrees with what build.sh sources (same keys)', () => {
    const text = readFileSync(join(CONTROL_PLANE_DIR, 'versions.env'), 'utf8');
    expect(Object.keys(parseEnvFile(text)).sort()).toEqual([
      'ETCD_VERSION',
      'HELM_VERSION',
      'KUBERNETES_VERSION',
      'KWOK_VERSION',
      'PROMETHEUS_OPERATOR_VERSION',
    ]);
  });
});

describe('binary locations', () => {
  it('follows build.sh: $TETHER_CACHE/bin or ~/.cache/tether/bin', () => {
    expect(defaultBinDir({ TETHER_CACHE: '/c' })).toBe('/c/bin');
    expect(defaultBinDir({ HOME: '/h' })).toBe('/h/.cache/tether/bin');
  });

  it('names binaries by version', () => {
    expect(binaryPaths('/b', { kubernetes: 'v1.2.3', etcd: 'v3.4.5', helm: 'v4.0.0' })).toEqual({
      etcd: '/b/etcd-v3.4.5',
      kubeApiserver: '/b/kube-apiserver-v1.2.3',
      kubectl: '/b/kubectl-v1.2.3',
      helm: '/b/helm-v4.0.0',
    });
  });
});

describe('buildKubeconfig', () => {
  it('writes a kubeconfig with embedded credentials and one current context', () => {
    const text = buildKubeconfig({
      server: 'https://127.0.0.1:6443',
      caPem: 'CA',
      certPem: 'CERT',
      keyPem: 'KEY',
      user: 'alice',
      namespace: 'ns1',
    });
    const kc = parse(text);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    expect(kc['current-context']).toBe('tether-test');
    expect(kc.clusters[0].cluster).toEqual({
      server: 'https://127.0.0.1:6443',
      'certificate-authority-data': b64('CA'),
    });
    expect(kc.users[0]).toEqual({
      name: 'alice',
      user: { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY') },
    });
    expect(kc.contexts[0].context).toEqual({ cluster: 'tether-test', user: 'alice', namespace: 'ns1' });
  });
});
