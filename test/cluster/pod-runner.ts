/**
 * The pod runner: the one piece a kubelet does that KWOK does not — it runs
 * real processes for pods. Part of the test harness, not of the product.
 *
 * It watches Pods bound to the simulated Nodes. For a pod with an IP (KWOK
 * gives one from the Node's pod CIDR) whose container image is in the image
 * table (images.ts), it starts one process per such container:
 * - argv from the image's entry point and the container's command/args,
 *   `$(VAR)`-expanded; env from the container (values, fieldRef,
 *   Secret/ConfigMap keys, envFrom) plus `POD_IP`, `POD_NAME`,
 *   `POD_NAMESPACE`, `HOSTNAME` and `TETHER_POD_ROOT` unless the pod sets them;
 * - mounted Secrets, ConfigMaps, downwardAPI and projected volumes written as
 *   files under a per-pod root (`<runDir>/pods/<ns>_<name>_<uid8>/root`), at
 *   `<root><mountPath>`, and rewritten kubelet-style (atomic `..data` swap)
 *   when the object changes; args/env naming a mount path are rewritten to
 *   the file's real place (see pod-spec.ts);
 * - stdout and stderr to `<podDir>/<container>.log`; what the runner did to
 *   the pod (started, SIGTERM, SIGKILL, exit, restart) to `<podDir>/events.log`.
 *
 * Init containers of known images run first, each to completion (bounded
 * at 10 s), in order, with the same argv/env/mount rules; a failing one
 * leaves the pod waiting (noted in runner.log) until the next change.
 *
 * A process that exits while its pod lives is restarted with back-off
 * (1 s doubling to 10 s), as the kubelet does for restartPolicy Always.
 * When the pod gets a deletionTimestamp: SIGTERM to the process group, SIGKILL
 * when the grace period ends; once every process is gone, the runner deletes
 * the pod with grace 0, as the kubelet does (KWOK's own delete stage waits
 * for the grace period's end, for pods the runner does not run).
 * A pod whose images are all unknown is left alone (one line in runner.log).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import {
  CoreV1Api,
  type Informer,
  KubeConfig,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  type V1ConfigMap,
  type V1Container,
  type V1Pod,
  type V1Secret,
} from '@kubernetes/client-node';
import { buildArgv, describeTable, findImage, type ImageRule } from './images.ts';
import { writeAtomic } from './pod-files.ts';
import {
  configMapData,
  expandVars,
  MissingObjectError,
  type MountMap,
  type ObjectLookup,
  planVolumes,
  resolveEnv,
  rewriteMountPaths,
  secretData,
  type VolumePlan,
} from './pod-spec.ts';

/** Options of {@link startPodRunner}. */
export interface PodRunnerOptions {
  /** Kubeconfig with rights to read Pods, Secrets, ConfigMaps and delete Pods. */
  kubeconfig: string;
  /** Names of the simulated Nodes whose pods the runner runs. */
  nodeNames: string[];
  /** Directory for runner.log and pods/<ns>_<name>_<uid8>/ (logs and volume files). */
  runDir: string;
  /** Images the runner knows. */
  images: ImageRule[];
}

/** A running pod runner. */
export interface PodRunner {
  /** Stops watching and kills every process it started (SIGTERM, then SIGKILL after `graceMs`, default 5 000). */
  stop(graceMs?: number): Promise<void>;
}

/** The directory of a pod's logs and files: `<runDir>/pods/<ns>_<name>_<first 8 of uid>`. */
export function podDir(runDir: string, pod: { namespace: string; name: string; uid: string }): string {
  return join(runDir, 'pods', `${pod.namespace}_${pod.name}_${pod.uid.slice(0, 8)}`);
}

interface Proc {
  container: string;
  argv: string[];
  env: Record<string, string>;
  child: ChildProcess | undefined;
  pid: number | undefined;
  running: boolean;
  restarts: number;
  restartTimer: NodeJS.Timeout | undefined;
}

interface Managed {
  uid: string;
  namespace: string;
  name: string;
  dir: string;
  root: string;
  procs: Proc[];
  /** Volumes with their real directory, re-planned on every change. */
  mounts: Array<{ container: V1Container; hostPath: string; mountPath: string }>;
  terminating: boolean;
  killTimer: NodeJS.Timeout | undefined;
  deleteSent: boolean;
}

const BACKOFF_MAX_MS = 10_000;

/**
 * Starts watching and running pods; resolves once the first lists are in.
 * @throws Error if the API server cannot be reached within the informers' start.
 */
