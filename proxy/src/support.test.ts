import { describe, expect, it } from 'vitest';
import { testTable } from '../../test/helpers/pools.ts';
import { proxySupportProblems, sessionStoreProblems } from './support.ts';

const eps = [{ name: 'a', port: 1 }];

describe('sessionStoreProblems', () => {
  it.each([
    { desc: 'Cookie', spec: {}, want: [] },
    { desc: 'Header', spec: { affinity: { type: 'Header' } }, want: [] },
    { desc: 'Learn', spec: { affinity: { type: 'Learn' } }, want: [/Learn needs the session store/] },
    {
      desc: 'persisted Header pins',
      spec: { affinity: { type: 'Header' }, sessionStore: { persistPins: true } },
      want: [/persistPins needs the session store/],
    },
    // Cookie pins live in the cookie: persisting them would change nothing.
    { desc: 'persistPins under Cookie', spec: { sessionStore: { persistPins: true } }, want: [] },
  ])('without --session-store: $desc', ({ spec, want }) => {
    const problems = sessionStoreProblems(testTable(1, eps, spec), false);
    expect(problems).toHaveLength(want.length);
    want.forEach((w, i) => {
      expect(problems[i]).toMatch(w);
    });
    expect(sessionStoreProblems(testTable(1, eps, spec), true)).toEqual([]);
  });

  it('this proxy version serves Learn (the operator asks this of a spec)', () => {
    expect(proxySupportProblems(testTable(1, eps, { affinity: { type: 'Learn' } }))).toEqual([]);
  });
});
