import { defineConfig } from 'tsup';

export default defineConfig({
  // index: the library; cli: the `kvmkit` bin; vcpu-worker and fs-worker: loaded as worker_threads
  // (one per vCPU, one per virtio-fs device).
  entry: { index: 'src/index.ts', cli: 'src/cli/main.ts', 'vcpu-worker': 'src/vm/vcpuWorker.ts', 'fs-worker': 'src/devices/virtio/fs/fsWorkerMain.ts' },
  format: ['esm', 'cjs'],
  dts: { entry: { index: "src/index.ts" } },
  sourcemap: true,
  clean: true,
  target: 'node20',
  shims: true,
});
