/**
 * Linux eventfd(2) objects: the wires of KVM_IOEVENTFD (guest doorbell → host, no exit) and
 * KVM_IRQFD (host → guest interrupt, no ioctl per interrupt). The main thread waits on them with
 * `koffi.node.poll` (KOFFI-NOTES.md: ~30 µs wake-up).
 * @module
 */
import koffi from 'koffi';
import { KvmError } from '../../errors';
import { EFD_CLOEXEC, EFD_NONBLOCK, libc } from './libc';

/** EAGAIN (asm-generic/errno-base.h): a non-blocking eventfd with a zero counter. */
const EAGAIN = 11;
/** The eventfd counter is one u64 (eventfd(2)): reads and writes are exactly 8 bytes. */
const COUNTER_SIZE = 8;

/** Scratch counter for the fd-level helpers (one per thread: each worker loads this module). */
const scratch = new Uint8Array(COUNTER_SIZE);
const scratchView = new DataView(scratch.buffer);

/**
 * Add `n` to the counter of eventfd `fd` (one this thread does not own, e.g. a device thread's
 * duplicate of an irqfd). A counter at its maximum drops the write, as {@link EventFd.signal}.
 */
export function signalEventFd(fd: number, n: bigint = 1n): void {
  scratchView.setBigUint64(0, n, true);
  libc().write(fd, scratch, COUNTER_SIZE);
}

/**
 * Read and reset the counter of non-blocking eventfd `fd`; 0n when it was zero.
 * @throws {@link KvmError} for any other read error
 */
export function takeEventFd(fd: number): bigint {
  const r = libc().read(fd, scratch, COUNTER_SIZE);
  if (r !== COUNTER_SIZE) {
    const errno = libc().errno();
    if (r < 0 && errno !== EAGAIN) throw new KvmError('read(eventfd)', errno);
    return 0n;
  }
  return scratchView.getBigUint64(0, true);
}

/** Open eventfds of this process, for leak checks in tests. */
let openCount = 0;

/**
 * A non-blocking, close-on-exec eventfd. {@link EventFd.signal} adds to its counter (what a device does to
 * raise an irqfd interrupt); {@link EventFd.take} reads and resets it (what the VMM does when an
 * ioeventfd doorbell rang); {@link EventFd.watch} calls back on the main loop whenever it becomes readable.
 */
export class EventFd {
  /** The file descriptor (hand it to KVM_IOEVENTFD / KVM_IRQFD or to another thread). */
  readonly fd: number;
  #poll?: ReturnType<typeof koffi.node.poll>;
  #closed = false;

  /**
   * @param initial The counter's initial value (default 0).
   * @throws {@link KvmError} when eventfd(2) fails (e.g. EMFILE).
   */
  constructor(initial = 0) {
    const fd = libc().eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) throw new KvmError('eventfd', libc().errno());
    this.fd = fd;
    openCount++;
  }

  /** Number of EventFds created and not yet closed in this thread. */
  static get openCount(): number {
    return openCount;
  }

  /** True after {@link EventFd.close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Add `n` (default 1) to the counter: wakes readers and, for an irqfd, injects the interrupt.
   * A counter at its maximum (never in practice) drops the write silently, as EAGAIN means the
   * event is pending anyway.
   */
  signal(n: bigint = 1n): void {
    if (!this.#closed) signalEventFd(this.fd, n);
  }

  /** Read and reset the counter; 0n when it was zero. */
  take(): bigint {
    return this.#closed ? 0n : takeEventFd(this.fd);
  }

  /**
   * Call `onEvent(count)` on the main loop each time the counter becomes non-zero, after reading
   * (and so resetting) it. The watch does not keep the Node.js process alive on its own.
   * Replaces an earlier watch.
   */
  watch(onEvent: (count: bigint) => void): void {
    if (this.#closed) return;
    this.unwatch();
    const handle = koffi.node.poll(this.fd, { readable: true }, () => {
      const n = this.take();
      if (n > 0n) onEvent(n);
    });
    handle.unref();
    this.#poll = handle;
  }

  /** Stop watching (the fd stays open). */
  unwatch(): void {
    if (!this.#poll) return;
    this.#poll.stop();
    this.#poll.close();
    this.#poll = undefined;
  }

  /** Stop watching and close the fd. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.unwatch();
    this.#closed = true;
    libc().close(this.fd);
    openCount--;
  }
}
