// One kvmkit boot of the probe in this process, for bench/run.mjs: prints one JSON line with
// timings measured from before `new VirtualMachine()` and this process's peak RSS.
import { VirtualMachine } from '../dist/index.js';

const [kernel, cpus] = [process.argv[2], Number(process.argv[3] ?? 1)];
const t0 = performance.now();
const vm = new VirtualMachine({ kernel, cpus, mem: 256, params: 'probe.cmd=poweroff probe.ring=3' });
await vm.start();
const tStarted = performance.now();
await vm.serial.waitFor('PROBE ready', { timeoutMs: 20000 });
const tReady = performance.now();
const info = await vm.exited;
const tExit = performance.now();
if (info.reason !== 'poweroff') throw new Error(`probe ended with ${info.reason}`);
process.stdout.write(JSON.stringify({
  startupMs: vm.startupMs, startedMs: tStarted - t0, readyMs: tReady - t0, exitMs: tExit - t0,
  maxRssKiB: process.resourceUsage().maxRSS,
}) + '\n');
