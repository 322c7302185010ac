import { describe, expect, it } from 'vitest';
import { parsePoolFile } from './pool-file.ts';

const good = `apiVersion: tether.dev/v1alpha1
kind: StickyBackendPool
metadata: { name: shop }
spec:
  backend:
    endpoints:
      - { name: a, address: 127.0.0.1, port: 8080 }
`;

describe('parsePoolFile', () => {
  it('turns a pool file into a routing table of the given revision', () => {
    const t = parsePoolFile(good, 3);
    expect(t).toMatchObject({
      pool: 'default/shop',
      revision: 3,
      endpoints: [{ id: 'a', port: 8080, state: 'Ready' }],
    });
  });

  it.each([
    { desc: 'empty file', text: '', want: /exactly one YAML document/ },
    { desc: 'two documents', text: `${good}---\n${good}`, want: /exactly one YAML document/ },
    { desc: 'broken YAML', text: 'spec: [unclosed', want: /YAML/ },
    { desc: 'wrong kind', text: good.replace('StickyBackendPool', 'Service'), want: /kind/ },
    { desc: 'wrong apiVersion', text: good.replace('v1alpha1', 'v2'), want: /apiVersion/ },
    {
      desc: 'a Service backend',
      text: good.replace(/ {4}endpoints:\n.*\n/, '    service: { name: shop, port: http }\n'),
      want: /needs the operator/,
    },
    {
      desc: 'a 0s learn timeout',
      text: `${good}  affinity: { type: Learn, learn: { timeout: 0s } }\n`,
      want: /affinity.learn.timeout must be ≥ 1s/,
    },
    {
      desc: 'a 0s pin timeout',
      text: `${good}  sessionStore: { persistPins: true, pinTimeout: 0s }\n`,
      want: /sessionStore.pinTimeout must be ≥ 1s/,
    },
    {
      desc: 'a 0s absolute timeout',
      text: `${good}  affinity: { cookie: { absoluteTimeout: 0s } }\n`,
      want: /absoluteTimeout must be ≥ 1s/,
    },
  ])('refuses $desc with a TETHER_INVALID_CONFIG error', ({ text, want }) => {
    expect(() => parsePoolFile(text, 1)).toThrow(want);
    try {
      parsePoolFile(text, 1);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('TETHER_INVALID_CONFIG');
    }
  });
});
