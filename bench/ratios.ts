/**
 * The ratios `make bench` prints and saves, and the goals of issue 12 they
 * are held to. Pure: computed from the figures of one run, so every ratio
 * compares targets measured on the same machine minutes apart.
 *
 * Goals (issue 12): Tether ≥ 0.5 × HAProxy requests/s per core (also the
 * floor BENCH_ENFORCE_FLOOR=1 enforces), ≥ 2.5 × each Node peer; at a fixed
 * 50 % of HAProxy's saturated rate, Tether's p99 ≤ 2 × HAProxy's; workers
 * scale ≥ 0.8 × N; RSS with 10,000 idle connections < 150 MB.
 */
import {
  type MemoryRun,
  type PacedRun,
  PEERS,
  type Ratio,
  type ThroughputRun,
  type WorkersResult,
} from './results.ts';

/** Tether/HAProxy requests/s below which BENCH_ENFORCE_FLOOR=1 fails the run. */
export const FLOOR = 0.5;
/** Tether/each Node peer requests/s, at least. */
export const PEER_GOAL = 2.5;
/** Tether p99 / HAProxy p99 at the same fixed rate, at most. */
export const PACED_P99_GOAL = 2;
/** Workers: requests/s with N workers over one worker, at least this × N. */
export const WORKERS_EFFICIENCY_GOAL = 0.8;
/** Tether's RSS with the idle connections, MB (10^6 bytes), below this. */
export const MEMORY_GOAL_MB = 150;

/** a / b, or null when either is missing or b is 0. */
export function divide(a: number | undefined, b: number | undefined): number | null {
  return a === undefined || b === undefined || b === 0 ? null : a / b;
}

function withGoal(name: string, value: number | null, op: '>=' | '<=' | '<', goal: number): Ratio {
  const met = value !== null && (op === '>=' ? value >= goal : op === '<=' ? value <= goal : value < goal);
  return { name, value, goal: { op, value: goal }, met };
}

/** What the ratios are computed from: the figures of one run (any may be empty). */
export interface Figures {
  readonly runs: readonly ThroughputRun[];
  readonly paced: readonly PacedRun[];
  readonly memory: readonly MemoryRun[];
  readonly workers: WorkersResult;
}

/**
 * Every ratio of one run, in print order: throughput (Tether/HAProxy with
 * the floor, Tether/each peer, Tether/bare forwarder, and the context ones),
 * paced p99, memory, workers. A ratio whose figures were not measured (a
 * step left out, a target that failed) has value null; invalid runs (too many
 * errors) count as not measured.
 */
