/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's
 * semantics (k8s.io/client-go/tools/leaderelection):
 *
 * - a candidate takes the Lease when it is free or its holder has not renewed
 *   for `leaseDuration` *as observed locally* (the time this process last saw
 *   the record change, not the holder's clock: clocks may be skewed);
 * - the leader renews every `retryPeriod`; when no renew succeeded for
 *   `renewDeadline`, it stops leading at once (the caller stops reconciling);
 * - updates use the Lease's resourceVersion, so two candidates cannot both win;
 * - on a clean stop the leader releases the Lease (holder cleared), so a
 *   successor need not wait out the lease.
 *
 * The I/O is a {@link LeaseStore}; the clock is injected (fake in tests).
 */
import type { Clock } from './clock.ts';

/** The Lease fields leader election reads and writes. */
export interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** RFC 3339 with microseconds (MicroTime). */
  acquireTime: string;
  renewTime: string;
  leaseTransitions: number;
}

/** A Lease as read: its record and resourceVersion (optimistic concurrency). */
export interface StoredLease {
  record: LeaseRecord;
  resourceVersion: string;
}

/** Where the Lease lives (the apiserver, or memory in tests). */
export interface LeaseStore {
  /** @returns undefined when the Lease does not exist. */
  get(): Promise<StoredLease | undefined>;
  /** @throws when it already exists (409). */
  create(r: LeaseRecord): Promise<StoredLease>;
  /** @throws on a resourceVersion conflict (409). */
  update(r: LeaseRecord, resourceVersion: string): Promise<StoredLease>;
}

export interface LeaderElectionOptions {
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export const DEFAULT_LEADER_ELECTION = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/** The last record seen and when (local clock, ms) it was first seen. */
export interface Observed {
  record: LeaseRecord;
  at: number;
}

/** What to do with the Lease now. */
export type LeasePlan =
  | { kind: 'create'; record: LeaseRecord }
  | { kind: 'update'; record: LeaseRecord }
  | { kind: 'held'; holder: string };

/**
 * Pure core of client-go's tryAcquireOrRenew.
 *
 * Worked example (lease 15 s): B saw A's record change at t=100 s; at
 * t=110 s A still holds it (100 + 15 > 110) → held; at t=116 s without a
 * change B takes it with leaseTransitions + 1.
 *
 * @param current - the Lease as just read (undefined: none).
 * @param observed - what this candidate saw before (to time the holder's silence).
 * @param now - local clock, ms; `wall` - RFC 3339 time for the record.
 */
export function planLease(
  current: LeaseRecord | undefined,
  observed: Observed | undefined,
  o: Pick<LeaderElectionOptions, 'identity' | 'leaseDurationMs'>,
  now: number,
  wall: string,
): LeasePlan {
  const mine = (acquireTime: string, transitions: number): LeaseRecord => ({
    holderIdentity: o.identity,
    leaseDurationSeconds: Math.ceil(o.leaseDurationMs / 1000),
    acquireTime,
    renewTime: wall,
    leaseTransitions: transitions,
  });
  if (current === undefined) return { kind: 'create', record: mine(wall, 0) };
  if (current.holderIdentity === o.identity) {
    return { kind: 'update', record: mine(current.acquireTime, current.leaseTransitions) };
  }
  const seenAt = observed !== undefined && sameRecord(observed.record, current) ? observed.at : now;
  const durationMs = (current.leaseDurationSeconds || Math.ceil(o.leaseDurationMs / 1000)) * 1000;
  if (current.holderIdentity !== '' && seenAt + durationMs > now) {
    return { kind: 'held', holder: current.holderIdentity };
  }
  return { kind: 'update', record: mine(wall, current.leaseTransitions + 1) };
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return a.holderIdentity === b.holderIdentity && a.renewTime === b.renewTime;
}

/** RFC 3339 with microseconds, as the Lease's MicroTime fields want. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  /** Called once, the moment a renew deadline passes (or on stop while leading). */
  onStoppedLeading(): void;
  /** The holder changed (a log line, a metric). */
  onNewLeader?(holder: string): void;
}