export async function startPodRunner(opts: PodRunnerOptions): Promise<PodRunner> {
  const kc = new KubeConfig();
  kc.loadFromFile(opts.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const nodes = new Set(opts.nodeNames);
  mkdirSync(join(opts.runDir, 'pods'), { recursive: true });
  const runnerLog = join(opts.runDir, 'runner.log');
  const log = (msg: string): void => appendFileSync(runnerLog, `${new Date().toISOString()} ${msg}\n`);

  const pods = makeInformer<V1Pod>(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
  const secrets = makeInformer<V1Secret>(kc, '/api/v1/secrets', () => core.listSecretForAllNamespaces());
  const configMaps = makeInformer<V1ConfigMap>(kc, '/api/v1/configmaps', () =>
    core.listConfigMapForAllNamespaces(),
  );
  const lookup: ObjectLookup = {
    secret: (ns, name) => {
      const s = secrets.get(name, ns);
      return s ? secretData(s.data) : undefined;
    },
    configMap: (ns, name) => {
      const c = configMaps.get(name, ns);
      return c ? configMapData(c.data, c.binaryData) : undefined;
    },
  };

  const managed = new Map<string, Managed>();
  /** Pods seen and left alone (unknown image) or waiting, so each is logged once per reason. */
  const noted = new Map<string, string>();
  let stopped = false;

  /** Logs `msg` unless it was the last thing said about this pod; true if logged. */
  const note = (uid: string, msg: string): boolean => {
    if (noted.get(uid) === msg) return false;
    noted.set(uid, msg);
    log(msg);
    return true;
  };
  const event = (m: Managed, msg: string): void =>
    appendFileSync(join(m.dir, 'events.log'), `${new Date().toISOString()} ${msg}\n`);

  const spawnProc = (m: Managed, p: Proc): void => {
    const fd = openSync(join(m.dir, `${p.container}.log`), 'a');
    const child = spawn(p.argv[0]!, p.argv.slice(1), {
      cwd: m.root,
      env: p.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    p.child = child;
    p.pid = child.pid;
    p.running = true;
    event(m, `started ${p.container} pid ${child.pid}: ${JSON.stringify(p.argv)}`);
    child.on('error', (err) => event(m, `${p.container}: spawn error ${err.message}`));
    child.on('exit', (code, signal) => {
      p.running = false;
      event(m, `exited ${p.container} pid ${p.pid} code ${code} signal ${signal}`);
      if (stopped) return;
      if (m.terminating || !managed.has(m.uid)) {
        schedule();
        return;
      }
      const delay = Math.min(BACKOFF_MAX_MS, 1000 * 2 ** p.restarts);
      p.restarts++;
      event(m, `restarting ${p.container} in ${delay} ms (restart ${p.restarts})`);
      p.restartTimer = setTimeout(() => {
        p.restartTimer = undefined;
        if (!stopped && !m.terminating && managed.has(m.uid)) spawnProc(m, p);
      }, delay);
    });
  };

  const signalAll = (m: Managed, signal: NodeJS.Signals): void => {
    for (const p of m.procs) {
      if (p.restartTimer) clearTimeout(p.restartTimer);
      p.restartTimer = undefined;
      if (p.running && p.pid !== undefined) {
        try {
          process.kill(-p.pid, signal);
          event(m, `sent ${signal} to ${p.container} pid ${p.pid}`);
        } catch {
          // Already gone.
        }
      }
    }
  };

  /** Writes every mounted volume; false while a dependency is missing. */
  const writeVolumes = (pod: V1Pod, m: Managed, containers: V1Container[]): boolean => {
    const plans: Array<{ plan: VolumePlan; container: V1Container }> = [];
    try {
      for (const c of containers)
        for (const plan of planVolumes(pod, c, lookup)) plans.push({ plan, container: c });
    } catch (err) {
      if (err instanceof MissingObjectError) {
        note(m.uid, `pod ${m.namespace}/${m.name}: waiting for ${err.message}`);
        return false;
      }
      throw err;
    }
    for (const { plan } of plans) {
      const dir = join(m.root, plan.mountPath);
      if (plan.files === undefined) mkdirSync(dir, { recursive: true });
      else if (writeAtomic(dir, plan.files) && m.procs.length > 0) {
        event(m, `updated volume ${plan.name} at ${plan.mountPath}`);
      }
    }
    m.mounts = plans.map(({ plan, container }) => ({
      container,
      mountPath: plan.mountPath,
      hostPath: join(m.root, plan.mountPath),
    }));
    return true;
  };

  const startPod = (pod: V1Pod): void => {
    const uid = pod.metadata!.uid!;
    const ns = pod.metadata!.namespace!;
    const name = pod.metadata!.name!;
    const known = (pod.spec?.containers ?? [])
      .map((c) => ({ c, rule: findImage(opts.images, c.image) }))
      .filter((x): x is { c: V1Container; rule: ImageRule } => x.rule !== undefined);
    const inits = (pod.spec?.initContainers ?? [])
      .map((c) => ({ c, rule: findImage(opts.images, c.image) }))
      .filter((x): x is { c: V1Container; rule: ImageRule } => x.rule !== undefined);
    if (known.length === 0) {
      const images = (pod.spec?.containers ?? []).map((c) => c.image).join(', ');
      note(
        uid,
        `pod ${ns}/${name}: image ${images} unknown to the pod runner, left to KWOK (known: ${describeTable(opts.images)})`,
      );
      return;
    }
    const dir = podDir(opts.runDir, { namespace: ns, name, uid });
    const m: Managed = {
      uid,
      namespace: ns,
      name,
      dir,
      root: join(dir, 'root'),
      procs: [],
      mounts: [],
      terminating: false,
      killTimer: undefined,
      deleteSent: false,
    };
    mkdirSync(m.root, { recursive: true });
    const procs: Proc[] = [];
    try {
      if (
        !writeVolumes(
          pod,
          m,
          [...inits, ...known].map((k) => k.c),
        )
      )
        return;
      const argvOf = (c: V1Container, rule: ImageRule) => {
        const podEnv: Record<string, string> = {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: m.root,
          HOSTNAME: name,
          POD_NAME: name,
          POD_NAMESPACE: ns,
          POD_IP: pod.status!.podIP!,
          TETHER_POD_ROOT: m.root,
        };
        const own = resolveEnv(pod, c, lookup);
        const mounts: MountMap[] = m.mounts.filter((x) => x.container === c);
        const env = Object.fromEntries(
          Object.entries({ ...podEnv, ...own }).map(([k, v]) => [k, rewriteMountPaths(v, mounts)]),
        );
        const expand = (xs: string[] | undefined): string[] | undefined =>
          xs?.map((x) => rewriteMountPaths(expandVars(x, env), mounts));
        return { argv: buildArgv(rule, expand(c.command), expand(c.args)), env };
      };
      // Init containers of known images run to completion, in order, before the others (as the
      // kubelet runs them); bounded, since the runner waits for each. Unknown images are skipped.
      for (const { c, rule } of inits) {
        const { argv, env } = argvOf(c, rule);
        const r = spawnSync(argv[0]!, argv.slice(1), { cwd: m.root, env, timeout: 10_000, encoding: 'utf8' });
        appendFileSync(
          join(dir, 'events.log'),
          `${new Date().toISOString()} init ${c.name}: ${JSON.stringify(argv)} exit ${r.status}${r.error ? ` ${r.error.message}` : ''}\n`,
        );
        if (r.status !== 0) {
          note(
            uid,
            `pod ${ns}/${name}: init container ${c.name} failed (${r.status}): ${(r.stderr ?? '').slice(0, 200)}`,
          );
          return;
        }
      }
      for (const { c, rule } of known) {
        const { argv, env } = argvOf(c, rule);
        procs.push({
          container: c.name,
          argv,
          env,
          child: undefined,
          pid: undefined,
          running: false,
          restarts: 0,
          restartTimer: undefined,
        });
      }
    } catch (err) {
      if (err instanceof MissingObjectError) {
        note(uid, `pod ${ns}/${name}: waiting for ${err.message}`);
        return;
      }
      // A pod the runner cannot start is reported, not retried in a loop.
      if (note(uid, `pod ${ns}/${name}: cannot run: ${(err as Error).message}`)) {
        appendFileSync(
          join(dir, 'events.log'),
          `${new Date().toISOString()} cannot run: ${(err as Error).message}\n`,
        );
      }
      return;
    }
    m.procs = procs;
    managed.set(uid, m);
    noted.delete(uid);
    log(
      `pod ${ns}/${name} (${pod.status!.podIP}): running ${procs.map((p) => p.container).join(', ')} in ${dir}`,
    );
    for (const p of procs) spawnProc(m, p);
  };

  const beginTermination = (m: Managed, graceS: number): void => {
    m.terminating = true;
    event(m, `pod deleting, grace ${graceS} s`);
    signalAll(m, 'SIGTERM');
    m.killTimer = setTimeout(() => {
      if (m.procs.some((p) => p.running)) {
        event(m, 'grace period over');
        signalAll(m, 'SIGKILL');
      }
    }, graceS * 1000);
  };

  const finishIfDone = (m: Managed, podExists: boolean): void => {
    if (m.procs.some((p) => p.running)) return;
    if (m.killTimer) clearTimeout(m.killTimer);
    managed.delete(m.uid);
    if (podExists && !m.deleteSent) {
      m.deleteSent = true;
      event(m, 'all processes ended; deleting the pod (grace 0), as the kubelet does');
      core
        .deleteNamespacedPod({ name: m.name, namespace: m.namespace, gracePeriodSeconds: 0 })
        .catch((err: unknown) => {
          if ((err as { code?: number }).code !== 404)
            log(`delete pod ${m.namespace}/${m.name}: ${String(err)}`);
        });
    }
  };

  const reconcile = (): void => {
    if (stopped) return;
    const live = new Map<string, V1Pod>();
    for (const pod of pods.list()) {
      const uid = pod.metadata?.uid;
      if (uid && pod.spec?.nodeName && nodes.has(pod.spec.nodeName)) live.set(uid, pod);
    }
    for (const [uid, m] of managed) {
      const pod = live.get(uid);
      if (!pod) {
        // Gone without our seeing a deletionTimestamp (force delete): no grace left.
        if (!m.terminating) beginTermination(m, 0);
        finishIfDone(m, false);
      } else if (pod.metadata?.deletionTimestamp && !m.terminating) {
        beginTermination(m, pod.metadata.deletionGracePeriodSeconds ?? 30);
      } else if (m.terminating) {
        finishIfDone(m, true);
      } else {
        try {
          writeVolumes(
            pod,
            m,
            m.mounts.map((x) => x.container).filter((c, i, a) => a.indexOf(c) === i),
          );
        } catch (err) {
          event(m, `volume update failed: ${(err as Error).message}`);
        }
      }
    }
    for (const [uid, pod] of live) {
      if (managed.has(uid) || pod.metadata?.deletionTimestamp || !pod.status?.podIP) continue;
      if (pod.status.phase === 'Succeeded' || pod.status.phase === 'Failed') continue;
      startPod(pod);
    }
    for (const uid of noted.keys()) if (!live.has(uid)) noted.delete(uid);
  };

  let queued = false;
  const schedule = (): void => {
    if (queued || stopped) return;
    queued = true;
    setImmediate(() => {
      queued = false;
      try {
        reconcile();
      } catch (err) {
        log(`reconcile failed: ${(err as Error).stack ?? String(err)}`);
      }
    });
  };

  const informers = [pods, secrets, configMaps] as Array<
    Informer<KubernetesObject> & ObjectCache<KubernetesObject>
  >;
  for (const inf of informers) {
    for (const verb of ['add', 'update', 'delete'] as const) inf.on(verb, schedule);
    // An informer stops on a watch error; start it again (bounded by `stopped`).
    inf.on('error', (err: unknown) => {
      if (stopped) return;
      log(`watch error: ${String(err)}; restarting in 500 ms`);
      setTimeout(() => {
        if (!stopped) inf.start().catch((e: unknown) => log(`informer restart failed: ${String(e)}`));
      }, 500);
    });
  }
  // Secrets and ConfigMaps first, so pods listed at start find their volumes.
  // If this Node process dies, its pods' processes die with it (they run in
  // their own process groups, so nothing else would reach them).
  const killAllNow = (): void => {
    for (const m of managed.values()) {
      for (const p of m.procs) {
        if (p.running && p.pid !== undefined) {
          try {
            process.kill(-p.pid, 'SIGKILL');
          } catch {
            // Already gone.
          }
        }
      }
    }
  };
  process.on('exit', killAllNow);
  await Promise.all([secrets.start(), configMaps.start()]);
  await pods.start();
  log(`pod runner watching nodes ${[...nodes].join(', ')}; images: ${describeTable(opts.images)}`);
  schedule();

  return {
    async stop(graceMs = 5_000): Promise<void> {
      if (stopped) return;
      stopped = true;
      await Promise.allSettled(informers.map((i) => i.stop()));
      for (const m of managed.values()) {
        if (m.killTimer) clearTimeout(m.killTimer);
        signalAll(m, 'SIGTERM');
      }
      const deadline = Date.now() + graceMs;
      const anyRunning = (): boolean => [...managed.values()].some((m) => m.procs.some((p) => p.running));
      while (anyRunning() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const m of managed.values()) signalAll(m, 'SIGKILL');
      const hard = Date.now() + 3_000;
      while (anyRunning() && Date.now() < hard) await new Promise((r) => setTimeout(r, 50));
      process.off('exit', killAllNow);
      log('pod runner stopped');
    },
  };
}
