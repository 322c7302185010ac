import { describe, expect, it } from 'vitest';
import { decideAgreement, type WorkerReport } from './agreement.ts';

const serving = (slot: number, revision: number | undefined): WorkerReport => ({
  slot,
  state: 'serving',
  revision,
  answered: true,
});

describe('decideAgreement', () => {
  it.each([
    {
      desc: 'every worker serves the committed revision',
      committed: 7,
      reports: [serving(0, 7), serving(1, 7)],
      want: { ready: true, revision: 7, workers: 2 },
    },
    {
      desc: 'no table yet',
      committed: undefined,
      reports: [serving(0, undefined), serving(1, undefined)],
      want: { ready: false, reason: 'no routing table yet' },
    },
    {
      desc: 'a worker behind',
      committed: 7,
      reports: [serving(0, 7), serving(1, 6)],
      want: { ready: false, reason: 'worker 1 serves revision 6, not 7' },
    },
    {
      desc: 'a worker ahead (never acknowledged)',
      committed: 7,
      reports: [serving(0, 8), serving(1, 7)],
      want: { ready: false, reason: 'worker 0 serves revision 8, not 7' },
    },
    {
      desc: 'a worker without a table',
      committed: 7,
      reports: [serving(0, 7), serving(1, undefined)],
      want: { ready: false, reason: 'worker 1 serves revision none, not 7' },
    },
    {
      desc: 'a slot missing from the reports',
      committed: 7,
      reports: [serving(0, 7)],
      want: { ready: false, reason: 'worker 1 is down' },
    },
    {
      desc: 'a worker re-forking, another not answering',
      committed: 7,
      reports: [
        { slot: 0, state: 'starting' as const, revision: undefined, answered: false },
        { slot: 1, state: 'serving' as const, revision: undefined, answered: false },
      ],
      want: { ready: false, reason: 'worker 0 is starting; worker 1 does not answer' },
    },
    {
      desc: 'a worker down',
      committed: 3,
      reports: [serving(0, 3), { slot: 1, state: 'down' as const, revision: undefined, answered: false }],
      want: { ready: false, reason: 'worker 1 is down' },
    },
    {
      desc: 'reports of slots beyond N are ignored',
      committed: 3,
      reports: [serving(0, 3), serving(5, 2)],
      want: { ready: true, revision: 3, workers: 1 },
      slots: 1,
    },
  ])('$desc', ({ committed, reports, want, slots }) => {
    expect(decideAgreement(slots ?? 2, committed, reports)).toEqual(want);
  });
});
