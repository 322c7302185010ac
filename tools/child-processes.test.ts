import { afterEach, describe, expect, it } from 'vitest';
import { ChildProcesses, describeExit, LineSplitter, parseJsonLine, waitForLine } from './child-processes.ts';

describe('LineSplitter', () => {
  it('joins lines split across chunks and drops \\n and \\r\\n', () => {
    const s = new LineSplitter();
    expect(s.push('one\ntw')).toEqual(['one']);
    expect(s.push('o\r\nthree\n\nfour')).toEqual(['two', 'three', '']);
    expect(s.end()).toEqual(['four']);
    expect(s.end()).toEqual([]);
  });

  it('decodes a UTF-8 character split between two chunks', () => {
    const bytes = Buffer.from('naïve…\n', 'utf8');
    const s = new LineSplitter();
    const at = bytes.indexOf(0xc3) + 1; // inside the two bytes of "ï"
    expect(s.push(bytes.subarray(0, at))).toEqual([]);
    expect(s.push(bytes.subarray(at))).toEqual(['naïve…']);
  });

  it('has no last line when the stream ended with a newline', () => {
    const s = new LineSplitter();
    expect(s.push(Buffer.from('a\n'))).toEqual(['a']);
    expect(s.end()).toEqual([]);
  });
});

describe('parseJsonLine', () => {
  it('returns the object of a JSON line, undefined for anything else', () => {
    expect(parseJsonLine('{"msg":"x","port":1}')).toEqual({ msg: 'x', port: 1 });
    expect(parseJsonLine('plain text')).toBeUndefined();
    expect(parseJsonLine('{broken')).toBeUndefined();
    expect(parseJsonLine('[1,2]')).toBeUndefined();
    expect(parseJsonLine('null')).toBeUndefined();
  });
});

describe('describeExit', () => {
  it('names the exit code, the signal or the start failure', () => {
    expect(describeExit({ code: 2, signal: null })).toBe('exited with 2');
    expect(describeExit({ code: null, signal: 'SIGKILL' })).toBe('was killed by SIGKILL');
    expect(describeExit({ code: null, signal: null, error: new Error('spawn x ENOENT') })).toBe(
      'could not start (spawn x ENOENT)',
    );
  });
});

describe('ChildProcesses', () => {
  const children = new ChildProcesses();
  afterEach(() => children.stopAll(1_000));

  /** `node -e <script>`: a child that does what the test needs. */
  const node = (name: string, script: string) => children.spawn(name, process.execPath, ['-e', script]);

  it('reads both pipes line by line, keeps a tail and reports the exit', async () => {
    const c = children.spawn(
      'talker',
      process.execPath,
      ['-e', 'for (let i = 1; i <= 50; i++) console.log("out " + i); console.error("err"); process.exit(3)'],
      { tailLines: 5 },
    );
    const seen: Array<[string, string]> = [];
    c.onLine((line, stream) => seen.push([line, stream]));
    expect(await c.exited).toEqual({ code: 3, signal: null });
    expect(c.isRunning()).toBe(false);
    expect(seen).toHaveLength(51);
    expect(seen).toContainEqual(['err', 'stderr']);
    expect(seen).toContainEqual(['out 50', 'stdout']);
    expect(c.tail()).toHaveLength(5);
    expect(children.running()).toEqual([]);
  });

  it('hands over a last line without a newline', async () => {
    const c = node('no-newline', 'process.stdout.write("last")');
    await c.exited;
    expect(c.tail()).toEqual(['last']);
  });

  it('does not throw when the command does not exist: exited carries the error', async () => {
    const c = children.spawn('ghost', '/nonexistent/command', []);
    const s = await c.exited;
    expect(s.error?.message).toMatch(/ENOENT/);
    expect(c.isRunning()).toBe(false);
    expect(c.tail().join('\n')).toMatch(/ghost: cannot start \/nonexistent\/command/);
  });

  it('stops with SIGTERM when the child obeys it', async () => {
    const c = node('polite', 'console.log("up"); setInterval(() => {}, 1000)');
    await waitForLine(c, 'it is up', 5_000, (l) => (l === 'up' ? true : undefined));
    expect(children.running()).toEqual([`polite (pid ${c.proc.pid})`]);
    expect(await children.stop(c, 5_000)).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it('sends SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const c = node(
      'stubborn',
      'process.on("SIGTERM", () => {}); console.log("up"); setInterval(() => {}, 1000)',
    );
    await waitForLine(c, 'it is up', 5_000, (l) => (l === 'up' ? true : undefined));
    const t0 = Date.now();
    expect(await children.stop(c, 300)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('stopAll stops every child; killAllNow kills at once', async () => {
    const a = node('a', 'console.log("up"); setInterval(() => {}, 1000)');
    const b = node('b', 'process.on("SIGTERM", () => {}); console.log("up"); setInterval(() => {}, 1000)');
    // Both at once: a line written before waitForLine is called does not count.
    await Promise.all(
      [a, b].map((c) => waitForLine(c, 'it is up', 5_000, (l) => (l === 'up' ? true : undefined))),
    );
    await children.stopAll(300);
    expect(children.running()).toEqual([]);

    const c = node('c', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)');
    children.killAllNow();
    expect((await c.exited).signal).toBe('SIGKILL');
  });

  it('gives a stdin pipe that closes when we let go of it', async () => {
    const c = children.spawn(
      'reader',
      process.execPath,
      ['-e', 'process.stdin.on("end", () => process.exit(7)).resume()'],
      {
        stdin: 'pipe',
      },
    );
    c.proc.stdin?.end();
    expect((await c.exited).code).toBe(7);
  });
});

describe('waitForLine', () => {
  const children = new ChildProcesses();
  afterEach(() => children.stopAll(1_000));

  it('resolves with what the matcher returns for the first line it accepts', async () => {
    const c = children.spawn('ports', process.execPath, [
      '-e',
      'console.log("noise"); console.error(JSON.stringify({ port: 42 }))',
    ]);
    const port = await waitForLine(c, 'it reported its port', 5_000, (line, stream) =>
      stream === 'stderr' ? (parseJsonLine(line)?.port as number | undefined) : undefined,
    );
    expect(port).toBe(42);
  });

  it('rejects with the exit and the last output when the child ends first', async () => {
    const c = children.spawn('quitter', process.execPath, [
      '-e',
      'console.error("bad flag --nope"); process.exit(2)',
    ]);
    await expect(waitForLine(c, 'it listened', 5_000, () => undefined)).rejects.toThrow(
      /^quitter exited with 2 before it listened; its last output:\n {4}bad flag --nope$/,
    );
  });

  it('rejects after the timeout', async () => {
    const c = children.spawn('mute', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await expect(waitForLine(c, 'it listened', 200, () => undefined)).rejects.toThrow(
      /^mute did not report that it listened within 200 ms; its last output:\n {4}\(none\)$/,
    );
  });
});
