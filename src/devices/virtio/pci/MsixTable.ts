/**
 * MSI-X (PCI Local Bus spec 3.0 §6.8.2): the capability's Message Control bits, the vector table
 * and the Pending Bit Array, as the guest sees them through config space and a memory BAR.
 * Delivery is left to a {@link MsixVectorSink} (on KVM: one GSI routed to the vector's message
 * and an irqfd per vector), which this model tells when a vector's message becomes deliverable
 * or changes, and asks to fire unmasked vectors. Masked vectors collect a pending bit instead
 * and fire when unmasked (§6.8.2.9, "Pending Bits").
 * @module
 */

/** An MSI message: a dword write of `data` to `address` (PCI 3.0 §6.8.2.7–§6.8.2.8). */
export interface MsiMessage {
  /** Message Address, Message Upper Address << 32 (x86: 0xFEEx_xxxx). */
  readonly address: bigint;
  /** Message Data (x86: vector in bits 7:0). */
  readonly data: number;
}

/** Where MSI-X messages go. Implemented by the VM (GSI routing + irqfd on KVM). */
export interface MsixVectorSink {
  /**
   * Vector `vector` is deliverable (MSI-X enabled, function and vector unmasked) and sends
   * `message`; called again whenever the message changes. Cheap when unchanged.
   */
  route(vector: number, message: MsiMessage): void;
  /** Send vector `vector`'s message now. Only called for a routed, deliverable vector. */
  fire(vector: number): void;
  /**
   * Optional: an eventfd whose signal sends vector `vector`'s routed message as {@link fire} does
   * (KVM: the vector's irqfd), for a device thread that raises interrupts without the main thread.
   */
  irqfd?(vector: number): number | undefined;
}

/** Size of one MSI-X table entry: Message Address, Upper Address, Data, Vector Control (PCI 3.0 §6.8.2.6). */
export const MSIX_TABLE_ENTRY_SIZE = 16;
/** Largest table (Message Control Table Size is 11 bits, N-1 encoded: PCI 3.0 §6.8.2.3). */
export const MSIX_MAX_VECTORS = 2048;
/** Message Control bit 15: MSI-X Enable (PCI 3.0 §6.8.2.3). */
export const MSIX_CONTROL_ENABLE = 0x8000;
/** Message Control bit 14: Function Mask (PCI 3.0 §6.8.2.3). */
export const MSIX_CONTROL_FUNCTION_MASK = 0x4000;
/** Message Control bits 10:0: Table Size − 1 (PCI 3.0 §6.8.2.3). */
export const MSIX_CONTROL_TABLE_SIZE = 0x07ff;
/** Vector Control bit 0: Mask Bit, set after reset (PCI 3.0 §6.8.2.9). */
export const MSIX_VECTOR_CONTROL_MASK = 0x1;

// Offsets inside a table entry (PCI 3.0 figure 6-11).
const ENTRY_ADDRESS_LO = 0;
const ENTRY_ADDRESS_HI = 4;
const ENTRY_DATA = 8;
const ENTRY_VECTOR_CONTROL = 12;

/** A no-op sink for a table whose machine wiring is not attached yet. */
const NO_SINK: MsixVectorSink = { route() {}, fire() {} };

/**
 * The MSI-X state of one function. Guest accesses of any size and offset are answered (reads
 * outside the table or PBA give 0, writes there are dropped); nothing here throws on guest input.
 */
export class MsixTable {
  /** Number of vectors (1..2048). */
  readonly size: number;
  /** Where deliverable vectors go; the VM sets it when it wires the device. */
  sink: MsixVectorSink = NO_SINK;
  readonly #table: Uint8Array;
  readonly #view: DataView;
  readonly #pba: Uint8Array;
  /** The message last given to the sink for each vector. */
  readonly #routed: (MsiMessage | undefined)[];
  #enabled = false;
  #functionMasked = false;

  /** @param size Number of vectors, 1..2048. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1 || size > MSIX_MAX_VECTORS) {
      throw new RangeError(`MSI-X table size must be an integer from 1 to ${MSIX_MAX_VECTORS}, got ${size}`);
    }
    this.size = size;
    this.#table = new Uint8Array(size * MSIX_TABLE_ENTRY_SIZE);
    this.#view = new DataView(this.#table.buffer);
    this.#pba = new Uint8Array(MsixTable.pbaBytes(size));
    this.#routed = new Array(size);
    for (let v = 0; v < size; v++) this.#view.setUint32(v * MSIX_TABLE_ENTRY_SIZE + ENTRY_VECTOR_CONTROL, MSIX_VECTOR_CONTROL_MASK, true);
  }

  /** Bytes of the vector table for `size` vectors. */
  static tableBytes(size: number): number {
    return size * MSIX_TABLE_ENTRY_SIZE;
  }

  /** Bytes of the PBA for `size` vectors: whole qwords (PCI 3.0 §6.8.2.10). */
  static pbaBytes(size: number): number {
    return Math.ceil(size / 64) * 8;
  }

  /** MSI-X Enable, as last written through Message Control. */
  get enabled(): boolean {
    return this.#enabled;
  }

  /** Function Mask, as last written through Message Control. */
  get functionMasked(): boolean {
    return this.#functionMasked;
  }

