/**
 * The PC's MC146818 real-time clock and its 128 bytes of CMOS RAM on ports 0x70 (index) and 0x71
 * (data), like crosvm's `devices/src/cmos.rs`.
 *
 * Register numbers and bits: the MC146818A datasheet via Linux `include/linux/mc146818rtc.h`;
 * memory-size bytes: crosvm's `cmos.rs` and QEMU's `pc_cmos_init` (`hw/i386/pc.c`); century at
 * 0x32: QEMU's `RTC_CENTURY`, the byte an ACPI FADT's CENTURY field names.
 * @module
 */

import { ConfigError } from '../errors';
import type { BusDevice } from './BusDevice';

/** First CMOS port: the index register (write the register number here). */
export const CMOS_PORT = 0x70;
/** CMOS decodes two ports: index (0x70) and data (0x71). */
export const CMOS_PORT_LEN = 2;

// ---- Port offsets ----
/** Offset of the index port (0x70). */
const INDEX_OFFSET = 0;
/** Offset of the data port (0x71). */
const DATA_OFFSET = 1;
/** Index port bit 7 disables NMIs on PCs; the register number is bits 6:0 (crosvm INDEX_MASK). */
const INDEX_NMI_DISABLE = 0x80;
const INDEX_MASK = 0x7f;
/** Bytes of CMOS RAM, clock registers included. */
const CMOS_SIZE = 128;

// ---- Clock registers (mc146818rtc.h) ----
const RTC_SECONDS = 0x00;
const RTC_MINUTES = 0x02;
const RTC_HOURS = 0x04;
const RTC_DAY_OF_WEEK = 0x06;
const RTC_DAY_OF_MONTH = 0x07;
const RTC_MONTH = 0x08;
const RTC_YEAR = 0x09;
/** Century (BCD or binary like the other time registers); QEMU hw/rtc/mc146818rtc.h RTC_CENTURY. */
const RTC_CENTURY = 0x32;
/** Registers that hold the current time (the alarm registers 0x01/0x03/0x05 are plain bytes here). */
const TIME_REGISTERS = [RTC_SECONDS, RTC_MINUTES, RTC_HOURS, RTC_DAY_OF_WEEK, RTC_DAY_OF_MONTH, RTC_MONTH, RTC_YEAR, RTC_CENTURY];

/** Register A (RTC_FREQ_SELECT). */
const RTC_REG_A = 0x0a;
/** Register A bit 7: update in progress (read-only; always clear here). */
const RTC_UIP = 0x80;
/** Register A default: divider 010 (32.768 kHz time base, RTC_REF_CLCK_32KHZ) and rate 0110 (1024 Hz). */
const RTC_REG_A_DEFAULT = 0x26;
/**
 * UIP is set during the last UIP_WINDOW_MS of each second, and a UIP-clear poll's time is used for
 * reads within UIP_WINDOW_MS of it (a real part sets UIP 244 us ahead; guest port I/O here takes
 * tens of microseconds per access, so the window is wider).
 */
const UIP_WINDOW_MS = 20;

/** Register B (RTC_CONTROL). */
const RTC_REG_B = 0x0b;
/** Register B bit 7: SET, halts updates while the time is written. */
const RTC_SET = 0x80;
/** Register B bit 2: DM, data mode binary (1) or BCD (0). */
const RTC_DM_BINARY = 0x04;
/** Register B bit 1: 24-hour (1) or 12-hour (0) mode. */
const RTC_24H = 0x02;
/** 12-hour mode: bit 7 of the hours register marks PM. */
const RTC_HOURS_PM = 0x80;

/** Register C (RTC_INTR_FLAGS): interrupt flags; always 0 here (no RTC interrupts are raised). */
const RTC_REG_C = 0x0c;
/** Register D (RTC_VALID). */
const RTC_REG_D = 0x0d;
/** Register D bit 7: VRT, valid RAM and time (battery good). */
const RTC_VRT = 0x80;

