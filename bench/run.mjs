#!/usr/bin/env node
// kvmkit benchmarks, side by side with QEMU on the same guest image in the same run.
// Boot: time from start to the probe's `PROBE ready` line and to its poweroff exit, median of N runs.
// Block I/O: bench/blk.mjs (virtio-blk against QEMU's virtio-blk-pci; see its header).
// Usage: npm run bench [-- --runs N] [--quick] [--only boot|blk|fs] [--rounds N]
//   --quick   3 boot runs and the block bench's quick mode; --rounds: block bench rounds
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VirtualMachine } from '../dist/index.js';
import { blockBench } from './blk.mjs';
import { flag, median } from './common.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const probe = join(root, 'test', 'fixtures', 'probe.bin');
const QUICK = process.argv.includes('--quick');
const RUNS = flag('--runs') ? Number(flag('--runs')) : QUICK ? 3 : 10;
const ONLY = flag('--only');
/** Rounds of the block and fs benches (their defaults when absent). */
const ROUNDS = flag('--rounds') ? Number(flag('--rounds')) : undefined;
const QEMU = '/usr/bin/qemu-system-x86_64';
// The probe runs in ring 3: on a paravirtual KVM ring-0 guest code is emulated (~0.7 µs per instruction).
const PROBE_PARAMS = 'probe.cmd=poweroff probe.ring=3';

/** Spawn a command, time `PROBE ready` on its stdout and its exit; sample its peak RSS. */
function timeProcess(cmd, args, { json = false } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let readyMs;
    let hwm = 0;
    const sample = () => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) hwm = Math.max(hwm, Number(m[1]));
      } catch { /* exited */ }
    };
    const timer = setInterval(sample, 5);
    child.stdout.on('data', (d) => {
      out += d;
      if (readyMs === undefined && out.includes('PROBE ready')) {
        readyMs = performance.now() - t0;
        sample();
      }
    });
    child.stderr.on('data', (d) => (err += d));
    const kill = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('exit', (code) => {
      clearInterval(timer);
      clearTimeout(kill);
      const exitMs = performance.now() - t0;
      if (json) {
        try {
          const r = JSON.parse(out.trim().split('\n').pop());
          return resolve({ ...r, processReadyMs: readyMs, processExitMs: exitMs });
        } catch {
          return reject(new Error(`${cmd} failed (${code}): ${err.slice(-500)}`));
        }
      }
      if (readyMs === undefined) return reject(new Error(`${cmd} ${args.join(' ')} never printed PROBE ready (exit ${code}): ${err.slice(-500)} ${out.slice(-500)}`));
      resolve({ readyMs, exitMs, maxRssKiB: hwm, code });
    });
  });
}

async function kvmkitInProcess(cpus) {
  const t0 = performance.now();
  const vm = new VirtualMachine({ kernel: probe, cpus, mem: 256, params: PROBE_PARAMS });
  await vm.start();
  await vm.serial.waitFor('PROBE ready', { timeoutMs: 20000 });
  const readyMs = performance.now() - t0;
  const info = await vm.exited;
  if (info.reason !== 'poweroff') throw new Error(`probe ended with ${info.reason}`);
  return { readyMs, exitMs: performance.now() - t0, startupMs: vm.startupMs };
}

const qemuArgs = (machine, cpus) => [
  '-M', machine, '-enable-kvm', '-cpu', 'host,-arch-capabilities', '-m', '256', '-smp', String(cpus),
  '-kernel', probe, '-append', PROBE_PARAMS, '-nographic', '-serial', 'stdio', '-monitor', 'none',
  '-no-reboot', '-nodefaults',
];

async function series(name, fn) {
  const rows = [];
  for (let i = 0; i < RUNS; i++) rows.push(await fn());
  const pick = (k) => (rows[0][k] === undefined ? undefined : median(rows.map((r) => r[k])));
  return { name, readyMs: pick('readyMs'), exitMs: pick('exitMs'), startupMs: pick('startupMs'), maxRssKiB: pick('maxRssKiB') };
}

if (!existsSync(probe)) throw new Error(`${probe} is missing: run node scripts/fixtures.mjs probe`);
const fmt = (v, d = 1) => (v === undefined ? '—' : v.toFixed(d));
for (const cpus of !ONLY || ONLY === 'boot' ? [1, 2] : []) {
  const results = [];
  results.push(await series(`kvmkit (in-process API)`, () => kvmkitInProcess(cpus)));
  results.push(await series(`kvmkit (new node process)`, async () => {
    const r = await timeProcess(process.execPath, [join(root, 'bench', 'boot-once.mjs'), probe, String(cpus)], { json: true });
    return { readyMs: r.processReadyMs ?? r.readyMs, exitMs: r.processExitMs, startupMs: r.startupMs, maxRssKiB: r.maxRssKiB };
  }));
  if (existsSync(QEMU)) {
    for (const machine of ['microvm', 'pc']) {
      try {
        results.push(await series(`QEMU -M ${machine} -enable-kvm`, () => timeProcess(QEMU, qemuArgs(machine, cpus))));
      } catch (e) {
        results.push({ name: `QEMU -M ${machine} -enable-kvm`, error: e.message.split('\n')[0] });
      }
    }
  }
  const qemuBest = Math.min(...results.filter((r) => r.name.startsWith('QEMU') && r.readyMs).map((r) => r.readyMs));
  const qemuBestExit = Math.min(...results.filter((r) => r.name.startsWith('QEMU') && r.exitMs).map((r) => r.exitMs));
  console.log(`\nBoot of the probe guest, ${cpus} vCPU(s), 256 MiB, median of ${RUNS} runs (ms; ratio = QEMU's best / this, > 1 means faster than QEMU)`);
  console.log('| VMM | start→PROBE ready | ratio | start→poweroff exit | ratio | VMM start-up (→first KVM_RUN) | peak RSS (MiB) |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of results) {
    if (r.error) {
      console.log(`| ${r.name} | failed: ${r.error} | | | | | |`);
      continue;
    }
    console.log(`| ${r.name} | ${fmt(r.readyMs)} | ${fmt(qemuBest / r.readyMs, 2)} | ${fmt(r.exitMs)} | ${fmt(qemuBestExit / r.exitMs, 2)} | ${fmt(r.startupMs)} | ${r.maxRssKiB ? fmt(r.maxRssKiB / 1024) : '—'} |`);
  }
}
if (!ONLY || ONLY === 'blk') {
  const r = await blockBench({ quick: QUICK, rounds: ROUNDS });
  if (r.failures.length) process.exitCode = 1;
}
if (!ONLY || ONLY === 'fs') if ((await (await import('./fs.mjs')).fsBench({ quick: QUICK, rounds: ROUNDS })).failures.length) process.exitCode = 1; // virtio-fs vs QEMU + virtiofsd: bench/fs.mjs
