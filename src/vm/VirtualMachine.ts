/**
 * `VirtualMachine`: composes guest memory, an architecture layout, the legacy devices and one
 * worker thread per vCPU into a machine with a lifecycle and typed events.
 * @module
 */
import { readFile, access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import EventEmitter from 'eventemitter3';
import type TypedEmitter from 'typed-emitter';
import { buildCpuid, configureLapic, pvmClearCpuidParam } from '../arch/x86_64';
import { layoutFor } from '../arch';
import type { X86VcpuInit } from '../arch/x86_64/types';
import { BootImageError, ConfigError, KvmkitError, VmStateError } from '../errors';
import { Bus } from '../devices/Bus';
import type { BusDevice, IrqLine } from '../devices/BusDevice';
import { AcpiPm, PM1A_CNT_LEN, PM1A_CNT_PORT, PM1A_EVT_LEN, PM1A_EVT_PORT } from '../devices/AcpiPm';
import { Cmos, CMOS_PORT, CMOS_PORT_LEN } from '../devices/Cmos';
import { I8042, I8042_PORT, I8042_PORT_LEN } from '../devices/I8042';
import { Serial8250, SERIAL_PORT_LEN } from '../devices/Serial8250';
import { PciConfigIo, PCI_CONFIG_IO_LEN, PCI_CONFIG_IO_PORT } from '../devices/pci/PciConfigIo';
import { KvmHypervisor, type KvmVm } from '../hypervisor/kvm/KvmHypervisor';
import type { Vcpu } from '../hypervisor/Hypervisor';
import { GuestMemory } from '../memory/GuestMemory';
import { registerDump } from '../hypervisor/kvm/structs';
import { PciDevices, planPci, type PciDeviceStats } from './PciDevices';
import { ACCESS, type CrashReport, PORT, type VcpuWorkerMessage } from './mailbox';
import { hostArch, resolveOptions, type ResolvedOptions, type VirtualMachineOptions } from './options';
import { SerialConsole } from './SerialConsole';
import { VcpuThread } from './VcpuThread';
import { VirtioConsole } from '../devices/virtio/console/VirtioConsole';
import { VirtioBalloon, type BalloonStats } from '../devices/virtio/balloon/VirtioBalloon';
import { VirtioBlock } from '../devices/virtio/block/VirtioBlock';
import { ControlServer } from '../control/ControlServer';
import { resolveSocketPath } from '../control/socketPath';
import { deviceStatus, type VmStatus } from './status';
import { vmOptionsFromConfig } from '../config/vmOptionsFromConfig';
import type { ConfigObject, LoadConfigOptions } from '../config/configFile';

/** Why a guest ended. */
export type ExitReason = 'poweroff' | 'reboot' | 'crash' | 'stopped';

/** Payload of the `exit` event. */
export interface ExitInfo {
  reason: ExitReason;
  /** For `crash`: registers, instruction bytes and the KVM exit that ended the guest. */
  crash?: CrashReport;
}

/** Lifecycle states of a VirtualMachine. */
export type VmState = 'created' | 'starting' | 'running' | 'paused' | 'stopping' | 'exited';

/** Typed events of a VirtualMachine. */
export type VmEvents = {
  /** Bytes the guest wrote to its serial console (ttyS0). */
  serial: (chunk: Buffer) => void;
  /** Bytes the guest wrote to a virtio console (hvc0, hvc1, … in the order of the VirtioConsole devices). */
  console: (chunk: Buffer, info: { port: number }) => void;
  /** Every vCPU is running guest code. */
  started: () => void;
  /** The guest ended; emitted exactly once per start. */
  exit: (info: ExitInfo) => void;
  /** A non-fatal problem (a device failed one access, a recovered emulation failure is not one). */
  error: (err: Error) => void;
  /** An instruction the paravirtual KVM could not emulate was stepped over (DESIGN.md). */
  recovered: (info: { vcpu: number; what: string; rip: string }) => void;
  /** `resizeDisk()` changed block device `index` (0-based among the block devices) to `bytes`. */
  diskResized: (info: { index: number; bytes: number }) => void;
};

/** Legacy port numbers (the PC's fixed I/O map). */
const COM1_PORT = 0x3f8; // 8250 UART, IRQ 4
const COM1_IRQ = 4;
/** TSS and identity-map pages for KVM_SET_TSS_ADDR on Intel (Firecracker/crosvm use 0xfffbd000). */
const KVM_TSS_ADDRESS = 0xfffb_d000;

/**
 * Kernel command line for a paravirtual (PVM) host (DESIGN.md, "This machine's KVM is paravirtual").
 * There the guest's CPUID instruction is not intercepted, so the features KVM's emulator fails on
 * are also cleared with `noxsave` and `clearcpuid=` (see {@link pvmClearCpuidParam}).
 */
export const PVM_TUNING_PARAMS: readonly string[] = ['mitigations=off', 'nowatchdog', 'tsc=reliable', 'noxsave', pvmClearCpuidParam()];

const running = new Set<VirtualMachine>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A process that forgets to stop its VMs must still exit: kick every vCPU out of KVM_RUN so
  // Node can end the worker threads (DESIGN.md, threading model).
  process.on('exit', () => {
    for (const vm of running) vm.kickForExit();
  });
}

