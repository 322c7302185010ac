/**
 * Pure helpers of the pod runner: what a kubelet works out from a Pod before
 * it starts a container — environment (values, fieldRef, Secret and
 * ConfigMap keys, `$(VAR)` expansion), the files of each mounted volume, and
 * where those files live for a process that has no mount namespace.
 *
 * There is no container filesystem: a volume mounted at `/etc/x` lives at
 * `<podRoot>/etc/x`, and every arg or env value that names a path under a
 * mount path is rewritten to the same path under the pod root.
 */
import { posix } from 'node:path';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';

/** Data of a Secret or ConfigMap: file name → bytes. */
export type ObjectData = Record<string, Buffer>;

/** Looks up Secrets and ConfigMaps (from the runner's caches). Undefined: not (yet) there. */
export interface ObjectLookup {
  secret(namespace: string, name: string): ObjectData | undefined;
  configMap(namespace: string, name: string): ObjectData | undefined;
}

/** Secret `data` is base64; ConfigMap `data` is text and `binaryData` base64. */
export function secretData(data: Record<string, string> | undefined): ObjectData {
  return Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
}

/** See {@link secretData}. */
export function configMapData(
  data: Record<string, string> | undefined,
  binaryData: Record<string, string> | undefined,
): ObjectData {
  return {
    ...Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'utf8')])),
    ...Object.fromEntries(Object.entries(binaryData ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  };
}

/** A dependency that is not there yet: the kubelet waits (ContainerCreating), so does the runner. */
export class MissingObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MissingObjectError';
  }
}

/**
 * Value of a downward-API `fieldRef` path, as the kubelet supports them
 * (`metadata.name`, `metadata.namespace`, `metadata.uid`,
 * `metadata.labels['k']`, `metadata.annotations['k']`, `spec.nodeName`,
 * `spec.serviceAccountName`, `status.podIP`, `status.hostIP`, `status.podIPs`).
 * @throws Error for any other path.
 */
export function fieldRefValue(pod: V1Pod, fieldPath: string): string {
  const m = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(fieldPath);
  if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP':
      return pod.status?.podIP ?? '';
    case 'status.podIPs':
      return (pod.status?.podIPs ?? []).map((p) => p.ip).join(',');
    case 'status.hostIP':
      return pod.status?.hostIP ?? '';
    default:
      throw new Error(`fieldRef ${fieldPath} is not supported by the pod runner`);
  }
}

/**
 * Kubernetes' `$(VAR)` expansion in command, args and env values: a defined
 * variable is replaced, an undefined one is left as written, `$$` is a
 * literal `$` (so `$$(VAR)` stays `$(VAR)`).
 */
export function expandVars(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (whole, name: string | undefined) => {
    if (whole === '$$') return '$';
    return name !== undefined && name in env ? env[name]! : whole;
  });
}

/** A mount path and where its files really are. */
export interface MountMap {
  mountPath: string;
  hostPath: string;
}

/**
 * Rewrites paths under a mount path to the same path under the pod root:
 * the value itself if it is a path, or the part after `=` (`--config=/etc/x`).
 * The longest matching mount path wins.
 */
export function rewriteMountPaths(value: string, mounts: readonly MountMap[]): string {
  const sorted = [...mounts].sort((a, b) => b.mountPath.length - a.mountPath.length);
  const one = (p: string): string => {
    for (const m of sorted) {
      const mp = m.mountPath.replace(/\/+$/, '');
      if (p === mp || p.startsWith(`${mp}/`)) return m.hostPath + p.slice(mp.length);
    }
    return p;
  };
  if (value.startsWith('/')) return one(value);
  const eq = value.indexOf('=');
  if (eq > 0 && value[eq + 1] === '/') return value.slice(0, eq + 1) + one(value.slice(eq + 1));
  return value;
}

/**
 * The environment of `container`: `envFrom` first, then `env` in order, each
 * value `$(VAR)`-expanded against what came before (as the kubelet does).
 * @throws MissingObjectError if a referenced Secret/ConfigMap or key is
 *   missing and not optional; Error for an unsupported source.
 */
export function resolveEnv(pod: V1Pod, container: V1Container, lookup: ObjectLookup): Record<string, string> {
  const ns = pod.metadata?.namespace ?? 'default';
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const ref = from.secretRef ?? from.configMapRef;
    if (!ref?.name) continue;
    const data = from.secretRef ? lookup.secret(ns, ref.name) : lookup.configMap(ns, ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new MissingObjectError(`${from.secretRef ? 'Secret' : 'ConfigMap'} ${ns}/${ref.name} (envFrom)`);
    }
    for (const [k, v] of Object.entries(data)) env[`${from.prefix ?? ''}${k}`] = v.toString('utf8');
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom === undefined) {
      env[e.name] = expandVars(e.value ?? '', env);
      continue;
    }
    const vf = e.valueFrom;
    if (vf.fieldRef) {
      env[e.name] = fieldRefValue(pod, vf.fieldRef.fieldPath);
    } else if (vf.secretKeyRef || vf.configMapKeyRef) {
      const ref = (vf.secretKeyRef ?? vf.configMapKeyRef)!;
      const kind = vf.secretKeyRef ? 'Secret' : 'ConfigMap';
      const data = vf.secretKeyRef ? lookup.secret(ns, ref.name ?? '') : lookup.configMap(ns, ref.name ?? '');
      const value = data?.[ref.key];
      if (value === undefined) {
        if (ref.optional) continue;
        throw new MissingObjectError(`${kind} ${ns}/${ref.name} key ${ref.key} (env ${e.name})`);
      }
      env[e.name] = value.toString('utf8');
    } else {
      throw new Error(
        `env ${e.name}: valueFrom ${Object.keys(vf).join(',')} is not supported by the pod runner`,
      );
    }
  }
  return env;
}

