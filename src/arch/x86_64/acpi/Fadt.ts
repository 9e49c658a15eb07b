/**
 * The Fixed ACPI Description Table (signature `FACP`), revision 6, 276 bytes.
 *
 * Field offsets: ACPI 6.5 §5.2.9, Table 5.9 (the same offsets crosvm's x86_64/src/acpi.rs uses).
 * kvmkit's platform is a classic (not hardware-reduced) ACPI PC: a PM1a event block at port
 * 0x600 and a PM1a control block at 0x604 served by the VM's PM device, SCI on IRQ 9, no SMI
 * command port (so the OS treats ACPI as always enabled, ACPI 6.5 §4.8.2.1 / ACPICA `acpi_hw_get_mode`),
 * no PM timer and no GPE blocks, and reset through the i8042 port 0x64.
 * @module
 */

import {
  PM1A_CNT_BLK_LEN,
  PM1A_CNT_BLK_PORT,
  PM1A_EVT_BLK_LEN,
  PM1A_EVT_BLK_PORT,
  RESET_PORT,
  RESET_VALUE,
  SCI_IRQ,
} from '../Layout';
import { ioPortGas, newAcpiTable, sealAcpiTable, setU64, writeAscii, writeGas } from './AcpiTable';

/** FADT length for revision 6 (through Hypervisor Vendor Identity). */
export const FADT_LENGTH = 276;
/** FADT major revision (ACPI 6.x). */
export const FADT_REVISION = 6;
/** FADT minor revision (ACPI 6.3's layout is the one used, like crosvm). */
export const FADT_MINOR_REVISION = 3;

/** FADT field offsets (ACPI 6.5 Table 5.9). */
export const FadtOffset = {
  FIRMWARE_CTRL: 36,
  DSDT: 40,
  PREFERRED_PM_PROFILE: 45,
  SCI_INT: 46,
  SMI_CMD: 48,
  PM1A_EVT_BLK: 56,
  PM1A_CNT_BLK: 64,
  PM_TMR_BLK: 76,
  PM1_EVT_LEN: 88,
  PM1_CNT_LEN: 89,
  PM_TMR_LEN: 91,
  IAPC_BOOT_ARCH: 109,
  FLAGS: 112,
  RESET_REG: 116,
  RESET_VALUE: 128,
  MINOR_REVISION: 131,
  X_FIRMWARE_CTRL: 132,
  X_DSDT: 140,
  X_PM1A_EVT_BLK: 148,
  X_PM1A_CNT_BLK: 172,
  HYPERVISOR_VENDOR_ID: 268,
} as const;

/** FADT Fixed Feature Flags (ACPI 6.5 §5.2.9.1 Table 5.10). */
export const FadtFlag = {
  /** Bit 0: WBINVD works correctly. */
  WBINVD: 1 << 0,
  /** Bit 4: no fixed-feature power button (a control-method one, or none). */
  PWR_BUTTON: 1 << 4,
  /** Bit 5: no fixed-feature sleep button. */
  SLP_BUTTON: 1 << 5,
  /** Bit 10: RESET_REG is supported. */
  RESET_REG_SUP: 1 << 10,
  /** Bit 20: hardware-reduced ACPI (not set: kvmkit has PM1 blocks). */
  HW_REDUCED_ACPI: 1 << 20,
} as const;

/** IA-PC Boot Architecture Flags (ACPI 6.5 §5.2.9.3 Table 5.11). */
export const IapcBootArch = {
  /** Bit 0: LPC/ISA legacy devices present. */
  LEGACY_DEVICES: 1 << 0,
  /** Bit 1: an 8042 keyboard controller is at ports 0x60/0x64 (else Linux marks i8042 absent, arch/x86/kernel/acpi/boot.c). */
  I8042: 1 << 1,
  /** Bit 2: VGA is not present / not safe to probe (Firecracker sets it; kvmkit has no VGA). */
  VGA_NOT_PRESENT: 1 << 2,
  /** Bit 3: MSI must not be enabled. Never set: virtio-pci uses MSI-X. */
  MSI_NOT_SUPPORTED: 1 << 3,
  /** Bit 4: PCIe ASPM controls must not be enabled. */
  PCIE_ASPM_CONTROLS: 1 << 4,
  /** Bit 5: no CMOS RTC. Not set: kvmkit has one. */
  CMOS_RTC_NOT_PRESENT: 1 << 5,
} as const;

