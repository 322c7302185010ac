/**
 * Command line for `cluster.sh`: starts a control plane that outlives this
 * process (`up`), stops it (`down`), or reports on it (`status`).
 *
 *   node test/control-plane/cli.ts up|down|status <dir>
 *
 * `up` prints `export KUBECONFIG=<dir>/admin.kubeconfig` on stdout (and
 * nothing else), so `eval "$(cluster.sh up)"` works.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ControlPlaneInfo, isAlive, startControlPlane, stopFromDir } from './control-plane.ts';

const [cmd, dir] = process.argv.slice(2);
if (!cmd || !dir) {
  process.stderr.write('usage: cli.ts up|down|status <dir>\n');
  process.exit(2);
}

const stateFile = join(dir, 'control-plane.json');
const readInfo = (): ControlPlaneInfo | null =>
  existsSync(stateFile) ? (JSON.parse(readFileSync(stateFile, 'utf8')) as ControlPlaneInfo) : null;

switch (cmd) {
  case 'up': {
    const old = readInfo();
    if (old && isAlive(old.pids.kubeApiserver) && isAlive(old.pids.etcd)) {
      process.stderr.write(`control plane already running at ${old.server}\n`);
      process.stdout.write(`export KUBECONFIG=${old.adminKubeconfig}\n`);
      break;
    }
    // A stale directory (e.g. after a reboot) is cleared first.
    await stopFromDir(dir);
    const cp = await startControlPlane({ dir, detach: true, keepDir: true });
    process.stderr.write(
      `kube-apiserver ${cp.versions.kubernetes} at ${cp.server} (pid ${cp.pids.kubeApiserver}), ` +
        `etcd ${cp.versions.etcd} at ${cp.etcdUrl} (pid ${cp.pids.etcd})\n` +
        `logs: ${cp.logs.kubeApiserver}, ${cp.logs.etcd}\n` +
        `kubectl: ${cp.binaries.kubectl}\nhelm: ${cp.binaries.helm}\n`,
    );
    process.stdout.write(`export KUBECONFIG=${cp.adminKubeconfig}\n`);
    break;
  }
  case 'down': {
    const stopped = await stopFromDir(dir);
    process.stderr.write(stopped ? `stopped control plane in ${dir}\n` : `no control plane in ${dir}\n`);
    break;
  }
  case 'status': {
    const info = readInfo();
    if (!info) {
      process.stdout.write('not running\n');
      process.exitCode = 1;
      break;
    }
    const up = isAlive(info.pids.kubeApiserver) && isAlive(info.pids.etcd);
    process.stdout.write(
      `${up ? 'running' : 'stopped'}: ${info.server}\nexport KUBECONFIG=${info.adminKubeconfig}\n`,
    );
    if (!up) process.exitCode = 1;
    break;
  }
  default:
    process.stderr.write(`unknown command ${cmd}\n`);
    process.exit(2);
}
