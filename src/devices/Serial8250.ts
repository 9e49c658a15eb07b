/**
 * A 16550A UART (the PC's COM ports), the model Linux's 8250 driver autoconfigures as "16550A"
 * and uses for `console=ttyS0` with interrupts.
 *
 * Register offsets and bits are Linux's `include/uapi/linux/serial_reg.h` (which follows the
 * National PC16550D datasheet). Interrupt semantics follow QEMU's `hw/char/serial.c`; defaults
 * follow crosvm's `devices/src/serial.rs` / rust-vmm's `vm-superio`. Transmission is instant: THR
 * and the transmitter shift register are always empty again by the time the guest looks.
 * @module
 */

import { ConfigError } from '../errors';
import type { BusDevice, IrqLine } from './BusDevice';

// ---- Register offsets from the base port (serial_reg.h) ----
/** In: receive buffer. Out: transmit holding register. With DLAB=1: divisor latch low (UART_DLL). */
const UART_RX = 0;
/** Interrupt enable register. With DLAB=1: divisor latch high (UART_DLM). */
const UART_IER = 1;
/** In: interrupt identification register. Out: FIFO control register (UART_FCR). */
const UART_IIR = 2;
/** Line control register. */
const UART_LCR = 3;
/** Modem control register. */
const UART_MCR = 4;
/** Line status register. */
const UART_LSR = 5;
/** Modem status register. */
const UART_MSR = 6;
/** Scratch register. */
const UART_SCR = 7;

/** Number of I/O ports a 16550 decodes. */
export const SERIAL_PORT_LEN = 8;

/** The PC's COM1..COM4 base ports and ISA IRQs (the standard assignment Linux's 8250 driver assumes). */
export const COM_PORTS: readonly { readonly base: number; readonly irq: number }[] = [
  { base: 0x3f8, irq: 4 }, // COM1, ttyS0
  { base: 0x2f8, irq: 3 }, // COM2, ttyS1
  { base: 0x3e8, irq: 4 }, // COM3, ttyS2
  { base: 0x2e8, irq: 3 }, // COM4, ttyS3
];

// ---- IER bits (serial_reg.h) ----
/** Enable receiver data interrupt. */
const UART_IER_RDI = 0x01;
/** Enable transmitter holding register empty interrupt. */
const UART_IER_THRI = 0x02;
/** Enable receiver line status interrupt. */
const UART_IER_RLSI = 0x04;
/** Enable modem status interrupt. Bits 4..7 do not exist on a 16550A (Linux probes bit 6, UUE). */
const UART_IER_MASK = 0x0f;

// ---- IIR values (serial_reg.h) ----
/** No interrupts pending. */
const UART_IIR_NO_INT = 0x01;
/** Transmitter holding register empty. */
const UART_IIR_THRI = 0x02;
/** Receiver data interrupt. */
const UART_IIR_RDI = 0x04;
/** Receiver line status interrupt. */
const UART_IIR_RLSI = 0x06;
/** Mask of the interrupt ID bits. */
const UART_IIR_ID = 0x0e;
/** Bits 7:6 both set: FIFOs enabled on a 16550A (UART_IIR_FIFO_ENABLED_16550A). */
const UART_IIR_FIFO_ENABLED_16550A = 0xc0;

// ---- FCR bits (serial_reg.h) ----
/** Enable the FIFOs. */
const UART_FCR_ENABLE_FIFO = 0x01;
/** Clear the RCVR FIFO (self-clearing). */
const UART_FCR_CLEAR_RCVR = 0x02;
/** Clear the XMIT FIFO (self-clearing). */
const UART_FCR_CLEAR_XMIT = 0x04;
/** Bits a 16550A keeps: trigger level (7:6), DMA mode select (3), enable (0); QEMU's `val & 0xC9`. */
const UART_FCR_STORED = 0xc9;

// ---- LCR / MCR bits (serial_reg.h) ----
/** Divisor latch access bit. */
const UART_LCR_DLAB = 0x80;
/** Data terminal ready. */
const UART_MCR_DTR = 0x01;
/** Request to send. */
const UART_MCR_RTS = 0x02;
/** Auxiliary output 1. */
const UART_MCR_OUT1 = 0x04;
/** Auxiliary output 2 (gates the IRQ on PCs; like QEMU and crosvm, not modelled as a gate). */
const UART_MCR_OUT2 = 0x08;
/** Enable loopback test mode. */
const UART_MCR_LOOP = 0x10;
/** Bits a 16550A has (bit 5, AFE, is a 16750 extension); QEMU keeps `val & 0x1f`. */
const UART_MCR_MASK = 0x1f;

