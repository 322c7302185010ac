/**
 * The StickyBackendPool CustomResourceDefinition, generated from the zod
 * schemas the proxy validates with (one source of truth): `z.toJSONSchema`
 * of the input form (so defaults are the schema's `default`s), made
 * structural, plus CEL `x-kubernetes-validations` for what a JSON schema
 * cannot say. `make manifests` writes it to crds/; a unit test fails when
 * the committed file differs.
 */
import { stringify } from 'yaml';
import { z } from 'zod';
import { API_GROUP, POOL_KIND, POOL_PLURAL, poolSpecSchema, poolStatusSchema } from '../api/index.ts';

/** A JSON schema node, as z.toJSONSchema writes it and Kubernetes reads it. */
export type SchemaNode = { [key: string]: unknown };

/** One CEL rule, attached at a path of property names below `spec`. */
export interface CelRule {
  /** Property path from `spec`, e.g. `['backend']`; empty: `spec` itself. */
  path: readonly string[];
  rule: string;
  message: string;
  /** JSONPath of the field the message is about (Kubernetes ≥ 1.28 reports it). */
  fieldPath?: string;
}

/**
 * What the schema alone cannot say. Each mirrors a zod refinement or a
 * check the operator makes, so the apiserver refuses at `kubectl apply`
 * what the operator would otherwise mark `InvalidSpec`.
 */
export const CEL_RULES: readonly CelRule[] = [
  {
    path: ['backend'],
    rule: 'has(self.service) != has(self.endpoints)',
    message: 'exactly one of backend.service and backend.endpoints must be set',
  },
  {
    path: [],
    rule: "self.affinity.type != 'Learn' || self.sessionStore.enabled",
    message:
      'affinity.type Learn needs sessionStore.enabled: true (the learned pins live in the session store)',
    fieldPath: '.affinity.type',
  },
  {
    path: ['affinity'],
    rule: "self.type != 'Cookie' || self.cookie.sameSite != 'None' || self.cookie.secure != 'Never'",
    message: 'cookie.sameSite None needs secure Auto or Always (browsers drop SameSite=None without Secure)',
    fieldPath: '.cookie.sameSite',
  },
  {
    path: ['affinity', 'cookie'],
    rule: "duration(self.absoluteTimeout) >= duration('1s')",
    message: 'absoluteTimeout must be at least 1s',
    fieldPath: '.absoluteTimeout',
  },
  {
    path: ['affinity', 'cookie'],
    rule: "!has(self.idleTimeout) || duration(self.idleTimeout) >= duration('1s')",
    message: 'idleTimeout must be at least 1s',
    fieldPath: '.idleTimeout',
  },
  {
    path: ['affinity', 'learn'],
    rule: "duration(self.timeout) >= duration('1s')",
    message: 'timeout must be at least 1s',
    fieldPath: '.timeout',
  },
  {
    path: ['draining'],
    rule: "duration(self.timeout) <= duration('24h')",
    message: 'timeout must be at most 24h',
    fieldPath: '.timeout',
  },
  {
    path: ['healthCheck', 'active'],
    rule: 'duration(self.timeout) < duration(self.interval)',
    message: 'timeout must be shorter than interval',
    fieldPath: '.timeout',
  },
  {
    path: ['sessionStore'],
    rule: 'self.sentinels % 2 == 1',
    message: 'sentinels must be odd, so a quorum is a strict majority',
    fieldPath: '.sentinels',
  },
  {
    path: ['sessionStore'],
    rule: '!self.persistPins || self.enabled',
    message: 'persistPins needs enabled: true (the pins live in the session store)',
    fieldPath: '.persistPins',
  },
  {
    path: ['sessionStore'],
    rule: "duration(self.pinTimeout) >= duration('1s')",
    message: 'pinTimeout must be at least 1s',
    fieldPath: '.pinTimeout',
  },
];

/** `format`s Kubernetes understands; zod's own (e.g. `starts_with`) are dropped (the `pattern` stays). */
const KUBE_FORMATS = new Set(['int32', 'int64', 'float', 'double', 'byte', 'date', 'date-time', 'uuid']);

/**
 * Rewrites a JSON schema node in place into Kubernetes' structural form:
 * no `$schema`, no `additionalProperties: false` (the apiserver prunes
 * unknown fields instead), `anyOf [string, integer]` becomes
 * `x-kubernetes-int-or-string` (a Service port by name or number).
 */
