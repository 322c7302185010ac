import { describe, expect, it } from 'vitest';
import { stickyBackendPoolSchema } from './api/index.ts';
import { unsupported } from './reconcile.ts';

const pool = (spec: Record<string, unknown>) =>
  stickyBackendPoolSchema.parse({
    apiVersion: 'tether.dev/v1alpha1',
    kind: 'StickyBackendPool',
    metadata: { name: 'shop', namespace: 'web' },
    spec: { backend: { service: { name: 'shop', port: 'http' } }, ...spec },
  });

describe('unsupported (InvalidSpec lines)', () => {
  it.each([
    { desc: 'Cookie', spec: {}, want: [] },
    {
      desc: 'Learn without the store: refused, naming the field',
      spec: { affinity: { type: 'Learn' } },
      want: [expect.stringMatching(/^spec\.affinity\.type: Learn needs sessionStore\.enabled/)],
    },
    {
      desc: 'persisted pins without the store: refused, naming the field',
      spec: { affinity: { type: 'Header' }, sessionStore: { persistPins: true } },
      want: [expect.stringMatching(/^spec\.sessionStore\.persistPins: true needs sessionStore\.enabled/)],
    },
    {
      desc: 'persisted pins with the store: valid',
      spec: { affinity: { type: 'ClientIP' }, sessionStore: { enabled: true, persistPins: true } },
      want: [],
    },
    {
      desc: 'Learn with the store: valid',
      spec: { affinity: { type: 'Learn' }, sessionStore: { enabled: true } },
      want: [],
    },
  ])('$desc', ({ spec, want }) => {
    expect(unsupported(pool(spec))).toEqual(want);
  });
});
