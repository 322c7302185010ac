import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { addCelRules, buildPoolCrd, CEL_RULES, makeStructural, type SchemaNode } from './pool-crd.ts';
import { MANIFESTS } from './write-manifests.ts';

type Node = SchemaNode & { properties?: Record<string, Node> };
const specOf = (crd: SchemaNode): Node =>
  // biome-ignore lint/suspicious/noExplicitAny: walking a plain JSON object
  (crd as any).spec.versions[0].schema.openAPIV3Schema.properties.spec;

/** Every node of a schema, with its path. */
function* walk(n: Node, path = 'spec'): Generator<[string, Node]> {
  yield [path, n];
  for (const [k, c] of Object.entries(n.properties ?? {})) yield* walk(c, `${path}.${k}`);
  if (n.items) yield* walk(n.items as Node, `${path}[]`);
}

describe('StickyBackendPool CRD', () => {
  it.each(MANIFESTS.map((m) => ({ desc: m.file.split('/').slice(-2).join('/'), m })))(
    '$desc equals the generator output (run `make manifests`)',
    ({ m }) => {
      expect(readFileSync(m.file, 'utf8')).toBe(m.render());
    },
  );

  it('is structural: every node has a type or is int-or-string, no anyOf, no additionalProperties:false', () => {
    for (const [path, n] of walk(specOf(buildPoolCrd()))) {
      expect(n.type !== undefined || n['x-kubernetes-int-or-string'] === true, path).toBe(true);
      expect(n.anyOf, path).toBeUndefined();
      expect(n.additionalProperties, path).toBeUndefined();
    }
  });

  it.each([
    { desc: 'cookie name', path: 'spec.affinity.cookie.name', want: 'route' },
    { desc: 'affinity type', path: 'spec.affinity.type', want: 'Cookie' },
    { desc: 'draining timeout', path: 'spec.draining.timeout', want: '5m' },
    { desc: 'proxy replicas', path: 'spec.proxy.replicas', want: 2 },
    { desc: 'draining block, filled in', path: 'spec.draining', want: { keepSessions: true, timeout: '5m' } },
  ])('carries the default of $desc', ({ path, want }) => {
    const nodes = new Map(walk(specOf(buildPoolCrd())));
    expect(nodes.get(path)?.default).toEqual(want);
  });

  it('object defaults are filled with their fields’ defaults (the apiserver checks them against CEL rules)', () => {
    const nodes = new Map(walk(specOf(buildPoolCrd())));
    expect(nodes.get('spec.affinity')?.default).toMatchObject({
      type: 'Cookie',
      cookie: { name: 'route', absoluteTimeout: '24h' },
      learn: { timeout: '30m' },
    });
  });

  it('makes a Service port int-or-string', () => {
    const nodes = new Map(walk(specOf(buildPoolCrd())));
    expect(nodes.get('spec.backend.service.port')).toEqual({ 'x-kubernetes-int-or-string': true });
  });

  it('attaches every CEL rule, and refuses a rule at a path the schema lacks', () => {
    const nodes = new Map(walk(specOf(buildPoolCrd())));
    for (const r of CEL_RULES) {
      const n = nodes.get(['spec', ...r.path].join('.'));
      expect(n?.['x-kubernetes-validations']).toContainEqual(expect.objectContaining({ rule: r.rule }));
    }
    expect(() =>
      addCelRules({ type: 'object', properties: {} }, [{ path: ['nope'], rule: 'true', message: 'm' }]),
    ).toThrow(/no property nope/);
  });

  it('refuses an anyOf it cannot make structural', () => {
    expect(() => makeStructural({ anyOf: [{ type: 'string' }, { type: 'boolean' }] })).toThrow(
      /not structural/,
    );
  });

  it('has the names, status subresource and printer columns kubectl shows', () => {
    // biome-ignore lint/suspicious/noExplicitAny: plain JSON
    const crd = parse(MANIFESTS[0]!.render()) as any;
    expect(crd.spec.names).toMatchObject({ shortNames: ['sbp'], categories: ['tether'] });
    expect(crd.spec.versions[0].subresources).toEqual({ status: {} });
    expect(crd.spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name)).toEqual([
      'Affinity',
      'Ready-Endpoints',
      'Proxies-In-Sync',
      'Ready',
      'Revision',
      'Store',
      'Age',
    ]);
  });
});
