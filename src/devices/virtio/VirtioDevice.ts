/**
 * The base every virtio device extends (virtio 1.2 §2 "Basic Facilities of a Virtio Device").
 * A device is transport-independent: the virtio-pci transport (`virtio/pci/`) negotiates features,
 * configures queues, and calls {@link VirtioDevice.activate} when the driver sets DRIVER_OK,
 * {@link VirtioDevice.processQueue} on a doorbell and {@link VirtioDevice.reset} on a device reset.
 *
 * Division of work with the transport:
 * - the transport creates one {@link VirtQueue} per entry of `queueMaxSizes`, copies the common
 *   configuration into it (`size`, `descTable`, `availRing`, `usedRing`, `ready`, `msixVector`),
 *   sets `mem`, applies the negotiated features with `setFeatures()` and calls `validate()` before
 *   DRIVER_OK is honoured; a `VirtQueueError` there (or a fatal one thrown out of
 *   `processQueue`) means DEVICE_NEEDS_RESET (§2.1.2);
 * - the device pops chains, returns them with `addUsed()`, and calls
 *   `interrupt.signalUsedQueue(i)` when `queue.shouldNotify()` says so.
 * @module
 */
import type { VmDevice } from '../VmDevice';
import type { GuestMemory } from '../../memory/GuestMemory';
import type { VirtQueue } from './VirtQueue';

// VIRTIO_F_VERSION_1 (§6 bit 32), VIRTIO_RING_F_INDIRECT_DESC (bit 28), VIRTIO_RING_F_EVENT_IDX
// (bit 29): defined once, in constants.ts, with the other virtio numbers.
export { VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX } from './constants';

/** How a device raises interrupts; the transport implements it (MSI-X through irqfd, or INTx). */
export interface VirtioInterrupt {
  /** The device put buffers in queue `index`'s used ring (honouring EVENT_IDX is the queue's job). */
  signalUsedQueue(index: number): void;
  /** The device configuration changed (e.g. a disk's capacity). */
  signalConfigChange(): void;
  /**
   * Optional: the eventfd whose signal is all {@link signalUsedQueue} would do for queue `index`
   * now (MSI-X on, its vector unmasked and routed), for a device thread that raises its interrupts
   * itself; undefined when the transport must do it (INTx, masked vector: pending bit). The
   * answer changes when the driver reprograms MSI-X: the transport calls
   * {@link VirtioDevice.interruptRoutingChanged} then. The fd is the transport's: a device that
   * keeps it past {@link VirtioDevice.close} duplicates it.
   */
  usedQueueIrqfd?(index: number): number | undefined;
  /**
   * The device hit an error it cannot recover from without a reset, outside a `processQueue` call
   * (e.g. a fatal `VirtQueueError` met when an asynchronous I/O completes). The transport sets
   * DEVICE_NEEDS_RESET and, after DRIVER_OK, sends a configuration change notification (§2.1.2).
   * Optional: when absent, devices just stop using the queue.
   */
  needsReset?(cause: Error): void;
}

/** What a device receives when the driver sets DRIVER_OK. */
export interface VirtioActivation {
  mem: GuestMemory;
  /** The queues the driver enabled, index = queue number (a disabled queue is undefined). */
  queues: (VirtQueue | undefined)[];
  interrupt: VirtioInterrupt;
  /** Features the driver accepted (a subset of {@link VirtioDevice.deviceFeatures}). */
  features: bigint;
}

/** A virtio device model. One file per device plus its tests. */
export abstract class VirtioDevice implements VmDevice {
  /** Kind shown in errors and events (`virtio-rng`). */
  abstract readonly deviceKind: string;
  /** Virtio device ID (virtio 1.2 §5: 2 = block, 3 = console, 4 = entropy, 5 = balloon, 26 = fs). */
  abstract readonly deviceType: number;
  /** Maximum size of each queue, index = queue number. */
  abstract readonly queueMaxSizes: readonly number[];

  /** Feature bits this device offers (include {@link VIRTIO_F_VERSION_1}). */
  abstract deviceFeatures(): bigint;

  /** The device-specific configuration space (virtio 1.2 §4.1.4.6), little-endian bytes. */
  configSpace(): Uint8Array {
    return new Uint8Array(0);
  }

  /** A driver write into the device-specific configuration space. Default: ignored. */
  writeConfig(offset: number, data: Uint8Array): void {
    void offset;
    void data;
  }

  /**
   * Offered once, before the driver starts, by a transport that takes doorbells from eventfds
   * (KVM_IOEVENTFD; index = queue number): a device that waits on them itself, in its own thread,
   * returns true and the transport stops watching them (doorbells that still reach the transport,
   * e.g. as MMIO writes, come through {@link VirtioDevice.processQueue}). The transport keeps the
   * fds and closes them when the VM ends, after {@link VirtioDevice.close}; a device that keeps
   * them longer duplicates them. Default: false (the transport calls processQueue).
   */
  takeDoorbells(fds: readonly number[]): boolean {
    void fds;
    return false;
  }

  /**
   * After activation, the driver changed how interrupts are delivered (MSI-X enable, masks,
   * table entries, queue vectors): a device that caches {@link VirtioInterrupt.usedQueueIrqfd}
   * asks again. Default: nothing.
   */
  interruptRoutingChanged(): void {}

  /**
   * The driver set DRIVER_OK: start serving the queues. The queues are validated and carry the
   * negotiated ring features. The device must not touch them before this call (§2.1.2).
   */
  abstract activate(activation: VirtioActivation): void;

  /**
   * The driver notified queue `index` (a doorbell). A per-chain `VirtQueueError` is the device's
   * to handle (return the chain, e.g. with `VirtQueue.drain()`); a fatal one may be thrown out of
   * here and the transport sets DEVICE_NEEDS_RESET.
   */
  abstract processQueue(index: number): void;

  /**
   * Device reset by the driver (status 0): drop all queue state and in-flight work. After it, the
   * device must not touch the old queues or send notifications (§2.4.1); the transport resets the
   * `VirtQueue` objects themselves.
   */
  abstract reset(): void;

  /** The VM is ending: release host resources (files, workers). Default: reset(). */
  close(): void | Promise<void> {
    this.reset();
  }
}
