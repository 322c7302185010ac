/**
 * Runs async jobs one at a time, in order of arrival. `--workers`: every
 * change to what the workers serve (a table offered to all, a new worker
 * booted with the current table) goes through one queue, so a worker never
 * boots with a table that a concurrent offer is replacing.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /**
   * Runs `job` after every job queued before it has settled.
   * @returns what `job` returns; its rejection is the caller's, and does not stop the queue.
   */
  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job, job);
    this.tail = result.catch(() => {});
    return result;
  }
}
