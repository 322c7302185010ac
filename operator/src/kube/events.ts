/**
 * Kubernetes Events (core/v1) for a pool's notable transitions, as
 * `kubectl describe sbp` shows them. Best effort: a failed Event is logged,
 * never a reason to fail a reconcile.
 */
import { randomBytes } from 'node:crypto';
import { type KubeClient, resourcePath } from './client.ts';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid?: string | undefined;
}

export class EventRecorder {
  private readonly client: KubeClient;
  private readonly instance: string;
  private readonly log: (msg: string, fields: Record<string, unknown>) => void;

  constructor(
    client: KubeClient,
    instance: string,
    log: (msg: string, fields: Record<string, unknown>) => void,
  ) {
    this.client = client;
    this.instance = instance;
    this.log = log;
  }

  /** Records one Event; resolves when written or when writing failed (logged). */
  async record(
    target: EventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const now = new Date().toISOString();
    try {
      await this.client.request('POST', resourcePath('v1', 'events', target.namespace), {
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: {
            name: `${target.name}.${Date.now().toString(16)}${randomBytes(3).toString('hex')}`,
            namespace: target.namespace,
          },
          involvedObject: target,
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: 'tether-operator' },
          reportingComponent: 'tether.dev/operator',
          reportingInstance: this.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
        timeoutMs: 5_000,
      });
    } catch (err) {
      this.log('event not recorded', { reason, error: String(err) });
    }
  }
}