const TypedEventEmitter = EventEmitter as unknown as new () => TypedEmitter<VmEvents>;

/**
 * A virtual machine on KVM.
 *
 * ```ts
 * const vm = new VirtualMachine({ kernel: 'vmlinuz', initrd: 'initrd.img', cpus: 2, mem: 512 });
 * vm.on('serial', (c) => process.stdout.write(c));
 * await vm.start();
 * await vm.serial.waitFor(/login:/);
 * await vm.stop();
 * ```
 */
export class VirtualMachine extends TypedEventEmitter {
  /** The validated options, with defaults applied. */
  readonly options: Readonly<ResolvedOptions>;
  /** The guest's serial console (COM1, ttyS0). */
  readonly serial: SerialConsole;
  /**
   * The guest's first virtio console (hvc0; use `console=hvc0`), with the same `waitFor` and
   * `write` as {@link serial}. Output of every virtio console also comes as `console` events.
   */
  readonly console: SerialConsole;
  private stateValue: VmState = 'created';
  private kvm?: KvmHypervisor;
  private kvmVm?: KvmVm;
  private memory?: GuestMemory;
  private vcpus: Vcpu[] = [];
  private threads: VcpuThread[] = [];
  private uart?: Serial8250;
  private refreshShadows: () => void = () => {};
  private pendingSerial: Uint8Array[] = [];
  private flushScheduled = false;
  private pci?: PciDevices;
  private pciOfLastStart?: PciDevices;
  private devicesClosed?: Promise<void>;
  private exitInfo?: ExitInfo;
  private exitPromise?: Promise<ExitInfo>;
  private resolveExit?: (info: ExitInfo) => void;
  private ending?: Promise<void>;
  private control?: ControlServer;
  private starting?: Promise<void>;
  private startedAt = 0;
  private endedAt = 0;
  private resizing: Promise<unknown> = Promise.resolve();
  /** The full kernel command line of the last start. */
  cmdline = '';
  /** Time spent from `start()` to the first KVM_RUN, in ms (the VMM's own start-up cost). */
  startupMs = 0;

  constructor(options: VirtualMachineOptions) {
    super();
    this.options = Object.freeze(resolveOptions(options));
    this.serial = new SerialConsole((bytes) => {
      if (!this.uart) throw new VmStateError('the serial console accepts input only while the VM runs');
      this.uart.input(bytes);
      this.refreshShadows(); // LSR now shows data ready
    });
    const hvc0 = this.options.devices.find((d): d is VirtioConsole => d instanceof VirtioConsole);
    this.console = new SerialConsole((bytes) => {
      if (!hvc0) throw new VmStateError('this VM has no VirtioConsole device');
      if (this.stateValue !== 'running' && this.stateValue !== 'paused') throw new VmStateError('the virtio console accepts input only while the VM runs');
      hvc0.input(bytes);
    });
  }

