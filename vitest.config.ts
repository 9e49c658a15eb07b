import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // VMs own worker threads and signals: run test files in forked processes, one at a time per core.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 600_000,
    reporters: ['default', './test/support/summaryReporter.ts'],
  },
});
