/**
 * ACPI tables for x86_64 guests.
 * @module
 */

export * from './AcpiTable';
export * as aml from './Aml';
export * from './AcpiTables';
export * from './Dsdt';
export * from './Facs';
export * from './Fadt';
export * from './Madt';
export * from './Rsdp';
export * from './Rsdt';
export * from './Xsdt';
