import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { writeAtomic } from './pod-files.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'pod-files-'));
  dirs.push(d);
  return join(d, 'vol');
};
const f = (s: string): Buffer => Buffer.from(s);

describe('writeAtomic', () => {
  it('lays files out like the kubelet: ..data symlink, top-level links through it', () => {
    const dir = tmp();
    expect(writeAtomic(dir, { token: f('a'), 'sub/x': f('b') })).toBe(true);
    expect(readFileSync(join(dir, 'token'), 'utf8')).toBe('a');
    expect(readFileSync(join(dir, 'sub', 'x'), 'utf8')).toBe('b');
    expect(lstatSync(join(dir, '..data')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(dir, 'token'))).toBe('..data/token');
  });

  it('swaps to new content, drops removed keys and the old directory', () => {
    const dir = tmp();
    writeAtomic(dir, { a: f('1'), b: f('2') });
    const first = readlinkSync(join(dir, '..data'));
    expect(writeAtomic(dir, { a: f('3') })).toBe(true);
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('3');
    expect(readlinkSync(join(dir, '..data'))).not.toBe(first);
    expect(readdirSync(dir).sort()).toEqual(['..data', readlinkSync(join(dir, '..data')), 'a'].sort());
  });

  it('writes nothing when the content is unchanged', () => {
    const dir = tmp();
    writeAtomic(dir, { a: f('1') });
    const link = readlinkSync(join(dir, '..data'));
    expect(writeAtomic(dir, { a: f('1') })).toBe(false);
    expect(readlinkSync(join(dir, '..data'))).toBe(link);
  });

  it('refuses paths that escape the volume', () => {
    expect(() => writeAtomic(tmp(), { '../x': f('1') })).toThrow(/must be relative/);
    expect(() => writeAtomic(tmp(), { '/etc/x': f('1') })).toThrow(/must be relative/);
  });
});
