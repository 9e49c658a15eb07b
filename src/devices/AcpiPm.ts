/**
 * ACPI fixed-hardware power management registers: the PM1a event block (PM1_STS, PM1_EN) and the
 * PM1a control block (PM1_CNT), ACPI 6.5 §4.8.3.1 and §4.8.3.2 (tables 4.16–4.18). Enough for
 * Linux to see ACPI enabled, power off through `_S5_`, and receive a fixed-hardware power button.
 * @module
 */

import type { BusDevice, IrqLine } from './BusDevice';

/** Port of the PM1a event block (FADT PM1a_EVT_BLK); the FADT built by `arch/` uses exactly this. */
export const PM1A_EVT_PORT = 0x600;
/** Length of the PM1a event block in bytes (FADT PM1_EVT_LEN): PM1_STS and PM1_EN, 16 bits each. */
export const PM1A_EVT_LEN = 4;
/** Port of the PM1a control block (FADT PM1a_CNT_BLK). */
export const PM1A_CNT_PORT = 0x604;
/** Length of the PM1a control block in bytes (FADT PM1_CNT_LEN). */
export const PM1A_CNT_LEN = 2;
/** SLP_TYP value of the S5 (soft-off) state; the DSDT's `_S5_` package holds this value. */
export const S5_SLP_TYP = 5;

// ---- PM1 status / enable bits (ACPI 6.5 tables 4.16 and 4.17) ----
/** PM1_STS bit 0: PM timer carry. */
const PM1_TMR_STS = 1 << 0;
/** PM1_STS bit 4: bus master status. */
const PM1_BM_STS = 1 << 4;
/** PM1_STS bit 5: global lock release. */
const PM1_GBL_STS = 1 << 5;
/** PM1_STS / PM1_EN bit 8: power button. */
const PM1_PWRBTN = 1 << 8;
/** PM1_STS / PM1_EN bit 9: sleep button. */
const PM1_SLPBTN = 1 << 9;
/** PM1_STS / PM1_EN bit 10: RTC alarm. */
const PM1_RTC = 1 << 10;
/** PM1_STS bit 14: PCIe wake; PM1_EN bit 14: PCIEXP_WAKE_DIS. */
const PM1_PCIEXP_WAKE = 1 << 14;
/** PM1_STS bit 15: wake status. */
const PM1_WAK_STS = 1 << 15;
/** Status bits that exist (write 1 to clear). */
const PM1_STS_MASK = PM1_TMR_STS | PM1_BM_STS | PM1_GBL_STS | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_PCIEXP_WAKE | PM1_WAK_STS;
/** Enable bits that exist (TMR_EN 0, GBL_EN 5, PWRBTN_EN 8, SLPBTN_EN 9, RTC_EN 10, PCIEXP_WAKE_DIS 14). */
const PM1_EN_MASK = PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | PM1_PCIEXP_WAKE;
/** Status bits that raise an SCI when their enable bit is set. */
const PM1_SCI_EVENTS = PM1_TMR_STS | PM1_GBL_STS | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC;

// ---- PM1 control bits (ACPI 6.5 table 4.18) ----
/** PM1_CNT bit 0: SCI_EN, reads 1 always (hardware-reduced style "ACPI mode" without an SMI_CMD port). */
const PM1_SCI_EN = 1 << 0;
/** PM1_CNT bit 1: BM_RLD. */
const PM1_BM_RLD = 1 << 1;
// PM1_CNT bit 2, GBL_RLS, is write-only and reads 0: not stored.
/** PM1_CNT bits 12:10: SLP_TYP. */
const PM1_SLP_TYP_SHIFT = 10;
const PM1_SLP_TYP_MASK = 0x7 << PM1_SLP_TYP_SHIFT;
/** PM1_CNT bit 13: SLP_EN (write-only, reads 0): enter the sleep state SLP_TYP names. */
const PM1_SLP_EN = 1 << 13;
/** Control bits kept and read back. */
const PM1_CNT_STORED = PM1_BM_RLD | PM1_SLP_TYP_MASK;

/** Options for {@link AcpiPm}. */
export interface AcpiPmOptions {
  /** Called when the guest enters S5 (SLP_EN written with SLP_TYP = {@link S5_SLP_TYP}). */
  onPowerOff?: () => void;
  /** Called when the guest enters any other sleep state (SLP_EN with SLP_TYP ≠ 5), and for S5 too when `onPowerOff` is not given. */
  onSleep?: (slpTyp: number) => void;
  /** The SCI interrupt line (the FADT's SCI_INT, usually ISA IRQ 9), level-triggered. */
  sci?: IrqLine;
}

