/**
 * virtio-console (virtio 1.2 §5.3) with a single port and no VIRTIO_CONSOLE_F_MULTIPORT: the
 * guest's `hvc0`, usable as `console=hvc0`. Guest output arrives on transmitq and goes to
 * `onOutput`; host input given to `input()` waits until the guest posts buffers on receiveq.
 * @module
 */
import { ConfigError } from '../../../errors';
import { VIRTIO_ID_CONSOLE, VIRTQUEUE_FEATURES } from '../constants';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';
import { VirtQueueError } from '../VirtQueue';

/** `cols` and `rows` are valid (§5.3.3). */
export const VIRTIO_CONSOLE_F_SIZE = 1n << 0n;
/** Multiple ports and control queues (§5.3.3). Not offered. */
export const VIRTIO_CONSOLE_F_MULTIPORT = 1n << 1n;
/** `emerg_wr` accepts single characters before queues exist (§5.3.3, §5.3.5). */
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 1n << 2n;

/** receiveq(port0) (§5.3.2). */
export const CONSOLE_RECEIVEQ = 0;
/** transmitq(port0) (§5.3.2). */
export const CONSOLE_TRANSMITQ = 1;

// struct virtio_console_config (§5.3.4): le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr.
const CONFIG_COLS = 0;
const CONFIG_ROWS = 2;
const CONFIG_MAX_NR_PORTS = 4;
const CONFIG_EMERG_WR = 8;
const CONFIG_SIZE = 12;

/** Guest output taken from one transmit request at most; Linux writes at most a page per request. */
export const CONSOLE_MAX_OUTPUT_CHUNK = 1 << 20;

/** Options for {@link VirtioConsole}. */
export interface VirtioConsoleOptions {
  /** A name for this device in errors and events. */
  id?: string;
  /** Console width; with `rows`, offered as VIRTIO_CONSOLE_F_SIZE (1..65535). */
  cols?: number;
  /** Console height; with `cols` (1..65535). */
  rows?: number;
  /** Receives every chunk the guest writes (a copy, safe to keep). */
  onOutput?: (bytes: Uint8Array) => void;
  /** Host input kept while the guest has no receive buffers; beyond it, input is dropped. Default 1 MiB. */
  maxPendingInput?: number;
}

/** The console device: `new VirtioConsole({ onOutput: (b) => process.stdout.write(b) })`. */
export class VirtioConsole extends VirtioDevice {
  readonly deviceKind = 'virtio-console';
  readonly deviceType = VIRTIO_ID_CONSOLE; // §5.3.1
  readonly queueMaxSizes = [256, 256]; // receiveq, transmitq (§5.3.2)
  /** Where guest output goes; the VM sets it to feed its console event. */
  onOutput: ((bytes: Uint8Array) => void) | undefined;
  /** Bytes of host input dropped because `maxPendingInput` was reached. */
  droppedInput = 0;

  private readonly maxPendingInput: number;
  private readonly offersSize: boolean;
  private size: { cols: number; rows: number } | undefined;
  private active: VirtioActivation | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(readonly options: VirtioConsoleOptions = {}) {
    super();
    const { cols, rows } = options;
    if ((cols === undefined) !== (rows === undefined)) throw new ConfigError('virtio-console cols/rows', 'must be given together', { cols, rows });
    if (cols !== undefined && rows !== undefined) {
      checkDimension('cols', cols);
      checkDimension('rows', rows);
      this.size = { cols, rows };
    }
    const max = options.maxPendingInput ?? 1 << 20;
    if (!Number.isSafeInteger(max) || max < 0) throw new ConfigError('virtio-console maxPendingInput', 'must be a byte count >= 0', max);
    this.maxPendingInput = max;
    this.offersSize = this.size !== undefined;
    this.onOutput = options.onOutput;
  }

  deviceFeatures(): bigint {
    return VIRTQUEUE_FEATURES | VIRTIO_CONSOLE_F_EMERG_WRITE | (this.offersSize ? VIRTIO_CONSOLE_F_SIZE : 0n);
  }

