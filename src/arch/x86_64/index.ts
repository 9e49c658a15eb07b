/**
 * x86_64 direct kernel boot: the {@link X86Layout} builder and the pieces the VM layer applies
 * per vCPU ({@link buildCpuid}, {@link bootMsrs}, {@link configureLapic}).
 * @module
 */

export * from './types';
export * from './Layout';
export * from './BzImage';
export * from './E820Map';
export * from './BootParams';
export * from './Gdt';
export * from './PageTables';
export * from './BootCpuState';
export * from './MpTable';
export * from './Cpuid';
export * from './Msrs';
export * from './Lapic';
export * from './X86Layout';
export * as acpi from './acpi';
