/**
 * Watches one file for changes, the way configuration is replaced in
 * practice: editors write a new file and rename it over the old one, and
 * kubelet swaps a ConfigMap or Secret volume's `..data` symlink. Both replace
 * the inode a plain file watch follows, so the directory is watched instead.
 *
 * A directory below a volume's top (a projected Secret's `session-store/`)
 * is itself a symlink through `..data` into a timestamped directory that the
 * next swap deletes: the watch would stay on that dead directory and miss
 * every later swap. So after each change the directory's real path is
 * compared with the one watched, and the watch moves to the new one.
 */
import { type FSWatcher, realpathSync, watch } from 'node:fs';
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
  const dir = dirname(full);
  const name = basename(full);
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  let watched: string | undefined;
  let stopped = false;

  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
    timer.unref();
  };
  const fire = (): void => {
    if (stopped) return;
    if (realDir() !== watched) arm();
    onChange();
  };
  const arm = (): void => {
    watcher?.close();
    watched = realDir();
    try {
      watcher = watch(dir, (_event, changed) => {
        if (changed !== null && changed !== name && !changed.startsWith('..')) return;
        schedule();
      });
    } catch {
      // The directory is gone for the moment: the next event of an old watch, if any, retries.
      watcher = undefined;
      return;
    }
    // The watched directory was deleted (a kubelet swap removes the old one): look again.
    watcher.on('error', schedule);
    watcher.unref();
  };
  const realDir = (): string | undefined => {
    try {
      return realpathSync(dir);
    } catch {
      return undefined;
    }
  };

  arm();
  return () => {
    stopped = true;
    clearTimeout(timer);
    watcher?.close();
  };
}
