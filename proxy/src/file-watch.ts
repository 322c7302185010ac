/**
 * Watches one file for changes, the way configuration is replaced in
 * practice: editors write a new file and rename it over the old one, and
 * kubelet swaps a ConfigMap or Secret volume's `..data` symlink. Both replace
 * the inode a plain file watch follows, so the directory is watched instead.
 */
import { watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

/**
 * Calls `onChange` once things settle after the file (or a kubelet `..data`
 * swap in its directory) changed. The watcher does not keep the process alive.
 *
 * @param debounceMs - quiet time before `onChange`, ms: writers touch a file several times.
 * @returns a function that stops watching.
 */
export function watchFile(path: string, onChange: () => void, debounceMs = 100): () => void {
  const full = resolve(path);
  const name = basename(full);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dirname(full), (_event, changed) => {
    if (changed !== null && changed !== name && !changed.startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
    timer.unref();
  });
  watcher.unref();
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