  /** struct virtio_console_config (§5.3.4). */
  override configSpace(): Uint8Array {
    const c = new Uint8Array(CONFIG_SIZE);
    const v = new DataView(c.buffer);
    v.setUint16(CONFIG_COLS, this.size?.cols ?? 0, true);
    v.setUint16(CONFIG_ROWS, this.size?.rows ?? 0, true);
    v.setUint32(CONFIG_MAX_NR_PORTS, 1, true); // only meaningful with MULTIPORT
    return c;
  }

  /** A write to `emerg_wr` outputs its low byte, even before the queues exist (§5.3.5.1). */
  override writeConfig(offset: number, data: Uint8Array): void {
    const at = CONFIG_EMERG_WR - offset;
    if (at >= 0 && at < data.length) this.onOutput?.(Uint8Array.of(data[at]!));
  }

  activate(activation: VirtioActivation): void {
    this.active = activation;
    this.deliverInput();
  }

  processQueue(index: number): void {
    if (index === CONSOLE_RECEIVEQ) this.deliverInput();
    else if (index === CONSOLE_TRANSMITQ) this.takeOutput();
  }

  reset(): void {
    this.active = undefined; // pending host input is kept for the next driver
  }

  /** Host input for the guest (strings are sent as UTF-8). Delivered as receive buffers allow. */
  input(data: Uint8Array | string): void {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data.slice();
    const room = Math.max(0, this.maxPendingInput - this.pendingBytes);
    const kept = bytes.length <= room ? bytes : bytes.subarray(0, room);
    this.droppedInput += bytes.length - kept.length;
    if (kept.length > 0) {
      this.pending.push(kept);
      this.pendingBytes += kept.length;
    }
    try {
      this.deliverInput();
    } catch (e) {
      // Not inside a transport call: report a broken receiveq ourselves (§2.1.2) and keep the input.
      if (!(e instanceof VirtQueueError && e.fatal)) throw e;
      this.active?.interrupt.needsReset?.(e);
    }
  }

  /** Bytes of host input waiting for receive buffers. */
  get pendingInput(): number {
    return this.pendingBytes;
  }

  /**
   * Change the console size. When VIRTIO_CONSOLE_F_SIZE was offered (`cols`/`rows` given to the
   * constructor) and negotiated, the driver hears of it by a configuration change (§5.3.6 item 3).
   */
  resize(cols: number, rows: number): void {
    checkDimension('cols', cols);
    checkDimension('rows', rows);
    this.size = { cols, rows };
    if (this.active && (this.active.features & VIRTIO_CONSOLE_F_SIZE) !== 0n) this.active.interrupt.signalConfigChange();
  }

  /** Fill the guest's receive buffers with pending input (§5.3.6 item 2). */
  private deliverInput(): void {
    const queue = this.active?.queues[CONSOLE_RECEIVEQ];
    if (!queue || this.pendingBytes === 0) return;
    const chains = queue.drain();
    while (this.pendingBytes > 0) {
      const next = chains.next();
      if (next.done) break;
      const chain = next.value;
      let written = 0; // a readable buffer on receiveq is a driver error (§5.3.6.1): ignored
      while (this.pending.length > 0 && written < chain.writableLength) {
        const first = this.pending[0]!;
        const n = chain.writeBytes(written, first);
        written += n;
        this.pendingBytes -= n;
        if (n === first.length) this.pending.shift();
        else this.pending[0] = first.subarray(n);
      }
      queue.addUsed(chain.head, written);
    }
    if (queue.shouldNotify()) this.active!.interrupt.signalUsedQueue(CONSOLE_RECEIVEQ);
  }

  /** Hand every transmit buffer's bytes to `onOutput` (§5.3.6 item 1). */
  private takeOutput(): void {
    const queue = this.active?.queues[CONSOLE_TRANSMITQ];
    if (!queue) return;
    for (const chain of queue.drain()) {
      const bytes = new Uint8Array(Math.min(chain.readableLength, CONSOLE_MAX_OUTPUT_CHUNK));
      chain.readBytes(0, bytes); // writable buffers on transmitq are a driver error: nothing written
      queue.addUsed(chain.head, 0);
      if (bytes.length > 0) this.onOutput?.(bytes);
    }
    if (queue.shouldNotify()) this.active!.interrupt.signalUsedQueue(CONSOLE_TRANSMITQ);
  }
}

function checkDimension(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new ConfigError(`virtio-console ${name}`, 'must be an integer from 1 to 65535', v);
}
