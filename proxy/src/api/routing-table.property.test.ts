/**
 * Property tests of routing-table validation (issue 7): whatever arrives on
 * PUT /v1/routing-table or from a pool file either parses or is refused with
 * a ZodError (never another exception, which would be a 500 or a crash), and
 * every table that parses compiles into something the request path can use.
 *
 * The generators mix valid and invalid values per field, so most cases get
 * deep into the schema rather than failing on the first field.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZodError } from 'zod';
import { tableInput } from '../../../test/helpers/table-arbitraries.ts';
import { compileTable } from '../routing/compiled-table.ts';
import { stickyBackendPoolSchema } from './pool-spec.ts';
import { buildRoutingTable, ROUTING_TABLE_SCHEMA_VERSION, routingTableSchema } from './routing-table.ts';

const NOW = 1_800_000_000_000;

/** A value of `valid`, or now and then anything at all. */
const mostly = <T>(valid: fc.Arbitrary<T>): fc.Arbitrary<unknown> =>
  fc.oneof({ arbitrary: valid, weight: 8 }, { arbitrary: fc.anything(), weight: 1 });

/** Either absent or a value, to exercise defaults and optionals. */
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });

const duration = fc.oneof(
  fc.constantFrom('0s', '1s', '500ms', '10s', '5m', '1h30m', '24h', '999999999h'),
  fc.string({ maxLength: 8 }),
);
const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.constantFrom('fe80::1%eth0', 'localhost', 'http://evil/', '::ffff:127.0.0.1', '', '300.1.1.1'),
  fc.domain(),
);
const endpointId = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/),
  fc.constantFrom('[::1]:80', 'a', 'a', 'b'),
  fc.string({ maxLength: 6 }),
);
const isoDate = fc.oneof(
  {
    arbitrary: fc
      .date({ min: new Date(0), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
      .map((d) => d.toISOString()),
    weight: 6,
  },
  fc.date({ min: new Date(0), max: new Date(8.64e15), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom(
    '2026-11-27T10:00:00+23:59',
    '2026-11-27T10:00:00.123456789Z',
    '0000-01-01T00:00:00Z',
    '2026-02-30T00:00:00Z',
    'yesterday',
  ),
);

const endpoint = fc.record(
  {
    id: mostly(endpointId),
    address: mostly(address),
    port: mostly(fc.integer({ min: -1, max: 70_000 })),
    zone: maybe(mostly(fc.string({ maxLength: 70 }))),
    state: mostly(fc.constantFrom('Ready', 'Draining', 'Terminating')),
    weight: mostly(fc.integer({ min: 0, max: 1001 })),
    drainingSince: maybe(mostly(isoDate)),
  },
  { requiredKeys: ['id', 'address', 'port', 'state', 'weight'] },
);

const affinity = fc.record(
  {
    type: mostly(fc.constantFrom('Cookie', 'ClientIP', 'Header', 'Learn', 'Nope')),
    cookie: maybe(
      fc.record(
        {
          name: mostly(fc.constantFrom('route', 'JSESSIONID', 'bad name', '')),
          absoluteTimeout: mostly(duration),
          idleTimeout: maybe(mostly(duration)),
          sameSite: mostly(fc.constantFrom('Strict', 'Lax', 'None')),
          secure: mostly(fc.constantFrom('Auto', 'Always', 'Never')),
          lifetimeType: mostly(fc.constantFrom('Session', 'Permanent')),
        },
        { requiredKeys: [] },
      ),
    ),
    clientIP: maybe(
      fc.record(
        {
          ipv4PrefixLength: mostly(fc.integer({ min: 0, max: 33 })),
          ipv6PrefixLength: mostly(fc.integer({ min: 0, max: 129 })),
          trustedProxies: mostly(
            fc.array(fc.oneof(fc.constantFrom('10.0.0.0/8', '::1/128', '1.2.3.4/33', 'x'), fc.string()), {
              maxLength: 3,
            }),
          ),
        },
        { requiredKeys: [] },
      ),
    ),
    header: maybe(fc.record({ name: mostly(fc.constantFrom('X-Session-Id', 'x y')) })),
  },
  { requiredKeys: [] },
);

/** A candidate routing table: structurally close to the schema, wrong here and there. */
const candidateTable = fc.record({
  schemaVersion: mostly(fc.constant(ROUTING_TABLE_SCHEMA_VERSION)),
  pool: mostly(fc.constantFrom('default/shop', 'a/b', 'Default/Shop', 'shop', 'a/b/c')),
  revision: mostly(fc.integer({ min: -1, max: Number.MAX_SAFE_INTEGER })),
  endpoints: mostly(fc.array(endpoint, { maxLength: 6 })),
  affinity: mostly(affinity),
  onEndpointFailure: mostly(fc.constantFrom('Repin', 'Reject')),
  draining: mostly(fc.record({ keepSessions: mostly(fc.boolean()), timeout: mostly(duration) })),
  healthCheck: mostly(
    fc.record(
      {
        passive: maybe(
          fc.record({
            maxFails: mostly(fc.integer({ min: -1, max: 1001 })),
            failTimeout: mostly(duration),
          }),
        ),
        active: maybe(
          fc.record({ path: mostly(fc.constantFrom('/healthz', 'healthz')), interval: mostly(duration) }),
        ),
      },
      { requiredKeys: [] },
    ),
  ),
  balanceFactor: maybe(mostly(fc.integer({ min: 99, max: 10_001 }))),
});

/** Valid tables and near-valid ones, about half and half. */
const anyTable = fc.oneof(tableInput, candidateTable);

/**
 * Parses `input` as a routing table; a refusal must be a ZodError.
 * @returns the table, or undefined when refused.
 */
function parseOrRefuse(input: unknown) {
  try {
    return routingTableSchema.parse(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ZodError);
    return undefined;
  }
}

describe('routing table validation (property)', () => {
  it('any input at all: parsed, or refused with a ZodError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), anyTable), (input) => {
        parseOrRefuse(input);
      }),
      { numRuns: 500 },
    );
  });

  it('a table that parses compiles, alone and over any other that parses, into something the request path can use', () => {
    let parsed = 0;
    fc.assert(
      fc.property(anyTable, anyTable, (a, b) => {
        const t = parseOrRefuse(a);
        if (t === undefined) return;
        parsed++;
        const previous = parseOrRefuse(b);
        const before = previous === undefined ? undefined : compileTable(previous, undefined, NOW);
        const c = compileTable(t, before, NOW);
        expect(c.endpoints).toHaveLength(t.endpoints.length);
        expect(c.byTag.size).toBe(t.endpoints.length);
        c.endpoints.forEach((e, i) => {
          expect(e.index).toBe(i);
          expect(e.id).toBe(t.endpoints[i]?.id);
          // A drain start that is not a number would keep pinned clients forever (NaN compares false).
          if (e.draining)
            expect(Number.isFinite(e.drainingSinceMs), `drainingSince ${t.endpoints[i]?.drainingSince}`).toBe(
              true,
            );
        });
        for (const ms of [
          c.cookie.absoluteTimeoutMs,
          c.cookie.idleTimeoutMs,
          c.drainTimeoutMs,
          c.failTimeoutMs,
        ])
          expect(Number.isFinite(ms) && ms >= 0).toBe(true);
      }),
      { numRuns: 500 },
    );
    // The generator must reach valid tables, or the property says nothing.
    expect(parsed).toBeGreaterThan(100);
  });

  it('a pool manifest: parsed and turned into a table, or refused with a ZodError (or the documented Service error)', () => {
    const manifest = fc.record({
      apiVersion: mostly(fc.constant('tether.dev/v1alpha1')),
      kind: mostly(fc.constant('StickyBackendPool')),
      metadata: mostly(fc.record({ name: mostly(fc.constantFrom('shop', 'Shop', 'a.b')) })),
      spec: mostly(
        fc.record(
          {
            backend: mostly(
              fc.oneof(
                fc.record({
                  endpoints: mostly(
                    fc.array(
                      fc.record(
                        {
                          name: maybe(mostly(endpointId)),
                          address: mostly(address),
                          port: mostly(fc.integer({ min: 0, max: 70_000 })),
                          draining: maybe(fc.boolean()),
                        },
                        { requiredKeys: ['address', 'port'] },
                      ),
                      { maxLength: 5 },
                    ),
                  ),
                }),
                fc.constant({ service: { name: 'shop', port: 'http' } }),
              ),
            ),
            affinity: maybe(mostly(affinity)),
          },
          { requiredKeys: ['backend'] },
        ),
      ),
    });
    fc.assert(
      fc.property(manifest, (m) => {
        const pool = stickyBackendPoolSchema.safeParse(m);
        if (!pool.success) return;
        try {
          const t = buildRoutingTable(pool.data, 1);
          compileTable(t, undefined, NOW);
        } catch (err) {
          if (err instanceof ZodError) return;
          expect((err as Error).message).toMatch(/backend\.service needs the operator/);
        }
      }),
      { numRuns: 500 },
    );
  });
});