// ---- LSR bits (serial_reg.h) ----
/** Receiver data ready. */
const UART_LSR_DR = 0x01;
/** Overrun error. */
const UART_LSR_OE = 0x02;
/** Break interrupt indicator. */
const UART_LSR_BI = 0x10;
/** Transmit-hold-register empty. */
const UART_LSR_THRE = 0x20;
/** Transmitter empty. */
const UART_LSR_TEMT = 0x40;
/** Error bits that raise the line-status interrupt (BI, FE, PE, OE). */
const UART_LSR_BRK_ERROR_BITS = 0x1e;

// ---- MSR bits (serial_reg.h) ----
/** Data carrier detect. */
const UART_MSR_DCD = 0x80;
/** Ring indicator. */
const UART_MSR_RI = 0x40;
/** Data set ready. */
const UART_MSR_DSR = 0x20;
/** Clear to send. */
const UART_MSR_CTS = 0x10;

/** 16550A receive FIFO depth (datasheet); the loopback path holds this many bytes, like QEMU. */
const UART_FIFO_LENGTH = 16;
/** Default divisor 12: 9600 baud from the 1.8432 MHz clock (vm-superio's default). */
const DEFAULT_DIVISOR = 12;
/** Default host input buffer: bytes waiting for the guest to read them. */
const DEFAULT_INPUT_CAPACITY = 64 * 1024;

/** Options for {@link Serial8250}. */
export interface Serial8250Options {
  /** The UART's interrupt line (COM1: ISA IRQ 4). Driven high while an enabled interrupt is pending. */
  irq: IrqLine;
  /** Called with the bytes the guest transmits (one call per THR write; batch downstream). */
  onOutput: (bytes: Uint8Array) => void;
  /** Bus device name for diagnostics. Default `serial`. */
  name?: string;
  /** Capacity of the host-to-guest input buffer in bytes. Default 65536. */
  inputCapacity?: number;
}

/** A byte ring buffer of fixed capacity. */
class ByteQueue {
  readonly #buf: Uint8Array;
  #head = 0;
  #count = 0;

  constructor(capacity: number) {
    this.#buf = new Uint8Array(capacity);
  }

  get length(): number {
    return this.#count;
  }

  get space(): number {
    return this.#buf.length - this.#count;
  }

  /** Append as many of `bytes` as fit; returns how many did. */
  push(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.space);
    const cap = this.#buf.length;
    for (let i = 0; i < n; i++) this.#buf[(this.#head + this.#count + i) % cap] = bytes[i]!;
    this.#count += n;
    return n;
  }

  /** Remove and return the oldest byte (the queue must not be empty). */
  shift(): number {
    const v = this.#buf[this.#head]!;
    this.#head = (this.#head + 1) % this.#buf.length;
    this.#count--;
    return v;
  }

  /** Drop up to `n` of the oldest bytes. */
  drop(n: number): void {
    const k = Math.min(n, this.#count);
    this.#head = (this.#head + k) % this.#buf.length;
    this.#count -= k;
  }
}

/**
 * A 16550A UART on 8 consecutive I/O ports (insert it with length {@link SERIAL_PORT_LEN}).
 *
 * Behaviour the Linux 8250 driver relies on:
 * - IER keeps bits 0..3 only, so autoconfig's IER probe (write 0x0F, read back 0x0F; bit 6 stays 0)
 *   passes and the XScale probe fails.
 * - IIR bits 7:6 read 11 when FCR enabled the FIFOs, so autoconfig identifies a 16550A; IIR bits
 *   5:4 read 0 (no 64-byte FIFO, not a 16750).
 * - THRE interrupt as in QEMU: pending after every transmitted byte and whenever IER's THRI bit goes
 *   from 0 to 1 (THR is always empty); reading IIR while it reports THRE clears that condition.
 *   So the driver's "does THRE re-assert" test at port startup passes (no UART_BUG_THRE).
 * - RX-data interrupt whenever data is ready and IER.RDI is set (no FIFO trigger levels or
 *   character timeouts are modelled: data is reported as ready at once, as crosvm does).
 * - Loopback (MCR bit 4): THR writes go to a 16-byte receive FIFO instead of `onOutput`, host input
 *   stays queued unseen, and MSR reflects MCR (DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD) so the
 *   autoconfig loopback test reads MSR 0x90 after writing MCR 0x1A.
 * - LSR: THRE and TEMT always set, DR when a byte is ready, OE after a loopback overrun (cleared by
 *   reading LSR). MSR outside loopback: DCD, DSR and CTS set (a connected modem), no deltas.
 *
 * Wider accesses are split into consecutive byte accesses, as the ISA bus does for an 8-bit
 * device; offsets past 7 read 0xFF and ignore writes. Nothing the guest does throws.
 *
 * The line is driven through {@link IrqLine.set} only on changes: `true` when an enabled interrupt
 * becomes pending, `false` when none is. A THR write lowers then raises it (the THRE condition is
 * cleared by the write and set again when the byte has gone), which gives an edge per byte.
 */