export function makeStructural(node: SchemaNode): SchemaNode {
  delete node.$schema;
  if (node.additionalProperties === false) delete node.additionalProperties;
  if (typeof node.format === 'string' && !KUBE_FORMATS.has(node.format)) delete node.format;
  const anyOf = node.anyOf as SchemaNode[] | undefined;
  if (anyOf !== undefined) {
    const types = new Set(anyOf.map((n) => n.type));
    if (types.size === 2 && types.has('string') && types.has('integer')) {
      delete node.anyOf;
      node['x-kubernetes-int-or-string'] = true;
    } else {
      throw new Error(`not structural: anyOf of ${[...types].join(', ')}`);
    }
  }
  for (const child of Object.values((node.properties as Record<string, SchemaNode>) ?? {}))
    makeStructural(child);
  if (node.items !== undefined) makeStructural(node.items as SchemaNode);
  return node;
}

/**
 * Fills an object default (`default: {}`, zod's prefault) with the defaults
 * of its properties, recursively. The apiserver checks a default against the
 * node's CEL rules as written, before nested defaults apply: `{}` would fail
 * any rule reading a field.
 */
export function materializeDefaults(node: SchemaNode): SchemaNode {
  const props = (node.properties as Record<string, SchemaNode> | undefined) ?? {};
  for (const child of Object.values(props)) materializeDefaults(child);
  if (node.items !== undefined) materializeDefaults(node.items as SchemaNode);
  const d = node.default;
  if (node.type === 'object' && d !== null && typeof d === 'object' && !Array.isArray(d)) {
    const filled: Record<string, unknown> = { ...(d as Record<string, unknown>) };
    for (const [k, child] of Object.entries(props)) {
      if (!(k in filled) && child.default !== undefined) filled[k] = structuredClone(child.default);
    }
    node.default = filled;
  }
  return node;
}

/** Adds each rule's `x-kubernetes-validations` entry at its path below `spec`. @throws {Error} for a path not in the schema. */
export function addCelRules(spec: SchemaNode, rules: readonly CelRule[]): SchemaNode {
  for (const r of rules) {
    let node = spec;
    for (const p of r.path) {
      const next = (node.properties as Record<string, SchemaNode> | undefined)?.[p];
      if (next === undefined) throw new Error(`CEL rule path ${r.path.join('.')}: no property ${p}`);
      node = next;
    }
    const list = (node['x-kubernetes-validations'] ?? []) as unknown[];
    node['x-kubernetes-validations'] = list;
    list.push({
      rule: r.rule,
      message: r.message,
      ...(r.fieldPath === undefined ? {} : { fieldPath: r.fieldPath }),
    });
  }
  return spec;
}

/** The CRD object (apiextensions.k8s.io/v1) of StickyBackendPool. */
export function buildPoolCrd(): SchemaNode {
  const spec = addCelRules(
    materializeDefaults(
      makeStructural(z.toJSONSchema(poolSpecSchema, { io: 'input', target: 'openapi-3.0' }) as SchemaNode),
    ),
    CEL_RULES,
  );
  const status = makeStructural(
    z.toJSONSchema(poolStatusSchema, { io: 'input', target: 'openapi-3.0' }) as SchemaNode,
  );
  const conditions = (status.properties as Record<string, SchemaNode>).conditions as SchemaNode;
  conditions['x-kubernetes-list-type'] = 'map';
  conditions['x-kubernetes-list-map-keys'] = ['type'];
  const store = (status.properties as Record<string, SchemaNode>).sessionStore as SchemaNode;
  const storeConditions = (store.properties as Record<string, SchemaNode>).conditions as SchemaNode;
  storeConditions['x-kubernetes-list-type'] = 'map';
  storeConditions['x-kubernetes-list-map-keys'] = ['type'];
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${POOL_PLURAL}.${API_GROUP}` },
    spec: {
      group: API_GROUP,
      names: {
        kind: POOL_KIND,
        listKind: `${POOL_KIND}List`,
        plural: POOL_PLURAL,
        singular: 'stickybackendpool',
        shortNames: ['sbp'],
        categories: ['tether'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Affinity', type: 'string', jsonPath: '.spec.affinity.type' },
            { name: 'Ready-Endpoints', type: 'integer', jsonPath: '.status.endpoints.ready' },
            { name: 'Proxies-In-Sync', type: 'integer', jsonPath: '.status.proxies.inSync' },
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Revision', type: 'integer', jsonPath: '.status.routingTableRevision', priority: 1 },
            {
              name: 'Store',
              type: 'string',
              jsonPath: '.status.sessionStore.conditions[?(@.type=="Ready")].status',
              priority: 1,
            },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: 'A pool of endpoints served by Tether proxies with sticky affinity.',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: spec,
                status: status,
              },
            },
          },
        },
      ],
    },
  };
}

/** The file `make manifests` writes: a header, then the CRD as YAML. */
export function renderPoolCrdYaml(): string {
  return `# Generated by \`make manifests\` from proxy/src/api/pool-spec.ts and operator/src/crd/pool-crd.ts.\n# Do not edit: change the zod schema and regenerate.\n${stringify(buildPoolCrd(), { lineWidth: 0 })}`;
}
