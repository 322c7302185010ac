import { describe, expect, it } from 'vitest';
import { decideSwap } from './two-phase.ts';

describe('decideSwap', () => {
  it.each([
    {
      desc: 'every worker prepared',
      answers: [
        { slot: 0, ok: true },
        { slot: 1, ok: true },
      ],
      want: { commit: true },
    },
    { desc: 'no worker serving', answers: [], want: { commit: true } },
    {
      desc: 'one worker did not answer',
      answers: [
        { slot: 0, ok: true },
        { slot: 1, ok: false, reason: 'failed', message: 'did not answer prepare within 1000 ms' },
      ],
      want: { commit: false, reason: 'unavailable', why: 'worker 1: did not answer prepare within 1000 ms' },
    },
    {
      desc: 'one worker could not build the table, another exited: the table is invalid',
      answers: [
        { slot: 0, ok: false, reason: 'failed', message: 'exited' },
        { slot: 1, ok: false, reason: 'invalid', message: 'table cannot be applied: no pool' },
      ],
      want: {
        commit: false,
        reason: 'invalid',
        why: 'worker 0: exited; worker 1: table cannot be applied: no pool',
      },
    },
    {
      desc: "a worker disagrees with the primary (stale): not the table's fault",
      answers: [
        { slot: 0, ok: false, reason: 'stale', message: 'revision 3 is older than 4' },
        { slot: 1, ok: true },
      ],
      want: { commit: false, reason: 'unavailable', why: 'worker 0: revision 3 is older than 4' },
    },
  ] as const)('$desc', ({ answers, want }) => {
    expect(decideSwap(answers)).toEqual(want);
  });
});