  /** The Message Control value the capability shows: Table Size − 1 plus the two writable bits. */
  get control(): number {
    return (this.size - 1) | (this.#enabled ? MSIX_CONTROL_ENABLE : 0) | (this.#functionMasked ? MSIX_CONTROL_FUNCTION_MASK : 0);
  }

  /**
   * Apply a guest write of Message Control (only Enable and Function Mask are writable). Turning
   * the function on or unmasking it routes the unmasked vectors and fires their pending bits.
   */
  setControl(control: number): void {
    this.#enabled = (control & MSIX_CONTROL_ENABLE) !== 0;
    this.#functionMasked = (control & MSIX_CONTROL_FUNCTION_MASK) !== 0;
    for (let v = 0; v < this.size; v++) this.#sync(v);
  }

  /** True when vector `v` is masked by its Mask Bit or the Function Mask (or out of range). */
  isMasked(v: number): boolean {
    if (!this.#valid(v)) return true;
    return this.#functionMasked || (this.#entryControl(v) & MSIX_VECTOR_CONTROL_MASK) !== 0;
  }

  /**
   * The eventfd that delivers vector `v` right now (MSI-X on, function and vector unmasked, the
   * sink routed it), or undefined when {@link trigger} would do more (a pending bit) or nothing.
   */
  directIrqfd(v: number): number | undefined {
    if (!this.#enabled || this.isMasked(v)) return undefined;
    return this.sink.irqfd?.(v);
  }

  /** The Pending Bit of vector `v`. */
  isPending(v: number): boolean {
    return this.#valid(v) && (this.#pba[v >> 3]! & (1 << (v & 7))) !== 0;
  }

  /** The message vector `v` currently holds in the table. */
  message(v: number): MsiMessage {
    const o = v * MSIX_TABLE_ENTRY_SIZE;
    const lo = this.#view.getUint32(o + ENTRY_ADDRESS_LO, true);
    const hi = this.#view.getUint32(o + ENTRY_ADDRESS_HI, true);
    return { address: (BigInt(hi) << 32n) | BigInt(lo), data: this.#view.getUint32(o + ENTRY_DATA, true) };
  }

  /**
   * Signal vector `v`: fired through the sink when deliverable, else its pending bit is set.
   * @returns false when MSI-X is disabled or `v` is not a vector of the table (e.g. 0xFFFF,
   *   VIRTIO_MSI_NO_VECTOR): nothing happens then.
   */
  trigger(v: number): boolean {
    if (!this.#enabled || !this.#valid(v)) return false;
    if (this.isMasked(v)) {
      this.#pba[v >> 3]! |= 1 << (v & 7);
      return true;
    }
    this.sink.fire(v);
    return true;
  }

  /** A guest read of the vector table at byte `offset` (any size; outside the table reads 0). */
  readTable(offset: number, data: Uint8Array): void {
    readBytes(this.#table, offset, data);
  }

  /**
   * A guest write into the vector table. Bytes outside the table are dropped; Vector Control
   * keeps only its Mask Bit (the rest is reserved, read as 0); Message Address bits 1:0 read 0.
   * A change of mask or message re-routes the vector; unmasking fires a pending bit.
   */
  writeTable(offset: number, data: Uint8Array): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.#table.length) return;
    const n = Math.min(data.length, this.#table.length - offset);
    this.#table.set(data.subarray(0, n), offset);
    const first = Math.floor(offset / MSIX_TABLE_ENTRY_SIZE);
    const last = Math.floor((offset + n - 1) / MSIX_TABLE_ENTRY_SIZE);
    for (let v = first; v <= last; v++) {
      const o = v * MSIX_TABLE_ENTRY_SIZE;
      this.#view.setUint32(o + ENTRY_VECTOR_CONTROL, this.#entryControl(v) & MSIX_VECTOR_CONTROL_MASK, true);
      this.#view.setUint32(o + ENTRY_ADDRESS_LO, this.#view.getUint32(o + ENTRY_ADDRESS_LO, true) & ~3, true);
      this.#sync(v);
    }
  }

  /** A guest read of the PBA (any size; outside reads 0). The PBA is read-only: writes are dropped. */
  readPba(offset: number, data: Uint8Array): void {
    readBytes(this.#pba, offset, data);
  }

  /** Back to the reset state: disabled, every vector masked, no pending bits, nothing routed. */
  reset(): void {
    this.#enabled = false;
    this.#functionMasked = false;
    this.#table.fill(0);
    this.#pba.fill(0);
    this.#routed.fill(undefined);
    for (let v = 0; v < this.size; v++) this.#view.setUint32(v * MSIX_TABLE_ENTRY_SIZE + ENTRY_VECTOR_CONTROL, MSIX_VECTOR_CONTROL_MASK, true);
  }

  #valid(v: number): boolean {
    return Number.isInteger(v) && v >= 0 && v < this.size;
  }

  #entryControl(v: number): number {
    return this.#view.getUint32(v * MSIX_TABLE_ENTRY_SIZE + ENTRY_VECTOR_CONTROL, true);
  }

  /** Route vector `v` if it is deliverable and its message changed; fire its pending bit. */
  #sync(v: number): void {
    if (!this.#enabled || this.isMasked(v)) return;
    const msg = this.message(v);
    const old = this.#routed[v];
    if (!old || old.address !== msg.address || old.data !== msg.data) {
      this.#routed[v] = msg;
      this.sink.route(v, msg);
    }
    if (this.isPending(v)) {
      this.#pba[v >> 3]! &= ~(1 << (v & 7));
      this.sink.fire(v);
    }
  }
}

/** Copy `data.length` bytes of `src` from `offset`, zeros where `src` ends. */
function readBytes(src: Uint8Array, offset: number, data: Uint8Array): void {
  data.fill(0);
  if (!Number.isSafeInteger(offset) || offset < 0 || offset >= src.length) return;
  data.set(src.subarray(offset, Math.min(src.length, offset + data.length)));
}