  /**
   * A VM described like a crosvm JSON config file, with the command line's option names:
   * `VirtualMachine.fromConfig({ kernel: 'bzImage', mem: 512, block: [{ path: 'root.img', root: true }], socket: '/run' })`.
   * `cfg` includes are read (relative to `options.cwd`) and merged as `--cfg` files are; devices
   * are constructed in the order listed (block devices open their images), and a VirtioBalloon
   * follows them unless `"no-balloon": true`, as with `kvmkit run`. See src/config `vmOptionsFromConfig`.
   * @throws ConfigFileError naming the key and the rule; DiskError for an image that cannot be opened
   */
  static async fromConfig(config: ConfigObject, options?: LoadConfigOptions & { source?: string }): Promise<VirtualMachine> {
    return new VirtualMachine(await vmOptionsFromConfig(config, options));
  }

  /** Where the VM is in its lifecycle. */
  get state(): VmState {
    return this.stateValue;
  }

  /** Resolves when the guest ends (after `start()`), with the reason. */
  get exited(): Promise<ExitInfo> {
    if (!this.exitPromise) throw new VmStateError('exited is available after start()');
    return this.exitPromise;
  }

  /**
   * Boot the guest. Resolves when every vCPU runs; rejects with a typed error (and nothing left
   * running) when a file is missing or malformed or KVM refuses.
   */
  start(): Promise<void> {
    if (this.stateValue !== 'created') return Promise.reject(new VmStateError(`start() needs a new VirtualMachine; this one is ${this.stateValue}`));
    this.stateValue = 'starting';
    this.starting = this.startUp();
    return this.starting;
  }

  private async startUp(): Promise<void> {
    const t0 = performance.now();
    try {
      if (this.options.socket !== undefined) {
        this.control = await ControlServer.listen(resolveSocketPath(this.options.socket), this, { onError: (e) => this.emit('error', e) });
      }
      await this.boot();
    } catch (e) {
      await Promise.all(this.threads.map((t) => t.stop()));
      this.release();
      void this.control?.close();
      this.control = undefined;
      this.stateValue = 'exited';
      throw e;
    }
    this.startupMs = performance.now() - t0;
    this.startedAt = performance.now();
    this.stateValue = 'running';
    running.add(this);
    installExitHook();
    this.emit('started');
  }

  private async readBootFile(option: 'kernel' | 'initrd', path: string): Promise<Uint8Array> {
    try {
      await access(path, fsConstants.R_OK);
    } catch (e) {
      throw new BootImageError(path, `${option} file ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? e}`, { cause: e });
    }
    return new Uint8Array(await readFile(path));
  }

