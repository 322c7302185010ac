/**
 * The process that holds a test cluster started by hand (`cluster.sh up`):
 * it runs inside the private network namespace (started through
 * in-netns.sh), starts the cluster, writes `<dir>/ready.json`, and keeps
 * everything running until SIGTERM or SIGINT, when it stops it all and exits.
 * Its pid is the namespace's handle: `nsenter -t <pid> -n …`.
 *
 *   in-netns.sh node test/cluster/cli.ts serve <dir>
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startCluster } from './cluster.ts';

const [cmd, dir] = process.argv.slice(2);
if (cmd !== 'serve' || !dir) {
  process.stderr.write('usage: cli.ts serve <dir>\n');
  process.exit(2);
}

const ready = join(dir, 'ready.json');
rmSync(ready, { force: true });
try {
  const cluster = await startCluster({ dir: join(dir, 'cluster'), keepDir: true });
  const { stop, ...info } = cluster;
  writeFileSync(ready, `${JSON.stringify({ pid: process.pid, ...info }, null, 2)}\n`);
  process.stderr.write(`cluster ready in ${cluster.readyMs} ms\n`);
  let stopping = false;
  const end = async (sig: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${sig}: stopping the cluster\n`);
    await stop(5_000);
    rmSync(ready, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void end('SIGTERM'));
  process.on('SIGINT', () => void end('SIGINT'));
  process.on('SIGHUP', () => void end('SIGHUP'));
  // Keep the event loop alive: the informers do, but say so explicitly.
  setInterval(() => {}, 1 << 30);
} catch (err) {
  process.stderr.write(`cluster failed to start: ${(err as Error).message}\n`);
  process.exit(1);
}
