/**
 * Writes a volume's files the way the kubelet's AtomicWriter does
 * (pkg/volume/util/atomic_writer.go): the files live in a hidden
 * timestamped directory, `..data` is a symlink to it, and each top-level
 * name is a symlink through `..data`. An update writes a new directory and
 * renames a fresh `..data` symlink over the old one, so a reader sees either
 * the old or the new set of files, never a mix.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, posix } from 'node:path';

/** Relative path (may contain `/`) → bytes. */
export type Files = Record<string, Buffer>;

/** True if `dir/..data` holds exactly `files`. */
function sameAsCurrent(dir: string, files: Files): boolean {
  const data = join(dir, '..data');
  if (!existsSync(data)) return false;
  const current = listFiles(data);
  const names = Object.keys(files).sort();
  if (current.length !== names.length || current.some((n, i) => n !== names[i])) return false;
  return names.every((n) => readFileSync(join(data, n)).equals(files[n]!));
}

/** Regular files under `root`, relative, sorted. */
function listFiles(root: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listFiles(root, rel));
    else out.push(rel);
  }
  return out.sort();
}

/**
 * Makes `dir` hold `files` (creating it if needed), swapping atomically.
 * @returns false if `dir` already held exactly these files (nothing written).
 * @throws Error for a path that is absolute or climbs out with `..`.
 */
export function writeAtomic(dir: string, files: Files): boolean {
  for (const p of Object.keys(files)) {
    const n = posix.normalize(p);
    if (posix.isAbsolute(p) || n.startsWith('..') || n.startsWith('.')) {
      throw new Error(
        `volume file path ${JSON.stringify(p)} must be relative and must not start with '.' or '..'`,
      );
    }
  }
  mkdirSync(dir, { recursive: true });
  if (sameAsCurrent(dir, files)) return false;
  const dataLink = join(dir, '..data');
  const old = existsSync(dataLink) ? readlinkSync(dataLink) : undefined;
  const stamp = `..${new Date().toISOString().replace(/[-:.TZ]/g, '_')}${Math.random().toString(36).slice(2, 8)}`;
  const tsDir = join(dir, stamp);
  mkdirSync(tsDir);
  for (const [p, content] of Object.entries(files)) {
    const file = join(tsDir, p);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content, { mode: 0o644 });
  }
  const tmpLink = join(dir, '..data_tmp');
  rmSync(tmpLink, { force: true });
  symlinkSync(stamp, tmpLink);
  // rename(2) replaces the old symlink in one step: this is the swap.
  renameSync(tmpLink, dataLink);
  const top = new Set(Object.keys(files).map((p) => posix.normalize(p).split('/')[0]!));
  for (const name of top) {
    const link = join(dir, name);
    if (!isSymlink(link)) symlinkSync(posix.join('..data', name), link);
  }
  for (const name of readdirSync(dir)) {
    if (name.startsWith('..') || top.has(name)) continue;
    if (isSymlink(join(dir, name))) rmSync(join(dir, name));
  }
  if (old && old !== stamp) rmSync(join(dir, old), { recursive: true, force: true });
  return true;
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}
