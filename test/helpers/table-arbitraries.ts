/**
 * fast-check generators of routing tables, for the property tests of
 * validation and of the routing core: one place that knows what a valid
 * table looks like, so the properties stay short.
 */
import fc from 'fast-check';
import {
  ROUTING_TABLE_SCHEMA_VERSION,
  type RoutingTable,
  routingTableSchema,
} from '../../proxy/src/api/routing-table.ts';

/** Durations the schema accepts, from nothing to the largest. */
export const validDuration = fc.constantFrom('0s', '1s', '500ms', '10s', '5m', '1h30m', '24h', '999999999h');

/** RFC 3339 times, mostly ordinary, some at the edges of what a parser may take. */
export const validIsoDate = fc.oneof(
  {
    arbitrary: fc
      .date({ min: new Date(0), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true })
      .map((d) => d.toISOString()),
    weight: 8,
  },
  fc.constantFrom('2026-11-27T10:00:00+23:59', '2026-11-27T10:00:00.123456789Z', '2026-11-27T10:00:00-00:00'),
);

/**
 * A table object meant to be valid (unique ids, IP addresses, durations),
 * with every optional field in play, before the schema's defaults.
 */
export const tableInput = fc.record({
  schemaVersion: fc.constant(ROUTING_TABLE_SCHEMA_VERSION),
  pool: fc.constantFrom('default/shop', 'a/b', 'team-1/web.v2'),
  revision: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  endpoints: fc.uniqueArray(
    fc.record(
      {
        id: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,12}$/),
        address: fc.oneof(fc.ipV4(), fc.ipV6()),
        port: fc.integer({ min: 1, max: 65_535 }),
        zone: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }),
        state: fc.constantFrom('Ready', 'Draining'),
        weight: fc.integer({ min: 1, max: 1000 }),
        drainingSince: fc.option(validIsoDate, { nil: undefined }),
      },
      { requiredKeys: ['id', 'address', 'port', 'state', 'weight'] },
    ),
    { selector: (e) => e.id, maxLength: 8 },
  ),
  affinity: fc.record({
    type: fc.constantFrom('Cookie', 'ClientIP', 'Header', 'Learn'),
    cookie: fc.record({
      name: fc.constantFrom('route', 'JSESSIONID'),
      absoluteTimeout: validDuration,
      idleTimeout: fc.option(validDuration, { nil: undefined }),
    }),
    clientIP: fc.record({
      ipv4PrefixLength: fc.integer({ min: 1, max: 32 }),
      ipv6PrefixLength: fc.integer({ min: 1, max: 128 }),
      trustedProxies: fc.array(fc.constantFrom('10.0.0.0/8', '::1/128', '127.0.0.1/32'), { maxLength: 2 }),
    }),
  }),
  onEndpointFailure: fc.constantFrom('Repin', 'Reject'),
  draining: fc.record({ keepSessions: fc.boolean(), timeout: validDuration }),
  healthCheck: fc.record({
    passive: fc.record({ maxFails: fc.integer({ min: 0, max: 1000 }), failTimeout: validDuration }),
  }),
  balanceFactor: fc.option(fc.integer({ min: 100, max: 10_000 }), { nil: undefined }),
});

/** Parsed routing tables (defaults applied), as the proxy holds them. */
export const routingTable: fc.Arbitrary<RoutingTable> = tableInput
  .map((t) => routingTableSchema.safeParse(t))
  .filter((r) => r.success)
  .map((r) => r.data as RoutingTable);