/** A 16-bit register file slice as a bus device, applying a byte-granular write with a mask. */
class RegisterBlock implements BusDevice {
  constructor(
    readonly name: string,
    readonly length: number,
    readonly readReg: (reg: number) => number,
    readonly writeReg: (reg: number, value: number, byteMask: number) => void,
  ) {}

  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const at = offset + i;
      data[i] = at >= 0 && at < this.length ? (this.readReg(at >> 1) >> ((at & 1) * 8)) & 0xff : 0xff;
    }
  }

  write(offset: number, data: Uint8Array): void {
    // Group the written bytes by 16-bit register, then apply each register write once.
    for (let reg = 0; reg < this.length >> 1; reg++) {
      let value = 0;
      let mask = 0;
      for (let b = 0; b < 2; b++) {
        const i = reg * 2 + b - offset;
        if (i >= 0 && i < data.length) {
          value |= data[i]! << (b * 8);
          mask |= 0xff << (b * 8);
        }
      }
      if (mask) this.writeReg(reg, value, mask);
    }
  }
}

/**
 * PM1a event and control registers, as two bus devices: insert {@link eventBlock} at
 * {@link PM1A_EVT_PORT} (length {@link PM1A_EVT_LEN}) and {@link controlBlock} at
 * {@link PM1A_CNT_PORT} (length {@link PM1A_CNT_LEN}), the addresses the FADT reports.
 *
 * - PM1_STS (event block +0): write 1 to clear; {@link pressPowerButton} sets PWRBTN_STS.
 * - PM1_EN (event block +2): read/write.
 * - PM1_CNT (control block +0): SCI_EN reads 1 always, so Linux finds ACPI already enabled and
 *   needs no SMI command port; BM_RLD and SLP_TYP read back; writing SLP_EN with SLP_TYP 5 calls
 *   `onPowerOff`, with another SLP_TYP calls `onSleep(slpTyp)`.
 *
 * Accesses of any size are taken byte by byte (a 16-bit register written one byte at a time gets
 * both halves; SLP_EN acts when the byte holding it is written). Bytes outside a block read 0xFF.
 */
export class AcpiPm {
  /** The PM1a event block (PM1_STS, PM1_EN). */
  readonly eventBlock: BusDevice;
  /** The PM1a control block (PM1_CNT). */
  readonly controlBlock: BusDevice;
  readonly #options: AcpiPmOptions;
  #sts = 0;
  #en = 0;
  #cnt = 0;
  #sciLevel = false;

  constructor(options: AcpiPmOptions) {
    this.#options = options;
    this.eventBlock = new RegisterBlock(
      'acpi-pm1a-evt',
      PM1A_EVT_LEN,
      (reg) => (reg === 0 ? this.#sts : this.#en),
      (reg, v, mask) => (reg === 0 ? this.#writeSts(v & mask) : this.#writeEn(v, mask)),
    );
    this.controlBlock = new RegisterBlock(
      'acpi-pm1a-cnt',
      PM1A_CNT_LEN,
      () => this.#cnt | PM1_SCI_EN,
      (_reg, v, mask) => this.#writeCnt(v, mask),
    );
  }

  /** Press the fixed-hardware power button: sets PWRBTN_STS, raising the SCI if PWRBTN_EN is set. */
  pressPowerButton(): void {
    this.#sts |= PM1_PWRBTN;
    this.#updateSci();
  }

  /** Current PM1_STS value. */
  get status(): number {
    return this.#sts;
  }

  /** Current PM1_EN value. */
  get enable(): number {
    return this.#en;
  }

  #writeSts(ones: number): void {
    this.#sts &= ~(ones & PM1_STS_MASK);
    this.#updateSci();
  }

  #writeEn(v: number, mask: number): void {
    this.#en = (this.#en & ~mask) | (v & mask & PM1_EN_MASK);
    this.#updateSci();
  }

  #writeCnt(v: number, mask: number): void {
    this.#cnt = (this.#cnt & ~mask) | (v & mask & PM1_CNT_STORED);
    // GBL_RLS (bit 2) would signal the firmware's global lock; there is no firmware: ignored.
    if (mask & PM1_SLP_EN && v & PM1_SLP_EN) {
      const slpTyp = (this.#cnt & PM1_SLP_TYP_MASK) >> PM1_SLP_TYP_SHIFT;
      if (slpTyp === S5_SLP_TYP && this.#options.onPowerOff) this.#options.onPowerOff();
      else this.#options.onSleep?.(slpTyp);
    }
  }

  #updateSci(): void {
    const level = (this.#sts & this.#en & PM1_SCI_EVENTS) !== 0;
    if (level !== this.#sciLevel) {
      this.#sciLevel = level;
      this.#options.sci?.set(level);
    }
  }
}
