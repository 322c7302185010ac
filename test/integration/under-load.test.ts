import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackend, startBackends } from '../helpers/backends.ts';
import {
  Client,
  newCookieKey,
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  servedRevision,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';

const CLIENTS = 24;
const ROUNDS = 15;

let backends: Backend[];
let s: Scratch;
let proxy: ProxyProcess;

beforeAll(async () => {
  backends = await startBackends(3, 'load');
  s = scratch();
  const keys = s.write('keys', `${newCookieKey()}\n`);
  const config = s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port }))));
  proxy = await startProxy(['--config', config, '--cookie-keys-file', keys]);
});

afterAll(async () => {
  await proxy?.stop();
  await Promise.all(backends.map((b) => b.kill().catch(() => {})));
  s.cleanup();
});

/** Every client sends `ROUNDS` requests, all clients at once; returns the endpoints each saw and every status. */
async function drive(clients: Client[]): Promise<{ seen: Array<Set<string>>; statuses: number[] }> {
  const seen = clients.map(() => new Set<string>());
  const statuses: number[] = [];
  await Promise.all(
    clients.map(async (c, i) => {
      for (let r = 0; r < ROUNDS; r++) {
        const reply = await c.get(`${proxy.url}/r${r}`);
        statuses.push(reply.status);
        if (reply.endpoint !== undefined) seen[i]!.add(reply.endpoint);
      }
    }),
  );
  return { seen, statuses };
}

describe('concurrent clients through table swaps and a failure (bounded: 24 clients × 15 requests a phase)', () => {
  it('pins hold under concurrency, across a table swap, and only the dead endpoint’s clients move', async () => {
    const clients = Array.from({ length: CLIENTS }, () => new Client());
    const first = await drive(clients);
    expect(first.statuses.every((st) => st === 200)).toBe(true);
    for (const set of first.seen) expect(set.size).toBe(1);
    const pinned = first.seen.map((set) => [...set][0] as string);

    // Swap in a table with a fourth endpoint while the clients keep going.
    const extra = await startBackend('load-d');
    backends.push(extra);
    const rev = (await servedRevision(proxy)) as number;
    const swapping = drive(clients);
    s.write('pool.yaml', poolYaml(backends.map((b) => ({ name: b.id, port: b.port }))));
    const during = await swapping;
    await waitFor(async () => (await servedRevision(proxy)) === rev + 1, 5_000, 'the swap');
    expect(during.statuses.every((st) => st === 200)).toBe(true);
    for (const [i, set] of during.seen.entries()) expect([...set]).toEqual([pinned[i]]);

    // Kill one endpoint between phases: its clients move once (redispatch, no errors), the rest stay.
    const victim = backends[0] as Backend;
    await victim.kill();
    const after = await drive(clients);
    expect(after.statuses.every((st) => st === 200)).toBe(true);
    after.seen.forEach((set, i) => {
      expect(set.size).toBe(1);
      if (pinned[i] === victim.id) expect([...set][0]).not.toBe(victim.id);
      else expect([...set][0]).toBe(pinned[i]);
    });
    expect(pinned).toContain(victim.id);
  });
});
