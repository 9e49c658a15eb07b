#!/usr/bin/env node
// Boot the Linux fixture on kvmkit and, every minute, pause the VM and log where each vCPU is
// (RIP, RSP, CR3): the tool used to see how far Linux gets on a slow (PVM) host.
// Usage: node scripts/linux-boot-sample.mjs [LOG] [--cpus N] [--minutes M]   (after npm run build)
import { appendFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PVM_TUNING_PARAMS, VirtualMachine } from '../dist/index.js';
import { runArg } from './linux-fixture.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, dflt) => (process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : dflt);
const log = process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : join(root, '.cache', 'linux-boot-sample.log');
const minutes = arg('--minutes', 60);
writeFileSync(log, '');
const out = (s) => appendFileSync(log, `${new Date().toISOString().slice(11, 19)} ${s}\n`);
const vm = new VirtualMachine({
  kernel: join(root, 'test/fixtures/linux/vmlinuz'), initrd: join(root, 'test/fixtures/linux/initramfs.cpio.gz'),
  cpus: arg('--cpus', 2), mem: 512, params: ['nokaslr', runArg('echo NPROC=$(nproc); grep MemTotal /proc/meminfo')],
});
let buf = '';
vm.on('serial', (c) => {
  buf += c.toString();
  for (let k; (k = buf.indexOf('\n')) >= 0; buf = buf.slice(k + 1)) out(buf.slice(0, k).trimEnd());
});
vm.on('recovered', (r) => out(`RECOVERED ${r.what} at ${r.rip} vcpu ${r.vcpu}`));
out(`start (PVM additions when on a PVM host: ${PVM_TUNING_PARAMS.join(' ')})`);
const t0 = Date.now();
await vm.start();
const sampler = setInterval(async () => {
  try {
    await vm.pause();
    const regs = vm.registers();
    vm.resume();
    out(`SAMPLE t=${((Date.now() - t0) / 1000).toFixed(0)}s ${regs.map((r, i) => `vcpu${i} rip=${r.rip} rsp=${r.rsp} cr3=${r.cr3}`).join(' | ')}`);
  } catch (e) {
    out(`sample failed: ${e.message}`);
  }
}, 60_000);
const limit = setTimeout(() => void vm.stop(), minutes * 60_000);
const info = await vm.exited;
clearInterval(sampler);
clearTimeout(limit);
out(`EXIT ${JSON.stringify(info)} after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(`log: ${log}`);
