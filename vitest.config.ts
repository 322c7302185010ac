import { defineConfig } from 'vitest/config';

// Three tiers, as the architecture's "Test environment" describes: unit tests
// sit next to pure modules; integration starts real servers on loopback;
// e2e runs against a real etcd + kube-apiserver built from Go modules.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: [
            'proxy/src/**/*.test.ts',
            'operator/src/**/*.test.ts',
            'test/control-plane/**/*.test.ts',
            'test/cluster/**/*.test.ts',
            'tools/**/*.test.ts',
            'test/chart/**/*.test.ts',
            'bench/**/*.test.ts',
          ],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
          hookTimeout: 30_000,
          // Integration tests spawn proxy processes; on 2 cores parallel files starve each other.
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.e2e.test.ts'],
          environment: 'node',
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'image',
          include: ['test/image/**/*.test.ts'],
          environment: 'node',
          testTimeout: 120_000,
          hookTimeout: 1_200_000,
        },
      },
    ],
  },
});