/**
 * Runs the election until {@link LeaderElector.stop}. A leader that loses
 * the Lease does not compete again (client-go's behaviour: the process is
 * expected to exit and restart clean).
 */
export class LeaderElector {
  private observed: Observed | undefined;
  private stopped = false;
  private leading = false;
  private lastHolder: string | undefined;
  private wake: (() => void) | undefined;
  private cancelSleep: (() => void) | undefined;

  private readonly store: LeaseStore;
  private readonly o: LeaderElectionOptions;
  private readonly cb: LeaderCallbacks;
  private readonly clock: Clock;
  private readonly wallClock: () => Date;

  constructor(
    store: LeaseStore,
    o: LeaderElectionOptions,
    cb: LeaderCallbacks,
    clock: Clock,
    wallClock: () => Date = () => new Date(),
  ) {
    this.store = store;
    this.o = o;
    this.cb = cb;
    this.clock = clock;
    this.wallClock = wallClock;
    if (!(o.leaseDurationMs > o.renewDeadlineMs && o.renewDeadlineMs > o.retryPeriodMs * 1.2)) {
      throw new RangeError('leader election: need leaseDuration > renewDeadline > 1.2 × retryPeriod');
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** Acquires, then renews until the renew deadline passes or stop() is called. */
  async run(): Promise<void> {
    while (!this.stopped && !(await this.tryAcquireOrRenew())) {
      // client-go jitters the retry by up to 1.2× so candidates do not collide.
      await this.sleep(this.o.retryPeriodMs * (1 + Math.random() * 0.2));
    }
    if (this.stopped) return;
    this.leading = true;
    this.cb.onStartedLeading();
    let lastRenew = this.clock.now();
    while (!this.stopped) {
      await this.sleep(this.o.retryPeriodMs);
      if (this.stopped) break;
      const remaining = lastRenew + this.o.renewDeadlineMs - this.clock.now();
      const ok = remaining > 0 && (await this.withTimeout(this.tryAcquireOrRenew(), remaining));
      if (ok) {
        lastRenew = this.clock.now();
        continue;
      }
      if (this.clock.now() - lastRenew >= this.o.renewDeadlineMs) {
        this.leading = false;
        this.cb.onStoppedLeading();
        return;
      }
    }
  }

  /** Stops; a leader releases the Lease (holder cleared, 1 s duration) so a successor starts at once. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.cancelSleep?.();
    this.wake?.();
    if (!this.leading) return;
    this.leading = false;
    this.cb.onStoppedLeading();
    try {
      const cur = await this.store.get();
      if (cur !== undefined && cur.record.holderIdentity === this.o.identity) {
        await this.store.update(
          {
            ...cur.record,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: microTime(this.wallClock()),
          },
          cur.resourceVersion,
        );
      }
    } catch {
      // Best effort: the Lease then expires on its own.
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    try {
      const cur = await this.store.get();
      const now = this.clock.now();
      if (
        cur !== undefined &&
        (this.observed === undefined || !sameRecord(this.observed.record, cur.record))
      ) {
        this.observed = { record: cur.record, at: now };
      }
      const plan = planLease(cur?.record, this.observed, this.o, now, microTime(this.wallClock()));
      if (plan.kind === 'held') {
        this.noteHolder(plan.holder);
        return false;
      }
      const saved =
        plan.kind === 'create'
          ? await this.store.create(plan.record)
          : await this.store.update(plan.record, (cur as StoredLease).resourceVersion);
      this.observed = { record: saved.record, at: this.clock.now() };
      this.noteHolder(this.o.identity);
      return true;
    } catch {
      // A conflict (someone else wrote first) or an API error: try again next period.
      return false;
    }
  }

  private noteHolder(holder: string): void {
    if (holder !== this.lastHolder) {
      this.lastHolder = holder;
      this.cb.onNewLeader?.(holder);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.cancelSleep = this.clock.after(ms, resolve);
    });
  }

  private withTimeout(p: Promise<boolean>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const cancel = this.clock.after(ms, () => resolve(false));
      p.then((v) => {
        cancel();
        resolve(v);
      });
    });
  }
}
