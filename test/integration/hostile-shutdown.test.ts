/**
 * SIGTERM under traffic (issue 7, item 7): responses during the drain say
 * `Connection: close`; idle keep-alive connections stay open for
 * --shutdown-idle-grace so a request already on its way is answered, and are
 * then closed with a FIN while still being read, so a request crossing the
 * close meets a clean close before any byte of a response, never a reset.
 * Raw sockets, since HTTP clients retry and hide both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Backend, startBackends } from '../helpers/backends.ts';
import {
  type ProxyProcess,
  poolYaml,
  type Scratch,
  scratch,
  startProxy,
  waitFor,
} from '../helpers/proxy-process.ts';
import { parseResponses, RawConnection } from '../helpers/raw-client.ts';

let backends: Backend[];
let s: Scratch;

beforeAll(async () => {
  backends = await startBackends(2, 'term');
  s = scratch();
});

afterAll(async () => {
  await Promise.all(backends.map((b) => b.kill()));
  s.cleanup();
});

async function startTermProxy(flags: string[]): Promise<ProxyProcess> {
  const file = s.write(
    `pool-${Math.random().toString(36).slice(2)}.yaml`,
    poolYaml(backends.map((b) => ({ name: b.id, port: b.port }))),
  );
  return startProxy(['--config', file, ...flags]);
}

/** `n` keep-alive connections, each after one answered request: idle, as a client pool leaves them. */
async function idleConnections(p: ProxyProcess, n: number): Promise<RawConnection[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const c = await RawConnection.open(p.port);
      c.write('GET /warm HTTP/1.1\r\nHost: x\r\n\r\n');
      if (!(await c.waitResponses(1))) throw new Error('no answer to the warm-up request');
      return c;
    }),
  );
}

const shuttingDown = (p: ProxyProcess) => () => p.logs.some((l) => l.includes('shutting down'));

/** What a request sent on a connection during the drain came to. */
type Outcome = 'answered' | 'closed-before-send' | 'clean-close' | 'reset' | 'partial';

/**
 * Sends a request on `c`, which has had `answered` responses, and says what
 * came of it. A connection already closed by the proxy still gets the
 * request: that is the client that has not yet noticed the FIN, the race
 * itself, and it must not be answered with a reset either.
 */
async function probe(c: RawConnection, answered: number): Promise<Outcome> {
  const finBefore = c.ending !== 'open';
  c.write('GET /probe HTTP/1.1\r\nHost: x\r\n\r\n');
  if (finBefore) {
    // The read side has ended, so a reset only shows on the next write (EPIPE/ECONNRESET);
    // an empty line between requests is allowed (RFC 9112 §2.2).
    await new Promise((r) => setTimeout(r, 100));
    c.write('\r\n');
    await c.waitFor((x) => x.ending === 'reset', 500);
    return c.ending === 'reset' ? 'reset' : 'closed-before-send';
  }
  await c.waitFor((x) => x.responses().length > answered || x.ending !== 'open', 10_000);
  // A reset may follow a FIN: give it time to show.
  await c.waitFor((x) => x.ending === 'reset', 500);
  if (c.ending === 'reset') return 'reset';
  if (c.responses().length > answered) return 'answered';
  return c.ending === 'fin' && parseResponses(c.received, true).rest.length === 0 ? 'clean-close' : 'partial';
}

describe('SIGTERM with idle keep-alive connections', () => {
  it('a request sent right after SIGTERM on an idle keep-alive connection gets a complete response with Connection: close', async () => {
    const p = await startTermProxy(['--shutdown-timeout', '10s', '--shutdown-idle-grace', '2s']);
    const [c] = (await idleConnections(p, 1)) as [RawConnection];
    p.child.kill('SIGTERM');
    await waitFor(shuttingDown(p), 5_000, 'the shutdown log line');
    c.write('GET /after-sigterm HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await c.waitResponses(2, 5_000)).toBe(true);
    const r = c.responses()[1];
    expect(r?.status).toBe(200);
    expect(JSON.parse(r?.body.toString() ?? '{}').path).toBe('/after-sigterm');
    expect(r?.headers.connection).toEqual(['close']);
    expect(await c.waitEnd(5_000)).toBe(true);
    expect(c.ending).toBe('fin');
    expect(await p.exited).toBe(0);
  });

  it('requests racing the end of the grace are answered or meet a clean close before any byte, never a reset', async () => {
    const p = await startTermProxy(['--shutdown-timeout', '10s', '--shutdown-idle-grace', '300ms']);
    const conns = await idleConnections(p, 40);
    p.child.kill('SIGTERM');
    // One probe every 15 ms from the signal on: across the grace's end and past it.
    const outcomes = await Promise.all(
      conns.map(async (c, i) => {
        await new Promise((r) => setTimeout(r, i * 15));
        return probe(c, 1);
      }),
    );
    for (const c of conns) c.destroy();
    const tally: Record<string, number> = {};
    for (const o of outcomes) tally[o] = (tally[o] ?? 0) + 1;
    expect(tally.reset ?? 0, JSON.stringify(tally)).toBe(0);
    expect(tally.partial ?? 0, JSON.stringify(tally)).toBe(0);
    // Probes well inside the grace are answered (the first few land before the proxy even reads the signal).
    expect(
      outcomes.slice(0, 5).every((o) => o === 'answered'),
      JSON.stringify(outcomes),
    ).toBe(true);
    expect(await p.exited).toBe(0);
  });

  it('a response in flight at SIGTERM carries Connection: close, and the connection closes after it', async () => {
    const p = await startTermProxy(['--shutdown-timeout', '10s']);
    const c = await RawConnection.open(p.port);
    c.write('GET /slow?ms=600 HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 150));
    p.child.kill('SIGTERM');
    expect(await c.waitResponses(1, 5_000)).toBe(true);
    expect(c.responses()[0]?.status).toBe(200);
    expect(c.responses()[0]?.headers.connection).toEqual(['close']);
    expect(await c.waitEnd(5_000)).toBe(true);
    expect(await p.exited).toBe(0);
  });
});
