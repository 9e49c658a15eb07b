/**
 * One run of the probe guest (test/guest/probe/) on kvmkit, as the e2e tests under test/vm/ use
 * it: start a VirtualMachine, stop it if it has not ended after a time-out, and parse the PROBE
 * lines it printed on the serial port.
 */
import { VirtualMachine, type ExitInfo, type VirtualMachineOptions } from '../../src';
import { parseProbeLines, type ProbeRecord } from '../guest/probe/parse';

/** How a probe run is driven, beside the VM's own options. */
export interface ProbeRunOptions {
  /** Stop the VM (`vm.stop()`, exit reason `stopped`) if it has not ended this many ms after its start. Default 60 000. */
  timeoutMs?: number;
  /** Called with the new VM before it starts: subscribe to its events here. */
  beforeStart?: (vm: VirtualMachine) => void;
  /**
   * Called once the VM is running, before the run waits for its end: type into its console,
   * resize a disk. The time-out is already running. If it throws, the VM is stopped and the run
   * rejects with that error.
   */
  whileRunning?: (vm: VirtualMachine) => Promise<void>;
}

/** What a probe run leaves. */
export interface ProbeRunResult {
  /** The VM, exited. */
  vm: VirtualMachine;
  /** How the guest ended (`stopped` if the time-out ended it). */
  info: ExitInfo;
  /** Every PROBE line of `output`, parsed. */
  records: ProbeRecord[];
  /** Everything the guest printed on its serial port. */
  output: string;
  /** Every `error` event of the VM, in order. */
  errors: Error[];
  /** Milliseconds from just before `vm.start()` to the end of the guest. */
  ms: number;
}

/** Boot the probe with these VM options, wait for it to end (or stop it at the time-out), parse what it printed. */
export async function runProbe(options: VirtualMachineOptions, run: ProbeRunOptions = {}): Promise<ProbeRunResult> {
  const vm = new VirtualMachine(options);
  const errors: Error[] = [];
  vm.on('error', (e) => errors.push(e));
  run.beforeStart?.(vm);
  const t0 = Date.now();
  await vm.start();
  const timer = setTimeout(() => void vm.stop(), run.timeoutMs ?? 60_000);
  try {
    await run.whileRunning?.(vm);
    const info = await vm.exited;
    const output = vm.serial.output;
    return { vm, info, records: parseProbeLines(output), output, errors, ms: Date.now() - t0 };
  } catch (e) {
    if (vm.state !== 'exited') await vm.stop();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

/** The first PROBE record with this key; throws (naming the keys there are) if there is none. */
export function firstRecord(records: ProbeRecord[], key: string): ProbeRecord {
  const r = records.find((x) => x.key === key);
  if (!r) throw new Error(`no PROBE ${key} line in ${JSON.stringify(records.map((x) => x.key))}`);
  return r;
}
