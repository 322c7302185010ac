/**
 * bench/idle-clients.ts, the memory step's client: it must really hold N
 * idle keep-alive connections that each carried one answered request, report
 * how many are still open (a proxy may close idle ones), and let them all go
 * when told, or the memory figure measures something else.
 */
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Child, ChildProcesses, parseJsonLine, waitForLine } from '../../tools/child-processes.ts';
import { pollUntil } from '../../tools/poll.ts';
import { REPO_ROOT } from '../../tools/tether-proxy-process.ts';

const children = new ChildProcesses();
const servers: Server[] = [];

afterEach(async () => {
  await children.stopAll();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A loopback server that counts requests and open connections; idle ones close after `keepAliveMs`. */
async function startServer(keepAliveMs: number) {
  const sockets = new Set<Socket>();
  let requests = 0;
  const server = createServer((_req, res) => {
    requests++;
    res.end('ok\n');
  });
  server.keepAliveTimeout = keepAliveMs;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { port, open: () => sockets.size, requests: () => requests };
}

function startClients(port: number, count: number): Child {
  return children.spawn(
    'idle-clients',
    process.execPath,
    [
      join(REPO_ROOT, 'bench/idle-clients.ts'),
      '127.0.0.1',
      String(port),
      String(count),
      '127.0.0.1,127.0.0.2',
    ],
    { stdin: 'pipe' },
  );
}

function eventLine(child: Child, event: string) {
  return waitForLine(child, `its ${event} line`, 20_000, (line) => {
    const rec = parseJsonLine(line);
    return rec?.event === event ? rec : undefined;
  });
}

describe('bench/idle-clients.ts', () => {
  it('holds N connections, one answered request each, and closes them when stdin closes', async () => {
    const server = await startServer(60_000);
    const child = startClients(server.port, 300);
    const ready = await eventLine(child, 'ready');
    expect(ready).toMatchObject({ wanted: 300, answered: 300, failed: 0, open: 300 });
    expect(server.requests()).toBe(300);
    expect(server.open()).toBe(300);
    const counted = eventLine(child, 'count');
    child.proc.stdin?.write('count\n');
    expect((await counted).open).toBe(300);
    child.proc.stdin?.end();
    expect((await child.exited).code).toBe(0);
    expect(await pollUntil(async () => (server.open() === 0 ? true : undefined), 5_000, 20)).toBe(true);
  });

  it('counts the connections the server closed while idle', async () => {
    const server = await startServer(200);
    const child = startClients(server.port, 50);
    expect(await eventLine(child, 'ready')).toMatchObject({ answered: 50 });
    // The client sees the closes a moment after the server made them: ask until it has.
    const open = await pollUntil(
      async () => {
        const counted = eventLine(child, 'count');
        child.proc.stdin?.write('count\n');
        return (await counted).open === 0 ? 0 : undefined;
      },
      5_000,
      50,
    );
    expect(open).toBe(0);
  });

  it('reports refused connections as failures instead of hanging', async () => {
    const server = await startServer(60_000);
    const port = server.port;
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    const child = startClients(port, 20);
    expect(await eventLine(child, 'ready')).toMatchObject({ answered: 0, failed: 20, open: 0 });
  });

  it('refuses a bad command line', async () => {
    const child = children.spawn('idle-clients', process.execPath, [
      join(REPO_ROOT, 'bench/idle-clients.ts'),
      '127.0.0.1',
      '80',
      '10',
      '10.0.0.1',
    ]);
    expect((await child.exited).code).toBe(2);
    expect(child.tail().join('\n')).toMatch(/usage: idle-clients\.ts/);
  });
});