  private async boot(): Promise<void> {
    const o = this.options;
    const host = hostArch();
    const layout = layoutFor(o.arch);
    if (o.arch !== host || o.arch !== 'x86_64') {
      throw new ConfigError('arch', o.arch !== host
        ? `"${o.arch}" cannot run on this ${host ?? process.arch} host (KVM runs guests of the host's architecture only)`
        : `"${o.arch}" guests cannot run yet: kvmkit builds their layout and device tree but has no ${o.arch} vCPU set-up`, o.arch);
    }
    // Virtio devices go on PCI bus 0, slots 1, 2, … in order (refused here, before anything opens).
    const pciPlan = planPci(o.devices);
    const kernel = await this.readBootFile('kernel', o.kernel);
    const initrd = o.initrd ? await this.readBootFile('initrd', o.initrd) : undefined;

    const kvm = (this.kvm = new KvmHypervisor());
    const base = ['console=ttyS0', 'reboot=k', 'panic=-1'];
    if (kvm.paravirtual && o.pvmTuning) base.push(...PVM_TUNING_PARAMS);
    this.cmdline = [...base, ...o.params].join(' ');
    if (o.cpus > kvm.maxVcpus()) throw new ConfigError('cpus', `must be at most ${kvm.maxVcpus()} on this host (KVM_CAP_MAX_VCPUS)`, o.cpus);

    const memBytes = o.mem * 1024 * 1024;
    const plan = layout.build({ memBytes, cpus: o.cpus, kernel, kernelPath: o.kernel, initrd, cmdline: this.cmdline, pciDevices: pciPlan.descriptions });
    // The boot files are valid: take the vCPU threads now (from the idle pool, or spawned: their
    // start-up overlaps with the set-up below).
    this.threads = Array.from({ length: o.cpus }, (_, i) => new VcpuThread(`vcpu${i}`));

    const vm = (this.kvmVm = kvm.createVm());
    vm.setTssAddress(KVM_TSS_ADDRESS);
    vm.createIrqchip();
    vm.createPit2();

    const memory = (this.memory = GuestMemory.allocate(plan.ramRegions));
    memory.regions.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.guestAddress, r.size, r.hostAddress));
    for (const w of plan.writes) memory.write(w.guestAddress, w.data);

    const supported = kvm.supportedCpuid();
    (plan.vcpus as X86VcpuInit[]).forEach((init, id) => {
      const vcpu = vm.createVcpu(id);
      this.vcpus.push(vcpu);
      vcpu.setCpuid(buildCpuid(supported, { vcpuId: id, cpus: o.cpus, pvm: kvm.paravirtual }));
      vcpu.setMsrs(init.msrs);
      vcpu.setFpu(init.fpu);
      vcpu.patchLapic(configureLapic);
      if (init.sregs) vcpu.setSregs(init.sregs);
      if (init.regs) vcpu.setRegs(init.regs);
    });

    // Legacy devices on the port-I/O bus.
    const pio = new Bus('pio');
    const irq = (n: number): IrqLine => ({ set: (level) => this.kvmVm?.setIrqLine(n, level) });
    this.uart = new Serial8250({ irq: irq(COM1_IRQ), onOutput: (b) => this.serialOut(b) });
    pio.insert(this.uart, COM1_PORT, SERIAL_PORT_LEN);
    const reboot = (): void => void this.end({ reason: 'reboot' });
    pio.insert(new I8042({ onReset: reboot }), I8042_PORT, I8042_PORT_LEN);
    const below4g = plan.ramRegions.filter((r) => r.guestAddress < 2 ** 32).reduce((s, r) => s + r.size, 0);
    pio.insert(new Cmos({ memBelow4g: below4g, memAbove4g: memBytes - below4g }), CMOS_PORT, CMOS_PORT_LEN);
    const pm = new AcpiPm({ onPowerOff: () => void this.end({ reason: 'poweroff' }) });
    pio.insert(pm.eventBlock, PM1A_EVT_PORT, PM1A_EVT_LEN);
    pio.insert(pm.controlBlock, PM1A_CNT_PORT, PM1A_CNT_LEN);
    // Virtio consoles: their output feeds `console` events (and `vm.console` for hvc0), after the
    // device's own onOutput option.
    o.devices.filter((d): d is VirtioConsole => d instanceof VirtioConsole).forEach((c, port) => {
      const own = c.options.onOutput;
      c.onOutput = (bytes) => {
        own?.(bytes);
        const chunk = Buffer.from(bytes);
        if (port === 0) this.console.push(chunk);
        this.emit('console', chunk, { port });
      };
    });
    // PCI: host bridge and virtio devices, BARs on the MMIO bus, doorbells and interrupts through KVM eventfds.
    const mmio = new Bus('mmio');
    this.pci = this.pciOfLastStart = new PciDevices(pciPlan, { vm, mem: memory, mmio, onError: (e) => this.emit('error', e) });
    pio.insert(new PciConfigIo(this.pci.root, { onReset: reboot }), PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_LEN);

    // What the vCPU threads may do by themselves: queue writes to devices with posted writes, and
    // answer one-byte status polls from a shadow table the main thread refreshes after each access.
    const portMap = new SharedArrayBuffer(0x10000);
    const portShadow = new SharedArrayBuffer(0x10000 * 2);
    const ports = new Uint8Array(portMap);
    const shadow = new Int16Array(portShadow).fill(-1);
    const shadowed: { port: number; device: BusDevice; offset: number }[] = [];
    for (let p = 0; p < 0x10000; p++) {
      const range = pio.lookup(p);
      if (!range) continue;
      ports[p] = PORT.MAPPED | (range.device.postedWrites ? PORT.POSTED_WRITE : 0);
      if (range.device.peekByte) {
        ports[p] |= PORT.SHADOW_READ;
        shadowed.push({ port: p, device: range.device, offset: p - range.base });
      }
    }
    const refreshShadows = (): void => {
      for (const s of shadowed) Atomics.store(shadow, s.port, s.device.peekByte!(s.offset) ?? -1);
    };
    refreshShadows();
    this.refreshShadows = refreshShadows;

    const scratch = new Uint8Array(8);
    const handler = (kind: number, addr: number, size: number, value: bigint): bigint | void => {
      const data = scratch.subarray(0, Math.min(size, 8));
      const bus = kind === ACCESS.PIO_READ || kind === ACCESS.PIO_WRITE ? pio : mmio;
      if (kind === ACCESS.PIO_WRITE || kind === ACCESS.MMIO_WRITE) {
        for (let i = 0; i < data.length; i++) data[i] = Number((value >> BigInt(8 * i)) & 0xffn);
        bus.write(addr, data);
        return;
      }
      data.fill(0xff);
      bus.read(addr, data);
      let v = 0n;
      for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]);
      return v;
    };

    this.exitPromise = new Promise((resolve) => (this.resolveExit = resolve));
    const ready: Promise<void>[] = [];
    for (const vcpu of this.vcpus) {
      let markReady!: () => void;
      ready.push(new Promise((r) => (markReady = r)));
      const thread = this.threads[vcpu.id];
      thread.start(vcpu, portMap, portShadow, memory.regions, kvm.paravirtual, handler, (m) => this.onWorkerMessage(vcpu.id, m, markReady), refreshShadows);
      void thread.exited.then((m) => {
        markReady();
        if (m.reason === 'crash') this.end({ reason: 'crash', crash: m.detail });
      });
    }
    await Promise.all(ready);
  }

  private onWorkerMessage(vcpu: number, m: VcpuWorkerMessage, ready: () => void): void {
    if (m.type === 'ready') ready();
    else if (m.type === 'recovered') this.emit('recovered', { vcpu, what: m.what, rip: m.rip });
  }

  private serialOut(bytes: Uint8Array): void {
    this.pendingSerial.push(bytes.slice());
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushSerial());
  }

  private flushSerial(): void {
    this.flushScheduled = false;
    if (this.pendingSerial.length === 0) return;
    const chunk = Buffer.concat(this.pendingSerial);
    this.pendingSerial = [];
    this.serial.push(chunk);
    this.emit('serial', chunk);
  }

  /**
   * Counters of each virtio device of the last start, in slot order: doorbells through
   * KVM_IOEVENTFD and as MMIO exits, MSI-X messages and INTx assertions. Kept after the VM ends.
   */
  deviceStats(): PciDeviceStats[] {
    return this.pciOfLastStart?.stats() ?? [];
  }

  /** Stop the guest (state `exited`, exit reason `stopped`). Works even when the guest spins with interrupts off. */
  async stop(): Promise<ExitInfo> {
    if (this.stateValue === 'created') throw new VmStateError('stop() before start()');
    // Asked while booting (e.g. a control-socket `stop`): let start() finish first. A start error
    // is start()'s caller's to handle; here it only means there is nothing to stop.
    if (this.stateValue === 'starting') await this.starting?.then(() => undefined, () => undefined);
    if (this.stateValue === 'exited' && !this.exitInfo) throw new VmStateError('stop(): the VM failed to start, so it never ran');
    await this.end({ reason: 'stopped' });
    return this.exitInfo!;
  }

  /** Park every vCPU outside KVM_RUN. Devices keep their state; `resume()` continues. */
  async pause(): Promise<void> {
    if (this.stateValue !== 'running') throw new VmStateError(`pause() needs a running VM; this one is ${this.stateValue}`);
    await Promise.all(this.threads.map((t) => t.pause()));
    if (this.stateValue === 'running') this.stateValue = 'paused';
  }

  /**
   * The registers of every vCPU, as hex strings (for diagnostics: where is the guest?). The VM
   * must be paused, so the values are stable.
   */
  registers(): Record<string, string>[] {
    if (this.stateValue !== 'paused') throw new VmStateError(`registers() needs a paused VM; this one is ${this.stateValue}`);
    return this.vcpus.map((v) => registerDump(v.getRegs(), v.getControlRegisters()));
  }

  /** The control socket's path while it is served (the `socket` option, resolved), else undefined. */
  get controlSocket(): string | undefined {
    return this.control?.path;
  }

  /** State, vCPUs, memory, uptime and devices (block devices with path and size), as plain data. */
  status(): VmStatus {
    const o = this.options;
    const end = this.endedAt || performance.now();
    return {
      state: this.stateValue,
      cpus: o.cpus,
      mem: o.mem,
      uptimeMs: this.startedAt ? Math.round(end - this.startedAt) : 0,
      devices: deviceStatus(o.devices),
    };
  }

  /**
   * Resize block device `index` (0-based over the {@link VirtioBlock} devices, in the order given)
   * to `bytes`, growing or shrinking its image file, and tell the guest: the capacity in its
   * configuration space changes, config_generation moves and a configuration change interrupt is
   * sent (virtio 1.2 §4.1.4.3, §4.1.4.5), like `crosvm disk resize`. Emits `diskResized`.
   * Resizes run one at a time, in call order.
   * @throws VmStateError unless the VM is running or paused
   * @throws ConfigError (`index …`, `bytes …`) for an index out of range, a read-only disk, or a
   *   size that is not a positive multiple of the disk's block size
   */
  async resizeDisk(index: number, bytes: number | bigint): Promise<void> {
    if (this.stateValue !== 'running' && this.stateValue !== 'paused') {
      throw new VmStateError(`resizeDisk() needs a running or paused VM; this one is ${this.stateValue}`);
    }
    const disks = this.options.devices.filter((d): d is VirtioBlock => d instanceof VirtioBlock);
    if (!Number.isInteger(index) || index < 0 || index >= disks.length) {
      throw new ConfigError('index', disks.length === 0 ? 'names no disk: this VM has no block device' : `must be an integer from 0 to ${disks.length - 1} (the VM's block devices in order)`, index);
    }
    const disk = disks[index]!;
    if (disk.readOnly) throw new ConfigError('index', `names read-only disk ${disk.path}, which cannot be resized`, index);
    const n = typeof bytes === 'bigint' && bytes >= 0n && bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : bytes;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0 || n % disk.blockSize !== 0) {
      throw new ConfigError('bytes', `must be a positive multiple of disk ${index}'s block size (${disk.blockSize}) below 2^53`, bytes);
    }
    const run = this.resizing.then(() => disk.resize(n));
    this.resizing = run.catch(() => undefined); // the next resize runs whatever this one did; the caller gets this error
    await run;
    this.emit('diskResized', { index, bytes: n });
  }

  /** Continue a paused VM. */
  resume(): void {
    if (this.stateValue !== 'paused') throw new VmStateError(`resume() needs a paused VM; this one is ${this.stateValue}`);
    for (const t of this.threads) t.resume();
    this.stateValue = 'running';
  }

  /** Synchronously kick every vCPU with a stop request (process exit path). @internal */
  kickForExit(): void {
    for (const t of this.threads) t.requestStop();
  }

  private end(info: ExitInfo): Promise<void> {
    if (this.ending) return this.ending;
    this.exitInfo = info;
    this.stateValue = 'stopping';
    this.endedAt = performance.now();
    // The socket file goes at once; open connections get their pending answers (a `stop` request
    // is answered once this ends), so this is not awaited.
    void this.control?.close();
    this.ending = (async () => {
      await Promise.all(this.threads.map((t) => t.stop()));
      this.flushSerial();
      this.release();
      await this.devicesClosed;
      running.delete(this);
      this.stateValue = 'exited';
      this.serial.end(info.reason);
      this.console.end(info.reason);
      this.emit('exit', info);
      this.resolveExit?.(info);
    })();
    return this.ending;
  }

  private release(): void {
    this.uart = undefined;
    for (const v of this.vcpus) {
      try {
        v.close();
      } catch (e) {
        this.emit('error', new KvmkitError(`closing vCPU ${v.id} failed`, { cause: e }));
      }
    }
    this.vcpus = [];
    this.threads = [];
    // Devices before the VM fd: their eventfds are unregistered from it, then closed.
    if (this.pci) {
      this.devicesClosed = this.pci.close().catch((e: unknown) => {
        this.emit('error', new KvmkitError('closing a device failed', { cause: e }));
      });
      this.pci = undefined;
    }
    this.kvmVm?.close();
    this.kvmVm = undefined;
    this.memory?.free();
    this.memory = undefined;
    this.kvm?.close();
    this.kvm = undefined;
  }

  /**
   * Set the guest's memory balloon to `bytes` (rounded down to 4 KiB), like `crosvm balloon SIZE`:
   * the VM's {@link VirtioBalloon} sets `num_pages` and sends a configuration change; the guest's
   * driver gives pages (released to the host) or takes them back in its own time. Resolves once
   * the guest is asked; `VirtioBalloon.waitForActual()` waits for the guest to get there.
   * @throws VmStateError unless the VM is running or paused; ConfigError when the VM has no
   *   VirtioBalloon or `bytes` is not an integer from 0 to the guest's RAM
   */
  async balloon(bytes: number): Promise<void> {
    const device = this.balloonDevice('balloon()', ['running', 'paused']);
    const ram = this.options.mem * 1024 * 1024;
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > ram) {
      throw new ConfigError('bytes', `must be an integer from 0 to the guest's RAM (${ram})`, bytes);
    }
    device.setTarget(bytes);
  }

  /**
   * Fresh memory statistics from the guest's balloon driver (free, total and available memory,
   * swap, faults, …) and the balloon's actual size, like `crosvm balloon_stats`.
   * @throws VmStateError unless the VM is running; ConfigError when it has no VirtioBalloon;
   *   BalloonError when the driver has no stats queue; TimeoutError when it does not answer in `timeoutMs`
   */
  async balloonStats(timeoutMs?: number): Promise<BalloonStats> {
    return this.balloonDevice('balloonStats()', ['running']).requestStats(timeoutMs);
  }

  private balloonDevice(what: string, states: VmState[]): VirtioBalloon {
    if (!states.includes(this.stateValue)) throw new VmStateError(`${what} needs a ${states.join(' or ')} VM; this one is ${this.stateValue}`);
    const device = this.options.devices.find((d): d is VirtioBalloon => d instanceof VirtioBalloon);
    if (!device) throw new ConfigError('devices', `hold no VirtioBalloon, which ${what} needs (add \`new VirtioBalloon()\`)`);
    return device;
  }
}