// ---- Memory size bytes ----
/** Base memory in KiB, low/high byte (QEMU: min(640, RAM below 4 GiB)). */
const CMOS_BASE_MEM_LO = 0x15;
/** Extended memory above 1 MiB in KiB, capped at 0xFFFF, low/high (QEMU; also 0x30/0x31). */
const CMOS_EXT_MEM_LO = 0x17;
const CMOS_EXT_MEM2_LO = 0x30;
/** Memory between 16 MiB and 4 GiB in 64 KiB units, capped at 0xFFFF, low/high (crosvm, QEMU). */
const CMOS_MEM_ABOVE_16M_LO = 0x34;
/** Memory above 4 GiB in 64 KiB units, capped at 0xFFFFFF, 3 bytes little-endian (crosvm, QEMU). */
const CMOS_MEM_ABOVE_4G_LO = 0x5b;

const KiB = 1024;
const MiB = 1024 * KiB;

/** Options for {@link Cmos}. */
export interface CmosOptions {
  /** Guest RAM below 4 GiB in bytes. */
  memBelow4g: number;
  /** Guest RAM above 4 GiB in bytes. */
  memAbove4g: number;
  /** The host clock (tests pass a fixed time). Default `() => new Date()`. */
  now?: () => Date;
  /** Bus device name for diagnostics. Default `cmos`. */
  name?: string;
}

/**
 * MC146818 RTC + CMOS RAM. Insert at {@link CMOS_PORT} with length {@link CMOS_PORT_LEN}.
 *
 * - The time registers are computed from the host clock in UTC at each read, in BCD or binary and
 *   24- or 12-hour format as register B says (default 0x02: 24-hour, BCD, like a PC).
 * - Register A reads 0x26; UIP (bit 7) is set in the last 20 ms of each second, and the time
 *   registers read after a UIP-clear poll all come from that poll's snapshot.
 * - Guest writes to the time registers set the guest's clock: the written time is kept as an
 *   offset from the host clock (crosvm ignores such writes; kvmkit keeps them so `hwclock --systohc`
 *   round-trips). While register B's SET bit is 1 the time registers hold what the guest wrote and
 *   the new time takes effect when SET is cleared, as on the real part; a write with SET clear takes
 *   effect at once. The day of week is derived from the date; a written one is not kept. Writes
 *   that do not decode to a valid date are ignored.
 * - Register C reads 0 and register D reads 0x80 (VRT). No RTC interrupts (periodic, alarm,
 *   update-ended) are raised: the interrupt-enable bits of B are stored only.
 * - Index port bit 7 (NMI disable on PCs) is masked off the index and recorded in
 *   {@link nmiDisabled}; it has no other effect.
 *
 * Wider accesses are split into byte accesses (an ISA device); offsets past 1 read 0xFF.
 */
export class Cmos implements BusDevice {
  readonly name: string;
  readonly #data = new Uint8Array(CMOS_SIZE);
  readonly #now: () => Date;
  #snapshot?: { takenAt: number; time: Date };
  #index = 0;
  #nmiDisabled = false;
  /** Guest clock minus host clock, in milliseconds. */
  #offsetMs = 0;

  constructor(options: CmosOptions) {
    const { memBelow4g, memAbove4g } = options;
    if (!Number.isSafeInteger(memBelow4g) || memBelow4g < 0 || memBelow4g > 4 * 1024 * MiB) {
      throw new ConfigError('cmos memBelow4g', 'must be a byte count between 0 and 4 GiB', memBelow4g);
    }
    if (!Number.isSafeInteger(memAbove4g) || memAbove4g < 0) {
      throw new ConfigError('cmos memAbove4g', 'must be a non-negative byte count', memAbove4g);
    }
    this.name = options.name ?? 'cmos';
    this.#now = options.now ?? (() => new Date());
    const d = this.#data;
    d[RTC_REG_A] = RTC_REG_A_DEFAULT;
    d[RTC_REG_B] = RTC_24H;
    d[RTC_REG_D] = RTC_VRT;

    const baseKiB = Math.min(640, Math.floor(memBelow4g / KiB));
    setLe(d, CMOS_BASE_MEM_LO, baseKiB, 2);
    const extKiB = Math.min(0xffff, Math.floor(Math.max(0, memBelow4g - MiB) / KiB));
    setLe(d, CMOS_EXT_MEM_LO, extKiB, 2);
    setLe(d, CMOS_EXT_MEM2_LO, extKiB, 2);
    const above16m = Math.min(0xffff, Math.floor(Math.max(0, memBelow4g - 16 * MiB) / (64 * KiB)));
    setLe(d, CMOS_MEM_ABOVE_16M_LO, above16m, 2);
    const above4g = Math.min(0xffffff, Math.floor(memAbove4g / (64 * KiB)));
    setLe(d, CMOS_MEM_ABOVE_4G_LO, above4g, 3);
  }

