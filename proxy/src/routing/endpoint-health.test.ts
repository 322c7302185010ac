import { describe, expect, it } from 'vitest';
import { EndpointHealth } from './endpoint-health.ts';

describe('EndpointHealth: passive (nginx max_fails / fail_timeout)', () => {
  it('maxFails 2 within 10 s takes it down for 10 s', () => {
    const h = new EndpointHealth();
    expect(h.recordFailure(0, 2, 10_000)).toBe(false);
    expect(h.isHealthy(1)).toBe(true);
    expect(h.recordFailure(4_000, 2, 10_000)).toBe(true);
    expect(h.isHealthy(4_001)).toBe(false);
    expect(h.isHealthy(13_999)).toBe(false);
    expect(h.isHealthy(14_000)).toBe(true);
  });

  it('failures further apart than failTimeout do not add up', () => {
    const h = new EndpointHealth();
    h.recordFailure(0, 2, 10_000);
    expect(h.recordFailure(11_000, 2, 10_000)).toBe(false);
    expect(h.isHealthy(11_001)).toBe(true);
  });

  it('maxFails 0 turns passive health off', () => {
    const h = new EndpointHealth();
    for (let i = 0; i < 10; i++) h.recordFailure(i, 0, 10_000);
    expect(h.isHealthy(10)).toBe(true);
  });
});

describe('EndpointHealth: active (HAProxy rise / fall)', () => {
  it('starts up; goes down after unhealthyThreshold failures; up after healthyThreshold passes', () => {
    const h = new EndpointHealth();
    expect(h.isHealthy(0)).toBe(true);
    expect(h.recordCheck(false, 2, 3)).toBe(false);
    expect(h.recordCheck(false, 2, 3)).toBe(false);
    expect(h.recordCheck(false, 2, 3)).toBe(true);
    expect(h.isHealthy(0)).toBe(false);
    expect(h.recordCheck(true, 2, 3)).toBe(false);
    expect(h.recordCheck(false, 2, 3)).toBe(false);
    expect(h.recordCheck(true, 2, 3)).toBe(false);
    expect(h.recordCheck(true, 2, 3)).toBe(true);
    expect(h.isHealthy(0)).toBe(true);
  });

  it('a recovery by active check clears a passive mark-down', () => {
    const h = new EndpointHealth();
    h.recordCheck(false, 1, 1);
    h.recordFailure(0, 1, 60_000);
    h.recordCheck(true, 1, 1);
    expect(h.isHealthy(1)).toBe(true);
  });
});
