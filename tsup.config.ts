import { defineConfig } from 'tsup';

export default defineConfig({
  // index: the library; cli: the `kvmkit` bin; vcpu-worker: loaded by the VM as a worker_thread.
  entry: { index: 'src/index.ts', cli: 'src/cli/main.ts', 'vcpu-worker': 'src/vm/vcpuWorker.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: "src/index.ts" } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  shims: true,
});
