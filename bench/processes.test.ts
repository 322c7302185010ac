import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { cpuSeconds, pinned, processTree, rssBytes, setNiceness, treeCpuSeconds } from './processes.ts';

describe('pinned', () => {
  it.each([
    { desc: 'no core: the command as it is', cpu: undefined, want: ['wrk', ['-c', '64']] },
    { desc: 'a core: under taskset', cpu: 1, want: ['taskset', ['-c', '1', 'wrk', '-c', '64']] },
  ])('$desc', ({ cpu, want }) => {
    expect(pinned(cpu, 'wrk', ['-c', '64'])).toEqual(want);
  });

  it('puts nice in front when a niceness is set, and stops when unset', () => {
    setNiceness(-5);
    try {
      expect(pinned('0,1', 'wrk', [])).toEqual(['nice', ['-n', '-5', 'taskset', '-c', '0,1', 'wrk']]);
      expect(pinned(undefined, 'wrk', [])).toEqual(['nice', ['-n', '-5', 'wrk']]);
    } finally {
      setNiceness(undefined);
    }
    expect(pinned(undefined, 'wrk', [])).toEqual(['wrk', []]);
  });
});

describe('/proc readings', () => {
  const started: Array<ReturnType<typeof spawn>> = [];
  afterEach(() => {
    for (const c of started.splice(0)) c.kill('SIGKILL');
  });

  it('processTree finds a child (and its child), treeCpuSeconds adds theirs to ours', async () => {
    // sh → sleep: a grandchild, as cluster workers are children of the proxy's primary.
    const child = spawn('sh', ['-c', 'sleep 30 & wait'], { stdio: 'ignore' });
    started.push(child);
    const pid = child.pid as number;
    let tree: number[] = [];
    for (let i = 0; i < 50 && tree.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      tree = processTree(pid);
    }
    expect(tree[0]).toBe(pid);
    expect(tree).toHaveLength(2);
    expect(processTree(process.pid)).toEqual(expect.arrayContaining([process.pid, pid, tree[1]]));
    // Ours first: CPU time only grows, so the tree read after it is at least as much.
    const own = cpuSeconds(process.pid) as number;
    expect(treeCpuSeconds(process.pid)).toBeGreaterThanOrEqual(own);
  });

  it('reads VmRSS in bytes; nothing for a process that is gone', () => {
    expect(rssBytes(process.pid)).toBeGreaterThan(10 * 1024 * 1024);
    expect(rssBytes(2 ** 22 + 12_345)).toBeUndefined();
    expect(treeCpuSeconds(undefined)).toBeUndefined();
  });
});