/** The flags kvmkit's FADT sets. */
export const KVMKIT_FADT_FLAGS = FadtFlag.WBINVD | FadtFlag.PWR_BUTTON | FadtFlag.SLP_BUTTON | FadtFlag.RESET_REG_SUP;
/** The IA-PC boot flags kvmkit's FADT sets: 8042 present, VGA not present. */
export const KVMKIT_IAPC_BOOT_ARCH = IapcBootArch.I8042 | IapcBootArch.VGA_NOT_PRESENT;

/** Addresses the FADT points to. */
export interface FadtInput {
  dsdtAddr: number;
  facsAddr: number;
}

/**
 * Build the FADT. The FACS goes in the 32-bit FIRMWARE_CTRL only (ACPI 6.5 Table 5.9: one of
 * FIRMWARE_CTRL and X_FIRMWARE_CTRL must be zero; with both set Linux installs the FACS twice);
 * the DSDT in both DSDT and X_DSDT, which must then agree.
 */
export function buildFadt(input: FadtInput): Uint8Array {
  const { bytes, view } = newAcpiTable({ signature: 'FACP', revision: FADT_REVISION, oemTableId: 'KVMKFACP' }, FADT_LENGTH);
  view.setUint32(FadtOffset.FIRMWARE_CTRL, input.facsAddr, true);
  view.setUint32(FadtOffset.DSDT, input.dsdtAddr, true);
  view.setUint8(FadtOffset.PREFERRED_PM_PROFILE, 0); // unspecified
  view.setUint16(FadtOffset.SCI_INT, SCI_IRQ, true);
  view.setUint32(FadtOffset.SMI_CMD, 0, true); // no SMI command port: ACPI mode only
  view.setUint32(FadtOffset.PM1A_EVT_BLK, PM1A_EVT_BLK_PORT, true);
  view.setUint32(FadtOffset.PM1A_CNT_BLK, PM1A_CNT_BLK_PORT, true);
  view.setUint8(FadtOffset.PM1_EVT_LEN, PM1A_EVT_BLK_LEN);
  view.setUint8(FadtOffset.PM1_CNT_LEN, PM1A_CNT_BLK_LEN);
  view.setUint16(FadtOffset.IAPC_BOOT_ARCH, KVMKIT_IAPC_BOOT_ARCH, true);
  view.setUint32(FadtOffset.FLAGS, KVMKIT_FADT_FLAGS, true);
  writeGas(view, FadtOffset.RESET_REG, ioPortGas(RESET_PORT, 1, 1));
  view.setUint8(FadtOffset.RESET_VALUE, RESET_VALUE);
  view.setUint8(FadtOffset.MINOR_REVISION, FADT_MINOR_REVISION);
  setU64(view, FadtOffset.X_FIRMWARE_CTRL, 0);
  setU64(view, FadtOffset.X_DSDT, input.dsdtAddr);
  // ACPICA checks bit_width against the legacy *_LEN fields ("32/64X length mismatch").
  writeGas(view, FadtOffset.X_PM1A_EVT_BLK, ioPortGas(PM1A_EVT_BLK_PORT, PM1A_EVT_BLK_LEN, 2));
  writeGas(view, FadtOffset.X_PM1A_CNT_BLK, ioPortGas(PM1A_CNT_BLK_PORT, PM1A_CNT_BLK_LEN, 2));
  writeAscii(bytes, FadtOffset.HYPERVISOR_VENDOR_ID, 'KVMKIT\0\0', 8);
  return sealAcpiTable(bytes);
}