export class Serial8250 implements BusDevice {
  readonly name: string;
  readonly #irq: IrqLine;
  readonly #onOutput: (bytes: Uint8Array) => void;

  #ier = 0;
  #lcr = 0x03; // 8 data bits, 1 stop bit, no parity (vm-superio's default)
  #mcr = UART_MCR_OUT2; // vm-superio's default: OUT2 set
  #fcr = 0;
  #scr = 0;
  #dll = DEFAULT_DIVISOR & 0xff;
  #dlm = DEFAULT_DIVISOR >> 8;
  /** Sticky LSR error bits (OE, BI), cleared by reading LSR. */
  #lsrErrors = 0;
  /** THRE interrupt condition (QEMU's `thr_ipending`). */
  #thrIpending = false;
  /** Level last driven on the IRQ line. */
  #irqLevel = false;
  /** Bytes from the host, waiting for the guest. */
  readonly #input: ByteQueue;
  /** Bytes the guest sent to itself in loopback mode. */
  readonly #loop = new ByteQueue(UART_FIFO_LENGTH);

  constructor(options: Serial8250Options) {
    const capacity = options.inputCapacity ?? DEFAULT_INPUT_CAPACITY;
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new ConfigError('serial inputCapacity', 'must be a positive integer number of bytes', capacity);
    }
    this.name = options.name ?? 'serial';
    this.#irq = options.irq;
    this.#onOutput = options.onOutput;
    this.#input = new ByteQueue(capacity);
  }

  /**
   * Queue bytes for the guest to read from RBR, raising the RX-data interrupt if IER enables it.
   * @returns how many bytes were accepted; the rest did not fit in the input buffer (retry them
   *   when {@link inputSpace} grows).
   */
  input(bytes: Uint8Array): number {
    const n = this.#input.push(bytes);
    if (n > 0) this.#updateIrq();
    return n;
  }

  /** Free space in the input buffer, in bytes. */
  get inputSpace(): number {
    return this.#input.space;
  }

  /** Bytes queued by {@link input} that the guest has not read yet. */
  get pendingInput(): number {
    return this.#input.length;
  }

  /** Fill `data` with what the guest reads at `offset` (one register per byte). */
  read(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) data[i] = this.#readByte(offset + i);
  }

  /** The guest wrote `data` at `offset` (one register per byte). */
  write(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.#writeByte(offset + i, data[i]!);
  }

  /** Transmit and control writes have no effect a later read could miss if they are applied in order. */
  readonly postedWrites = true;

  /** LSR and MSR reads without side effects (no sticky LSR errors, not in loopback), for vCPU-side polling. */
  peekByte(offset: number): number | undefined {
    if (offset === UART_LSR && this.#lsrErrors === 0) return this.#lsr();
    return undefined;
  }

  get #dlab(): boolean {
    return (this.#lcr & UART_LCR_DLAB) !== 0;
  }

  get #loopback(): boolean {
    return (this.#mcr & UART_MCR_LOOP) !== 0;
  }

  /** Where RBR reads come from: the loopback FIFO in loopback mode, else the host input. */
  get #rx(): ByteQueue {
    return this.#loopback ? this.#loop : this.#input;
  }

  #lsr(): number {
    return (this.#rx.length > 0 ? UART_LSR_DR : 0) | UART_LSR_THRE | UART_LSR_TEMT | this.#lsrErrors;
  }

  /** The pending interrupt with the highest priority (QEMU's serial_update_irq order). */
  #interruptId(): number {
    if (this.#ier & UART_IER_RLSI && this.#lsrErrors & UART_LSR_BRK_ERROR_BITS) return UART_IIR_RLSI;
    if (this.#ier & UART_IER_RDI && this.#rx.length > 0) return UART_IIR_RDI;
    if (this.#ier & UART_IER_THRI && this.#thrIpending) return UART_IIR_THRI;
    // Modem status interrupts need MSR delta bits, which never get set here.
    return UART_IIR_NO_INT;
  }

  #updateIrq(): void {
    const level = this.#interruptId() !== UART_IIR_NO_INT;
    if (level !== this.#irqLevel) {
      this.#irqLevel = level;
      this.#irq.set(level);
    }
  }

  #readByte(offset: number): number {
    switch (offset) {
      case UART_RX: {
        if (this.#dlab) return this.#dll;
        const rx = this.#rx;
        if (rx.length === 0) return 0;
        const v = rx.shift();
        this.#updateIrq();
        return v;
      }
      case UART_IER:
        return this.#dlab ? this.#dlm : this.#ier;
      case UART_IIR: {
        const id = this.#interruptId();
        if (id === UART_IIR_THRI) {
          // Reading IIR while it reports THRE clears that condition (PC16550D table 4; QEMU).
          this.#thrIpending = false;
          this.#updateIrq();
        }
        return id | (this.#fcr & UART_FCR_ENABLE_FIFO ? UART_IIR_FIFO_ENABLED_16550A : 0);
      }
      case UART_LCR:
        return this.#lcr;
      case UART_MCR:
        return this.#mcr;
      case UART_LSR: {
        const v = this.#lsr();
        if (this.#lsrErrors) {
          this.#lsrErrors = 0; // OE/BI clear on LSR read
          this.#updateIrq();
        }
        return v;
      }
      case UART_MSR:
        if (this.#loopback) {
          // Loopback wires the modem outputs to the inputs (PC16550D §8.6; QEMU serial_ioport_read).
          return (
            (this.#mcr & UART_MCR_DTR ? UART_MSR_DSR : 0) |
            (this.#mcr & UART_MCR_RTS ? UART_MSR_CTS : 0) |
            (this.#mcr & UART_MCR_OUT1 ? UART_MSR_RI : 0) |
            (this.#mcr & UART_MCR_OUT2 ? UART_MSR_DCD : 0)
          );
        }
        return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
      case UART_SCR:
        return this.#scr;
      default:
        return 0xff;
    }
  }

  #writeByte(offset: number, v: number): void {
    switch (offset) {
      case UART_RX: // THR
        if (this.#dlab) this.#dll = v;
        else this.#transmit(v);
        return;
      case UART_IER: {
        if (this.#dlab) {
          this.#dlm = v;
          return;
        }
        const ier = v & UART_IER_MASK;
        const changed = this.#ier ^ ier;
        this.#ier = ier;
        // THRI going 0→1 while THR is empty (always) makes THRE pending again (QEMU; Windows and
        // Linux's UART_BUG_THRE test rely on it).
        if (changed & UART_IER_THRI) this.#thrIpending = (ier & UART_IER_THRI) !== 0;
        if (changed) this.#updateIrq();
        return;
      }
      case UART_IIR: // FCR
        this.#writeFcr(v);
        return;
      case UART_LCR:
        this.#lcr = v;
        return;
      case UART_MCR: {
        const mcr = v & UART_MCR_MASK;
        const loopChanged = (this.#mcr ^ mcr) & UART_MCR_LOOP;
        this.#mcr = mcr;
        if (loopChanged) {
          this.#loop.drop(UART_FIFO_LENGTH);
          this.#updateIrq(); // the RBR source changed, so DR may have
        }
        return;
      }
      case UART_SCR:
        this.#scr = v;
        return;
      default:
        // LSR and MSR writes (factory test on real parts) and offsets past 7 are ignored.
        return;
    }
  }

  #transmit(v: number): void {
    this.#thrIpending = false;
    this.#updateIrq();
    if (this.#loopback) {
      if (this.#loop.push(Uint8Array.of(v)) === 0) this.#lsrErrors |= UART_LSR_OE;
    } else {
      this.#onOutput(Uint8Array.of(v));
    }
    // The byte left at once: THR is empty again (QEMU serial_xmit).
    this.#thrIpending = true;
    this.#updateIrq();
  }

  #writeFcr(v: number): void {
    // Toggling FIFO enable clears both FIFOs (PC16550D; QEMU).
    if ((v ^ this.#fcr) & UART_FCR_ENABLE_FIFO) v |= UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT;
    if (v & UART_FCR_CLEAR_RCVR) {
      // The receive FIFO is the first 16 bytes waiting; the rest of the host input is the host
      // side's backlog (as with QEMU's flow-controlled character backends), so it survives.
      this.#rx.drop(UART_FIFO_LENGTH);
      this.#lsrErrors &= ~UART_LSR_BI;
    }
    if (v & UART_FCR_CLEAR_XMIT) this.#thrIpending = true; // QEMU: THRE pending after XMIT clear
    this.#fcr = v & UART_FCR_STORED;
    this.#updateIrq();
  }
}
