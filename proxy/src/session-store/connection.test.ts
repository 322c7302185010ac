import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ZodError } from 'zod';
import {
  formatSentinelList,
  parseSentinelList,
  parseSessionStoreConnection,
  readPublishedSessionStore,
} from './connection.ts';

describe('parseSentinelList', () => {
  it.each([
    {
      desc: 'IPv4 list with spaces',
      text: '10.244.1.7:26379, 10.244.1.8:26380',
      want: [
        { host: '10.244.1.7', port: 26379 },
        { host: '10.244.1.8', port: 26380 },
      ],
    },
    { desc: 'bracketed IPv6', text: '[fd00::7]:26379', want: [{ host: 'fd00::7', port: 26379 }] },
    { desc: 'trailing comma', text: '127.0.0.1:1,', want: [{ host: '127.0.0.1', port: 1 }] },
  ])('$desc', ({ text, want }) => {
    expect(parseSentinelList(text)).toEqual(want);
    expect(parseSentinelList(formatSentinelList(want))).toEqual(want);
  });

  it.each([
    { desc: 'no port', text: '10.0.0.1' },
    { desc: 'port 0', text: '10.0.0.1:0' },
    { desc: 'port too big', text: '10.0.0.1:70000' },
    { desc: 'unbracketed IPv6', text: 'fd00::7:26379:1' },
    { desc: 'empty', text: ' , ' },
  ])('refuses $desc', ({ text }) => {
    expect(() => parseSentinelList(text)).toThrow(/sentinels/);
  });
});

describe('parseSessionStoreConnection', () => {
  it('applies defaults and trims file values', () => {
    const c = parseSessionStoreConnection({ sentinels: '127.0.0.1:26379\n', masterName: 'default-shop\n' });
    expect(c).toEqual({
      sentinels: [{ host: '127.0.0.1', port: 26379 }],
      masterName: 'default-shop',
      password: '',
      writeMode: 'Async',
      waitReplicas: 1,
      waitTimeoutMs: 500,
    });
  });

  it.each([
    { desc: 'missing sentinels', values: { masterName: 'm' }, path: 'sentinels' },
    { desc: 'bad sentinel', values: { sentinels: 'x', masterName: 'm' }, path: 'sentinels' },
    { desc: 'bad master name', values: { sentinels: '127.0.0.1:1', masterName: 'a b' }, path: 'masterName' },
    {
      desc: 'bad write mode',
      values: { sentinels: '127.0.0.1:1', masterName: 'm', writeMode: 'sync' },
      path: 'writeMode',
    },
    {
      desc: 'negative wait',
      values: { sentinels: '127.0.0.1:1', masterName: 'm', waitReplicas: '-1' },
      path: 'waitReplicas',
    },
  ])('refuses $desc, naming the key', ({ values, path }) => {
    try {
      parseSessionStoreConnection(values);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ZodError);
      expect((err as ZodError).issues[0]?.path).toEqual([path]);
    }
  });
});

describe('readPublishedSessionStore (a mounted Secret the operator may not have filled in yet)', () => {
  it.each([
    {
      desc: 'sentinels published',
      files: { sentinels: '10.244.1.7:26379', masterName: 'ns-p' },
      want: 'ns-p',
    },
    {
      desc: 'sentinels empty: not published yet',
      files: { sentinels: '\n', masterName: 'ns-p' },
      want: undefined,
    },
    { desc: 'sentinels missing: not published yet', files: { masterName: 'ns-p' }, want: undefined },
    {
      desc: 'sentinels empty, masterName bad: refused',
      files: { sentinels: '', masterName: 'a b' },
      want: 'throws',
    },
    { desc: 'sentinels empty, masterName missing: refused', files: { sentinels: '' }, want: 'throws' },
  ])('$desc', ({ files, want }) => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-secret-'));
    try {
      for (const [k, v] of Object.entries(files)) writeFileSync(join(dir, k), v);
      if (want === 'throws') expect(() => readPublishedSessionStore(dir)).toThrow(ZodError);
      else expect(readPublishedSessionStore(dir)?.masterName).toBe(want);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
