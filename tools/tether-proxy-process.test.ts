import { describe, expect, it } from 'vitest';
import {
  hasFlag,
  PROXY_BIN,
  parseListeningLine,
  portOf,
  proxyCommand,
  urlOf,
} from './tether-proxy-process.ts';

describe('parseListeningLine', () => {
  it('reads the addresses of the listening record', () => {
    const line = JSON.stringify({
      time: '2026-01-01T00:00:00.000Z',
      level: 'info',
      msg: 'tether-proxy listening',
      listen: '127.0.0.1:40001',
      admin: '127.0.0.1:40002',
      revision: 1,
    });
    expect(parseListeningLine(line)).toEqual({ listen: '127.0.0.1:40001', admin: '127.0.0.1:40002' });
  });

  it('ignores other records, incomplete ones and non-JSON lines', () => {
    expect(
      parseListeningLine('{"msg":"routing table swapped in","listen":"x:1","admin":"x:2"}'),
    ).toBeUndefined();
    expect(parseListeningLine('{"msg":"tether-proxy listening","listen":"127.0.0.1:1"}')).toBeUndefined();
    expect(parseListeningLine('tether-proxy: unknown flag --nope')).toBeUndefined();
  });
});

describe('portOf and urlOf', () => {
  it('take the port after the last colon', () => {
    expect(portOf('127.0.0.1:8080')).toBe(8080);
    expect(portOf('::1:8080')).toBe(8080);
    expect(() => portOf('localhost')).toThrow(/no port/);
    expect(() => portOf('host:')).toThrow(/no port/);
    expect(() => portOf('host:70000')).toThrow(/no port/);
  });

  it('give a URL a local client can use', () => {
    expect(urlOf('127.0.0.1:8080')).toBe('http://127.0.0.1:8080');
    expect(urlOf('0.0.0.0:8080')).toBe('http://127.0.0.1:8080');
    expect(urlOf('::1:8080')).toBe('http://[::1]:8080');
    expect(urlOf(':::8080')).toBe('http://[::1]:8080');
  });
});

describe('proxyCommand', () => {
  it('runs the bin with this Node on free loopback ports by default', () => {
    expect(proxyCommand({ args: ['--config', 'p.yaml'] })).toEqual({
      command: process.execPath,
      args: [PROXY_BIN, '--config', 'p.yaml', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
    });
  });

  it('keeps given listen flags, in either form', () => {
    const { args } = proxyCommand({ args: ['--listen', '127.0.0.1:9000', '--admin-listen=127.0.0.1:9001'] });
    expect(args).toEqual([PROXY_BIN, '--listen', '127.0.0.1:9000', '--admin-listen=127.0.0.1:9001']);
    expect(hasFlag(args, '--listen')).toBe(true);
    expect(hasFlag(args, '--list')).toBe(false);
  });

  it('puts a launcher first, Node flags and the exit-with-parent preload before the entry', () => {
    const { command, args } = proxyCommand({
      args: ['--listen', 'a:0', '--admin-listen', 'b:0'],
      launcher: ['taskset', '-c', '0'],
      node: '/usr/bin/node',
      nodeArgs: ['--cpu-prof'],
      entry: '/x/cli.js',
      exitWithParent: true,
    });
    expect(command).toBe('taskset');
    expect(args.slice(0, 4)).toEqual(['-c', '0', '/usr/bin/node', '--cpu-prof']);
    expect(args[4]).toBe('--import');
    expect(args[5]).toMatch(/^file:\/\/.*\/tools\/exit-with-parent\.ts$/);
    expect(args.slice(6)).toEqual(['/x/cli.js', '--listen', 'a:0', '--admin-listen', 'b:0']);
  });
});
