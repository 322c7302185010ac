import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  buildArgv,
  defaultImageTable,
  findImage,
  TEST_BACKEND_IMAGE_RULE,
  TETHER_IMAGE_RULE,
  VALKEY_IMAGE_RULE,
} from './images.ts';
import {
  expandVars,
  fieldRefValue,
  MissingObjectError,
  type ObjectLookup,
  planVolumes,
  resolveEnv,
  rewriteMountPaths,
} from './pod-spec.ts';

const pod: V1Pod = {
  metadata: { name: 'web-1', namespace: 'ns1', uid: 'u1', labels: { app: 'web' } },
  spec: {
    nodeName: 'n1',
    containers: [],
    volumes: [
      { name: 'sec', secret: { secretName: 's1' } },
      { name: 'cm', configMap: { name: 'c1', items: [{ key: 'k', path: 'dir/file' }] } },
      { name: 'opt', secret: { secretName: 'nope', optional: true } },
    ],
  },
  status: { podIP: '10.244.1.5', hostIP: '10.244.0.1' },
};
const lookup: ObjectLookup = {
  secret: (ns, name) => (ns === 'ns1' && name === 's1' ? { token: Buffer.from('t0p') } : undefined),
  configMap: (ns, name) => (ns === 'ns1' && name === 'c1' ? { k: Buffer.from('v') } : undefined),
};

describe('fieldRefValue', () => {
  it('reads the downward-API fields the kubelet supports', () => {
    expect(fieldRefValue(pod, 'metadata.name')).toBe('web-1');
    expect(fieldRefValue(pod, 'status.podIP')).toBe('10.244.1.5');
    expect(fieldRefValue(pod, "metadata.labels['app']")).toBe('web');
    expect(() => fieldRefValue(pod, 'spec.bogus')).toThrow(/not supported/);
  });
});

describe('expandVars', () => {
  it('expands defined $(VAR), keeps undefined ones, and $$ escapes', () => {
    expect(expandVars('$(A):$(B):$$(A)', { A: 'x' })).toBe('x:$(B):$(A)');
  });
});

describe('resolveEnv', () => {
  it('resolves values, fieldRefs and secret keys, expanding in order', () => {
    const env = resolveEnv(
      pod,
      {
        name: 'c',
        env: [
          { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'LISTEN', value: '$(IP):8080' },
          { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 's1', key: 'token' } } },
        ],
      },
      lookup,
    );
    expect(env).toEqual({ IP: '10.244.1.5', LISTEN: '10.244.1.5:8080', TOKEN: 't0p' });
  });

  it('waits (MissingObjectError) for a missing secret, skips an optional one', () => {
    const ref = (optional: boolean) => ({
      name: 'c',
      env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'gone', key: 'k', optional } } }],
    });
    expect(() => resolveEnv(pod, ref(false), lookup)).toThrow(MissingObjectError);
    expect(resolveEnv(pod, ref(true), lookup)).toEqual({});
  });
});

describe('planVolumes', () => {
  it('gives each mount its files, with items and optional volumes', () => {
    const plans = planVolumes(
      pod,
      {
        name: 'c',
        volumeMounts: [
          { name: 'sec', mountPath: '/etc/secret' },
          { name: 'cm', mountPath: '/etc/cm/' },
          { name: 'opt', mountPath: '/opt' },
        ],
      },
      lookup,
    );
    expect(plans.map((p) => [p.mountPath, Object.keys(p.files ?? {})])).toEqual([
      ['/etc/secret', ['token']],
      ['/etc/cm', ['dir/file']],
      ['/opt', []],
    ]);
  });

  it('names the missing Secret', () => {
    const p = { ...pod, spec: { ...pod.spec!, volumes: [{ name: 'v', secret: { secretName: 'gone' } }] } };
    expect(() =>
      planVolumes(p, { name: 'c', volumeMounts: [{ name: 'v', mountPath: '/x' }] }, lookup),
    ).toThrow(/Secret ns1\/gone/);
  });
});

describe('rewriteMountPaths', () => {
  const mounts = [
    { mountPath: '/etc/tether', hostPath: '/r/etc/tether' },
    { mountPath: '/etc/tether/keys', hostPath: '/r/etc/tether/keys' },
  ];
  it('maps paths under a mount (also after --flag=) and leaves others', () => {
    expect(rewriteMountPaths('/etc/tether/pool.yaml', mounts)).toBe('/r/etc/tether/pool.yaml');
    expect(rewriteMountPaths('--config=/etc/tether/keys/k', mounts)).toBe('--config=/r/etc/tether/keys/k');
    expect(rewriteMountPaths('/etc/tetherx', mounts)).toBe('/etc/tetherx');
    expect(rewriteMountPaths('--listen=1.2.3.4:80', mounts)).toBe('--listen=1.2.3.4:80');
  });
});

describe('image table', () => {
  const table = defaultImageTable();
  it('knows Tether, the test backend and Valkey under any registry and tag, nothing else', () => {
    expect(findImage(table, 'ghcr.io/tether-dev/tether:0.1.0')).toBe(TETHER_IMAGE_RULE);
    expect(findImage(table, 'tether:dev')).toBe(TETHER_IMAGE_RULE);
    expect(findImage(table, 'tether-test-backend:dev')).toBe(TEST_BACKEND_IMAGE_RULE);
    expect(findImage(table, 'docker.io/valkey/valkey:8.1')).toBe(VALKEY_IMAGE_RULE);
    expect(findImage(table, 'valkey/valkey@sha256:abc')).toBe(VALKEY_IMAGE_RULE);
    expect(findImage(table, 'nginx:1.27')).toBeUndefined();
    expect(findImage(table, 'example.com/tethering:1')).toBeUndefined();
  });

  it('builds argv: default entry point + args, or command[0] chosen by basename', () => {
    const [exe, script] = TETHER_IMAGE_RULE.commands['tether-proxy']!;
    // The default is the image's ENTRYPOINT: the operator (Dockerfile).
    const [opExe, opScript] = TETHER_IMAGE_RULE.commands['tether-operator']!;
    expect(opScript).toMatch(/bin\/tether-operator\.js$/);
    expect(buildArgv(TETHER_IMAGE_RULE, undefined, ['--workers=2'])).toEqual([
      opExe,
      opScript,
      '--workers=2',
    ]);
    expect(buildArgv(TETHER_IMAGE_RULE, ['/usr/bin/tether-proxy', '-v'], ['a'])).toEqual([
      exe,
      script,
      '-v',
      'a',
    ]);
    expect(() => buildArgv(TETHER_IMAGE_RULE, ['sh'], [])).toThrow(
      /no command "sh" \(known: tether-operator, tether-proxy\)/,
    );
  });

  it("Valkey is played by Debian's Redis: valkey-server → redis-server, valkey-sentinel → redis-sentinel", () => {
    expect(buildArgv(VALKEY_IMAGE_RULE, ['valkey-server'], ['/c.conf', '--bind', '10.244.1.3'])).toEqual([
      'redis-server',
      '/c.conf',
      '--bind',
      '10.244.1.3',
    ]);
    expect(buildArgv(VALKEY_IMAGE_RULE, ['valkey-sentinel'], ['/data/s.conf'])).toEqual([
      'redis-sentinel',
      '/data/s.conf',
    ]);
    expect(buildArgv(VALKEY_IMAGE_RULE, ['cp', '/a', '/b'], undefined)).toEqual(['cp', '/a', '/b']);
  });
});
