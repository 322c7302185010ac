// watchFile against the layouts files are really replaced in: a rename over
// the file, and the kubelet's volume swaps (test/cluster/pod-files.ts writes
// them exactly as pkg/volume/util/atomic_writer.go does).
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAtomic } from '../../test/cluster/pod-files.ts';
import { watchFile } from './file-watch.ts';

const dirs: string[] = [];
const stops: Array<() => void> = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'tether-watch-'));
  dirs.push(d);
  return d;
}

/** Watches `path`; resolves each change to the file's content as read in the callback. */
function watchContents(path: string): { next: () => Promise<string> } {
  const seen: string[] = [];
  let wake: (() => void) | undefined;
  stops.push(
    watchFile(
      path,
      () => {
        seen.push(readFileSync(path, 'utf8'));
        wake?.();
      },
      20,
    ),
  );
  return {
    next: async () => {
      const deadline = Date.now() + 3_000;
      while (seen.length === 0) {
        if (Date.now() > deadline) throw new Error(`no change of ${path} seen within 3 s`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
      return seen.shift() as string;
    },
  };
}

const bytes = (s: string) => Buffer.from(s);

describe('watchFile', () => {
  it('sees a file renamed over the watched one, again and again', async () => {
    const d = tempDir();
    const file = join(d, 'keys');
    writeFileSync(file, 'one');
    const w = watchContents(file);
    for (const v of ['two', 'three']) {
      writeFileSync(join(d, '.tmp'), v);
      renameSync(join(d, '.tmp'), file);
      expect(await w.next()).toBe(v);
    }
  });

  it('sees every kubelet swap of a file at the top of a volume', async () => {
    const vol = tempDir();
    writeAtomic(vol, { 'admin-token': bytes('a') });
    const w = watchContents(join(vol, 'admin-token'));
    for (const v of ['b', 'c', 'd']) {
      writeAtomic(vol, { 'admin-token': bytes(v) });
      expect(await w.next()).toBe(v);
    }
  });

  it('sees every kubelet swap of a file in a subdirectory of a volume (a projected Secret at session-store/)', async () => {
    // `session-store` is a symlink through `..data` to a timestamped directory that the next
    // swap deletes: a watch on the directory it resolved to saw the first swap, then nothing.
    const vol = tempDir();
    const files = (sentinels: string) => ({
      'admin-token': bytes('t'),
      'session-store/sentinels': bytes(sentinels),
      'session-store/masterName': bytes('default-shop'),
    });
    writeAtomic(vol, files(''));
    const w = watchContents(join(vol, 'session-store', 'sentinels'));
    for (const v of ['10.244.1.7:26379', '10.244.1.7:26379,10.244.2.3:26379', '10.244.2.3:26379']) {
      writeAtomic(vol, files(v));
      expect(await w.next()).toBe(v);
    }
  });
});
