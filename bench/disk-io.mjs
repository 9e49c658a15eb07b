#!/usr/bin/env node
// Disk I/O path micro-benchmark: the numbers behind RawDiskImage's design (not a test).
//
// Compares, on a 256 MiB image under /var/tmp and buffers in mmap'd memory (like guest RAM):
//   async    koffi `.async` pread/pwrite calls, which run on libuv's thread pool (4 threads)
//   ring N   RawDiskImage: N worker threads fed through a SharedArrayBuffer ring (src/disk)
// for 4 KiB random reads at queue depth 1 and 32 and 1 MiB sequential reads and writes at depth 1
// and 8, through the page cache and with O_DIRECT (plus O_DIRECT with unaligned buffers, which go
// through the bounce buffer). `main%` is the main thread's event-loop utilisation during the run:
// the share of the main thread the I/O path costs (what the vCPU mailbox and devices compete for).
//
// Usage: node bench/disk-io.mjs [--quick] [--dir /var/tmp]
import { build } from 'esbuild';
import koffi from 'koffi';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { makeRandomImage } from './image.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const dirArg = process.argv.indexOf('--dir');
const baseDir = dirArg > 0 ? process.argv[dirArg + 1] : '/var/tmp';

// Bundle src/disk so the bench runs without `npm run build` (the bundle lives under node_modules so koffi resolves).
const outDir = join(root, 'node_modules', '.cache', 'kvmkit-bench');
mkdirSync(outDir, { recursive: true });
const outfile = join(outDir, 'disk.mjs');
await build({ entryPoints: [join(root, 'src/disk/index.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile, external: ['koffi'], logLevel: 'error' });
const { RawDiskImage } = await import(outfile);

const MiB = 1 << 20;
const SIZE = 256 * MiB;
const { dir, path } = makeRandomImage(baseDir, 'kvmkit-bench-', 'bench.img', SIZE);

const lib = koffi.load('libc.so.6');
const mmap = lib.func('uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, int64_t off)');
const openC = lib.func('int open(const char *path, int flags)');
const closeC = lib.func('int close(int fd)');
const preadC = lib.func('intptr_t pread(int fd, void *buf, size_t n, int64_t off)');
const pwriteC = lib.func('intptr_t pwrite(int fd, void *buf, size_t n, int64_t off)');
const O_RDWR = 2;
const O_DIRECT = process.arch === 'arm64' ? 0o200000 : 0o40000;
const RAM = 64 * MiB;
const ram = new Uint8Array(koffi.view(mmap(0, RAM, 3, 0x22, -1, 0), RAM)); // "guest RAM": MAP_PRIVATE|MAP_ANONYMOUS
ram.fill(1);

/** Run `n` requests with at most `qd` in flight; `issue(i, slot)` returns a promise. */
async function drive(n, qd, issue) {
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  let next = 0;
  const lanes = Array.from({ length: Math.min(qd, n) }, async (_, slot) => {
    while (next < n) await issue(next++, slot);
  });
  await Promise.all(lanes);
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  return { ms, n, main: elu.utilization };
}

const rnd = (bs) => Math.floor(Math.random() * (SIZE / bs)) * bs;

function workloads(direct) {
  const s = quick ? 0.25 : 1;
  return [
    { name: 'randread 4k qd1', bs: 4096, qd: 1, n: Math.round((direct ? 4000 : 20000) * s), write: false, seq: false },
    { name: 'randread 4k qd32', bs: 4096, qd: 32, n: Math.round((direct ? 20000 : 100000) * s), write: false, seq: false },
    { name: 'seqread 1m qd1', bs: MiB, qd: 1, n: Math.round(256 * s), write: false, seq: true },
    { name: 'seqread 1m qd8', bs: MiB, qd: 8, n: Math.round(512 * s), write: false, seq: true },
    { name: 'seqwrite 1m qd1', bs: MiB, qd: 1, n: Math.round(256 * s), write: true, seq: true },
    { name: 'seqwrite 1m qd8', bs: MiB, qd: 8, n: Math.round(512 * s), write: true, seq: true },
  ];
}

/** The buffer of lane `slot`: 1 MiB apart, `skew` bytes off alignment. */
const bufferOf = (slot, bs, skew) => ram.subarray(slot * MiB + skew, slot * MiB + skew + bs);

async function runAsync(w, direct) {
  const fd = openC(path, O_RDWR | (direct ? O_DIRECT : 0));
  if (fd < 0) throw new Error(`open failed: errno ${koffi.errno()}`);
  const fn = w.write ? pwriteC : preadC;
  try {
    return await drive(w.n, w.qd, (i, slot) => new Promise((resolve, reject) => {
      const off = w.seq ? (i * w.bs) % SIZE : rnd(w.bs);
      fn.async(fd, bufferOf(slot, w.bs, 0), w.bs, off, (err, r) => (err || r !== w.bs ? reject(err ?? new Error(`short ${r}`)) : resolve()));
    }));
  } finally {
    closeC(fd);
  }
}

async function runRing(w, direct, threads, skew = 0) {
  const img = RawDiskImage.open(path, { directIo: direct, ioThreads: threads });
  try {
    await img.read(0, [bufferOf(0, 4096, 0)]); // let the threads start
    const r = await drive(w.n, w.qd, async (i, slot) => {
      const off = w.seq ? (i * w.bs) % SIZE : rnd(w.bs);
      const buf = bufferOf(slot, w.bs, skew);
      const n = w.write ? await img.write(off, [buf]) : await img.read(off, [buf]);
      if (n !== w.bs) throw new Error(`short ${n}`);
    });
    return { ...r, bounced: img.bouncedRequests };
  } finally {
    await img.close();
  }
}

const fmt = (w, r) => {
  const rate = w.bs === 4096 ? `${Math.round((r.n / r.ms) * 1000).toLocaleString('en').padStart(8)} IOPS` : `${Math.round((r.n * w.bs) / r.ms / 1000).toLocaleString('en').padStart(8)} MB/s`;
  return `${rate} main ${String(Math.round(r.main * 100)).padStart(3)}%`;
};

console.log(`disk I/O paths, ${SIZE / MiB} MiB image in ${dir}, ${quick ? 'quick' : 'full'} run, node ${process.version}, ${(await import('node:os')).cpus().length} CPUs`);
for (const direct of [false, true]) {
  console.log(`\n${direct ? 'O_DIRECT' : 'page cache'}`);
  console.log(`${'workload'.padEnd(18)} | ${'koffi .async (libuv pool)'.padEnd(28)} | ${'ring, 1 thread'.padEnd(28)} | ${'ring, 2 threads'.padEnd(28)} | ${'ring, 4 threads'.padEnd(28)}`);
  for (const w of workloads(direct)) {
    const cols = [await runAsync(w, direct), await runRing(w, direct, 1), await runRing(w, direct, 2), await runRing(w, direct, 4)];
    console.log(`${w.name.padEnd(18)} | ${cols.map((r) => fmt(w, r).padEnd(28)).join(' | ')}`);
  }
}
console.log('\nO_DIRECT with buffers 1 byte off alignment (bounce buffer), ring with 4 threads vs aligned');
for (const w of workloads(true).filter((x) => !x.name.endsWith('qd1') || x.bs === 4096)) {
  const aligned = await runRing(w, true, 4, 0);
  const skewed = await runRing(w, true, 4, 1);
  console.log(`${w.name.padEnd(18)} | aligned ${fmt(w, aligned).padEnd(28)} | unaligned ${fmt(w, skewed).padEnd(28)} | bounced ${skewed.bounced}/${w.n + 1}`);
}
rmSync(dir, { recursive: true, force: true });