  /** Whether the guest last wrote the index port with bit 7 (NMI disable) set. */
  get nmiDisabled(): boolean {
    return this.#nmiDisabled;
  }

  /** The guest's clock (host clock plus what the guest set), for diagnostics. */
  guestTime(): Date {
    return new Date(this.#hostMs() + this.#offsetMs);
  }

  /** Fill `data` with what the guest reads at `offset` (one port per byte). */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = this.#readByte(offset + i);
  }

  /** The guest wrote `data` at `offset` (one port per byte). */
  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.#writeByte(offset + i, data[i]!);
  }

  get #frozen(): boolean {
    return (this.#data[RTC_REG_B]! & RTC_SET) !== 0;
  }

  /** The snapshot of the last UIP-clear poll while it is valid (same second guaranteed), else now. */
  #timeForRead(): Date {
    const snap = this.#snapshot;
    if (snap && performance.now() - snap.takenAt < UIP_WINDOW_MS) return snap.time;
    this.#snapshot = undefined;
    return this.guestTime();
  }

  #hostMs(): number {
    const t = this.#now().getTime();
    return Number.isFinite(t) ? t : 0;
  }

  #readByte(offset: number): number {
    if (offset === INDEX_OFFSET) return this.#index;
    if (offset !== DATA_OFFSET) return 0xff;
    const i = this.#index;
    switch (i) {
      case RTC_REG_A: {
        // Like the MC146818, announce the update shortly before each second boundary (UIP), and
        // let the guest read the time registers that follow a UIP-clear poll from one snapshot:
        // without this, a read of seconds then minutes across a boundary is up to a minute off.
        const t = this.guestTime();
        if (!this.#frozen && t.getUTCMilliseconds() >= 1000 - UIP_WINDOW_MS) {
          this.#snapshot = undefined;
          return (this.#data[i]! & ~RTC_UIP) | RTC_UIP;
        }
        this.#snapshot = { takenAt: performance.now(), time: t };
        return this.#data[i]! & ~RTC_UIP;
      }
      case RTC_REG_C:
        return 0;
      case RTC_REG_D:
        return RTC_VRT;
      default:
        if (!this.#frozen && TIME_REGISTERS.includes(i)) return this.#encodeTime(this.#timeForRead())[i]!;
        return this.#data[i]!;
    }
  }

  #writeByte(offset: number, v: number): void {
    if (offset === INDEX_OFFSET) {
      this.#index = v & INDEX_MASK;
      this.#nmiDisabled = (v & INDEX_NMI_DISABLE) !== 0;
      return;
    }
    if (offset !== DATA_OFFSET) return;
    const i = this.#index;
    switch (i) {
      case RTC_REG_A:
        this.#data[i] = v & ~RTC_UIP; // UIP is read-only
        return;
      case RTC_REG_B: {
        const wasFrozen = this.#frozen;
        const nowFrozen = (v & RTC_SET) !== 0;
        // Entering SET: latch the current time so the guest edits a stable copy.
        if (!wasFrozen && nowFrozen) this.#latchTime();
        this.#data[i] = v;
        // Leaving SET: the edited time starts running now.
        if (wasFrozen && !nowFrozen) this.#commitTime();
        return;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        return; // read-only
      default:
        if (TIME_REGISTERS.includes(i)) {
          if (this.#frozen) {
            this.#data[i] = v;
          } else {
            this.#latchTime();
            this.#data[i] = v;
            this.#commitTime();
          }
          return;
        }
        this.#data[i] = v;
    }
  }

  /** Copy the current guest time into the time registers, in the current format. */
  #latchTime(): void {
    const regs = this.#encodeTime(this.guestTime());
    for (const r of TIME_REGISTERS) this.#data[r] = regs[r]!;
  }

  /** Decode the time registers and make that the guest's current time (invalid dates are ignored). */
  #commitTime(): void {
    const d = this.#data;
    const dec = (v: number): number => this.#decode(v);
    const sec = dec(d[RTC_SECONDS]!);
    const min = dec(d[RTC_MINUTES]!);
    let hour: number;
    if (d[RTC_REG_B]! & RTC_24H) {
      hour = dec(d[RTC_HOURS]!);
    } else {
      const h12 = dec(d[RTC_HOURS]! & ~RTC_HOURS_PM);
      hour = h12 < 1 || h12 > 12 ? NaN : (h12 % 12) + (d[RTC_HOURS]! & RTC_HOURS_PM ? 12 : 0);
    }
    const day = dec(d[RTC_DAY_OF_MONTH]!);
    const month = dec(d[RTC_MONTH]!);
    const year = dec(d[RTC_CENTURY]!) * 100 + dec(d[RTC_YEAR]!);
    const ok =
      inRange(sec, 0, 59) && inRange(min, 0, 59) && inRange(hour, 0, 23) && inRange(month, 1, 12) &&
      inRange(day, 1, daysInMonth(year, month)) && inRange(year, 0, 9999);
    if (!ok) return;
    const t = new Date(0);
    t.setUTCFullYear(year, month - 1, day);
    t.setUTCHours(hour, min, sec, 0);
    this.#offsetMs = t.getTime() - this.#hostMs();
  }

  /** The time registers for `t` (indexed by register number), in register B's format. */
  #encodeTime(t: Date): Record<number, number> {
    const enc = (v: number): number => this.#encode(v);
    const h = t.getUTCHours();
    const hours = this.#data[RTC_REG_B]! & RTC_24H ? enc(h) : enc(h % 12 || 12) | (h >= 12 ? RTC_HOURS_PM : 0);
    const year = Math.min(9999, Math.max(0, t.getUTCFullYear()));
    return {
      [RTC_SECONDS]: enc(t.getUTCSeconds()),
      [RTC_MINUTES]: enc(t.getUTCMinutes()),
      [RTC_HOURS]: hours,
      [RTC_DAY_OF_WEEK]: enc(t.getUTCDay() + 1), // 1 = Sunday .. 7 = Saturday
      [RTC_DAY_OF_MONTH]: enc(t.getUTCDate()),
      [RTC_MONTH]: enc(t.getUTCMonth() + 1),
      [RTC_YEAR]: enc(year % 100),
      [RTC_CENTURY]: enc(Math.floor(year / 100)),
    };
  }

  /** Encode 0..99 as BCD or binary per register B's DM bit. */
  #encode(v: number): number {
    return this.#data[RTC_REG_B]! & RTC_DM_BINARY ? v : ((v / 10) << 4) | v % 10;
  }

  /** Decode a register byte per register B's DM bit; invalid BCD gives NaN. */
  #decode(v: number): number {
    if (this.#data[RTC_REG_B]! & RTC_DM_BINARY) return v;
    const hi = v >> 4;
    const lo = v & 0x0f;
    return hi > 9 || lo > 9 ? NaN : hi * 10 + lo;
  }
}

function setLe(d: Uint8Array, at: number, value: number, bytes: number): void {
  for (let i = 0; i < bytes; i++) d[at + i] = Math.floor(value / 256 ** i) & 0xff;
}

function inRange(v: number, lo: number, hi: number): boolean {
  return v >= lo && v <= hi; // false for NaN
}

function daysInMonth(year: number, month: number): number {
  if (!inRange(month, 1, 12)) return 0;
  const t = new Date(0);
  t.setUTCFullYear(year, month, 0); // day 0 of the next month = last day of this one
  return t.getUTCDate();
}