export function computeRatios(f: Figures): Ratio[] {
  const run = (id: string) => f.runs.find((x) => x.id === id);
  const rps = (id: string): number | undefined => {
    const r = run(id);
    return r?.valid === true ? r.requestsPerS : undefined;
  };
  /** a/b of two throughput runs; marked disturbed when either run was. */
  const ratioOf = (name: string, a: string, b: string, goal?: number): Ratio => {
    const value = divide(rps(a), rps(b));
    const r: Ratio = goal === undefined ? { name, value } : withGoal(name, value, '>=', goal);
    if (value !== null && (run(a)?.disturbed === true || run(b)?.disturbed === true)) r.disturbed = true;
    return r;
  };
  const out: Ratio[] = [];
  for (const mode of ['new', 'pinned'] as const) {
    const r = ratioOf(
      `tether/haproxy, ${mode === 'new' ? 'new pin' : 'pinned'}`,
      `tether-${mode}`,
      `haproxy-${mode}`,
      FLOOR,
    );
    out.push({ ...r, floor: FLOOR, floorMet: r.value !== null && r.value >= FLOOR });
  }
  for (const peer of PEERS)
    for (const mode of ['new', 'pinned'] as const)
      out.push(
        ratioOf(
          `tether/${peer.id}, ${mode === 'new' ? 'new pin' : 'pinned'}`,
          `tether-${mode}`,
          `${peer.id}-${mode}`,
          PEER_GOAL,
        ),
      );
  out.push(
    ratioOf('tether/bare forwarder, new pin', 'tether-new', 'bare-forwarder'),
    ratioOf('tether/bare forwarder, pinned', 'tether-pinned', 'bare-forwarder'),
    ratioOf('bare forwarder/haproxy', 'bare-forwarder', 'haproxy-new'),
    ratioOf('tether/direct, new pin', 'tether-new', 'direct'),
    ratioOf('haproxy/direct, new pin', 'haproxy-new', 'direct'),
  );

  // HAProxy falling behind means the load generator (or the machine) could not hold the rate: no
  // figure. A proxy falling behind fails the goal whatever its p99: vegeta measures from when it
  // actually sent, so a p99 behind is too kind (coordinated omission).
  const haproxyPaced = f.paced.find((p) => p.id === 'haproxy');
  const p99 = (id: string) =>
    haproxyPaced?.behind === true ? undefined : f.paced.find((p) => p.id === id)?.latencyUs.p99;
  if (f.paced.length > 0) {
    const tether = withGoal(
      'paced p99 tether/haproxy',
      divide(p99('tether'), p99('haproxy')),
      '<=',
      PACED_P99_GOAL,
    );
    if (f.paced.find((p) => p.id === 'tether')?.behind === true) tether.met = false;
    const disturbed = (id: string) =>
      p99(id) !== undefined &&
      (haproxyPaced?.disturbed === true || f.paced.find((p) => p.id === id)?.disturbed === true)
        ? { disturbed: true }
        : {};
    out.push({ ...tether, ...disturbed('tether') });
    for (const peer of PEERS)
      if (f.paced.some((p) => p.id === peer.id))
        out.push({
          name: `paced p99 ${peer.id}/haproxy`,
          value: divide(p99(peer.id), p99('haproxy')),
          ...disturbed(peer.id),
        });
  }

  const tetherMem = f.memory.find((m) => m.id === 'tether');
  if (f.memory.length > 0) {
    // With fewer connections open than asked for, the figure is a lower bound: it can show the
    // goal missed (already at or above it), never met.
    const full =
      tetherMem !== undefined && tetherMem.connections.openAtSample >= tetherMem.connections.wanted;
    const mb = tetherMem === undefined ? undefined : tetherMem.rssBytes / 1e6;
    out.push(
      withGoal(
        `tether RSS MB, ${tetherMem?.connections.wanted ?? '?'} idle connections`,
        mb !== undefined && (full || mb >= MEMORY_GOAL_MB) ? mb : null,
        '<',
        MEMORY_GOAL_MB,
      ),
    );
    // Per connection: HAProxy may hold fewer (it reserves two descriptors per connection under the same limit).
    const haproxyMem = f.memory.find((m) => m.id === 'haproxy');
    if (haproxyMem !== undefined)
      out.push({
        name: 'tether/haproxy memory per idle connection',
        value: divide(tetherMem?.perConnectionBytes ?? undefined, haproxyMem.perConnectionBytes ?? undefined),
      });
  }

  if (f.workers.status === 'measured') {
    const n = f.workers.maxWorkers;
    out.push(
      withGoal(
        `workers ${n}/1 requests/s`,
        f.workers.scaling,
        '>=',
        Math.round(WORKERS_EFFICIENCY_GOAL * n * 100) / 100,
      ),
    );
  }
  return out;
}

/**
 * A ratio, its goal and verdict as one line's text: `0.42  goal >= 0.5: NOT met`;
 * `0.42 (disturbed)` when other processes disturbed one of its runs.
 */
export function describeRatio(r: Ratio): string {
  const v = (r.value === null ? '-' : r.value.toFixed(2)) + (r.disturbed === true ? ' (disturbed)' : '');
  if (r.goal === undefined) return v;
  return `${v}  goal ${r.goal.op} ${r.goal.value}: ${r.met === true ? 'met' : 'NOT met'}`;
}

/** The ratios BENCH_ENFORCE_FLOOR=1 fails on: Tether/HAProxy below the floor, or not measured at all. */
export function belowFloor(ratios: readonly Ratio[]): Ratio[] {
  return ratios.filter((r) => r.floor !== undefined && r.floorMet !== true);
}
