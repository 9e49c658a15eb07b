/**
 * kvmkit: a virtual machine monitor for Node.js. Boot real guests on KVM from TypeScript.
 *
 * ```ts
 * import { VirtualMachine } from 'kvmkit';
 * const vm = new VirtualMachine({ kernel: 'vmlinuz', initrd: 'initrd.img', cpus: 2, mem: 512 });
 * vm.on('serial', (chunk) => process.stdout.write(chunk));
 * await vm.start();
 * ```
 * @packageDocumentation
 */
export { VirtualMachine, PVM_TUNING_PARAMS } from './vm/VirtualMachine';
export type { ExitInfo, ExitReason, VmEvents, VmState } from './vm/VirtualMachine';
export type { PciDeviceStats } from './vm/PciDevices';
export type { VirtualMachineOptions, ResolvedOptions } from './vm/options';
export { MAX_CPUS, MIN_MEM_MIB, MAX_MEM_MIB } from './vm/options';
export { SerialConsole } from './vm/SerialConsole';
export * from './control';
export type { VmStatus, VmDeviceStatus } from './vm/status';
export { terminateIdleVcpuThreads } from './vm/VcpuThread';
export type { WaitForOptions } from './vm/SerialConsole';
export type { CrashReport } from './vm/mailbox';
export type { VmDevice } from './devices/VmDevice';
export {
  KvmkitError, ConfigError, KvmError, GuestMemoryError, BootImageError, VmStateError, TimeoutError,
} from './errors';
export { GuestMemory } from './memory/GuestMemory';
export type { GuestRegion } from './memory/GuestMemory';
export type { ArchLayout, ArchName, BootPlan, GuestWrite, LayoutInput, RamRegion, PciDeviceDescription } from './arch/ArchLayout';
export * from './guest';
export { layoutFor } from './arch';
export { X86Layout, parseBzImage } from './arch/x86_64';
export {
  Aarch64Layout, writeDeviceTreeBlob, buildAarch64Fdt, parseArmImageHeader, FdtWriter, FdtError, parseFdt,
} from './arch/aarch64';
export type { DeviceTreeBlobOptions, DeviceTreeBlobResult, Aarch64VcpuInit } from './arch/aarch64';
export type { X86VcpuInit } from './arch/x86_64/types';
/** Everything of the x86_64 layout builder (bzImage, boot_params, e820, ACPI, MP table, CPUID). */
export * as x86_64 from './arch/x86_64';
/** Everything of the aarch64 layout builder (Image header, memory map, FDT writer and reader). */
export * as aarch64 from './arch/aarch64';
/** Virtio devices for `devices: [...]` (virtio-pci transport), their queues and the device base class. */
export * from './devices/virtio';
/** The FUSE server behind `VirtioFs`. */
export * as fuse from './fuse';
/** Disk images behind block devices. */
export * from './disk';
/** crosvm-style option syntax (`--block disk.img,ro,id=X`). */
export * from './config';