/** Files of one volume mount, ready to be written by the atomic writer. */
export interface VolumePlan {
  /** Volume name. */
  name: string;
  mountPath: string;
  /** Relative path → bytes; undefined for an emptyDir (a plain directory). */
  files: ObjectData | undefined;
}

/** `items` of a Secret/ConfigMap volume: which key goes to which file. */
type KeyPaths = Array<{ key: string; path: string }> | undefined;

/** Picks `items` (key → path) from `data`, or every key as its own file. */
function project(data: ObjectData, items: KeyPaths, what: string, optional: boolean | undefined): ObjectData {
  if (!items) return { ...data };
  const out: ObjectData = {};
  for (const it of items) {
    const v = data[it.key];
    if (v === undefined) {
      if (optional) continue;
      throw new MissingObjectError(`${what} key ${it.key}`);
    }
    out[it.path] = v;
  }
  return out;
}

/** The files of `volume`; see {@link planVolumes}. */
export function volumeFiles(pod: V1Pod, volume: V1Volume, lookup: ObjectLookup): ObjectData | undefined {
  const ns = pod.metadata?.namespace ?? 'default';
  const fromSecret = (name: string, items: KeyPaths, optional?: boolean): ObjectData => {
    const data = lookup.secret(ns, name);
    if (!data) {
      if (optional) return {};
      throw new MissingObjectError(`Secret ${ns}/${name} (volume ${volume.name})`);
    }
    return project(data, items, `Secret ${ns}/${name}`, optional);
  };
  const fromConfigMap = (name: string, items: KeyPaths, optional?: boolean): ObjectData => {
    const data = lookup.configMap(ns, name);
    if (!data) {
      if (optional) return {};
      throw new MissingObjectError(`ConfigMap ${ns}/${name} (volume ${volume.name})`);
    }
    return project(data, items, `ConfigMap ${ns}/${name}`, optional);
  };
  const fromDownward = (items: Array<{ path: string; fieldRef?: { fieldPath: string } }>): ObjectData =>
    Object.fromEntries(
      items
        .filter((i) => i.fieldRef)
        .map((i) => [i.path, Buffer.from(fieldRefValue(pod, i.fieldRef!.fieldPath))]),
    );
  if (volume.secret)
    return fromSecret(volume.secret.secretName ?? '', volume.secret.items, volume.secret.optional);
  if (volume.configMap) {
    return fromConfigMap(volume.configMap.name ?? '', volume.configMap.items, volume.configMap.optional);
  }
  if (volume.downwardAPI) return fromDownward(volume.downwardAPI.items ?? []);
  if (volume.emptyDir) return undefined;
  if (volume.projected) {
    const out: ObjectData = {};
    for (const src of volume.projected.sources ?? []) {
      if (src.secret)
        Object.assign(out, fromSecret(src.secret.name ?? '', src.secret.items, src.secret.optional));
      else if (src.configMap) {
        Object.assign(
          out,
          fromConfigMap(src.configMap.name ?? '', src.configMap.items, src.configMap.optional),
        );
      } else if (src.downwardAPI) Object.assign(out, fromDownward(src.downwardAPI.items ?? []));
      // serviceAccountToken sources are skipped: the runner mints no tokens (yet).
    }
    return out;
  }
  throw new Error(
    `volume ${volume.name}: type ${Object.keys(volume)
      .filter((k) => k !== 'name')
      .join(',')} is not supported by the pod runner`,
  );
}

/**
 * The volumes `container` mounts, with their files.
 * @throws MissingObjectError while a non-optional Secret/ConfigMap is missing;
 *   Error for an unknown volume name or unsupported volume type.
 */
export function planVolumes(pod: V1Pod, container: V1Container, lookup: ObjectLookup): VolumePlan[] {
  const volumes = new Map((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
  return (container.volumeMounts ?? []).map((m) => {
    const volume = volumes.get(m.name);
    if (!volume) throw new Error(`volumeMount ${m.name}: no such volume in the pod`);
    if (!posix.isAbsolute(m.mountPath)) throw new Error(`volumeMount ${m.name}: mountPath must be absolute`);
    return {
      name: m.name,
      mountPath: posix.normalize(m.mountPath).replace(/(.)\/+$/, '$1'),
      files: volumeFiles(pod, volume, lookup),
    };
  });
}
