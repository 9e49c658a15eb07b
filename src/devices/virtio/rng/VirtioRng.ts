/**
 * virtio-rng, the entropy device (virtio 1.2 §5.4): the guest posts device-writable buffers on
 * its one queue and the device fills them with random bytes from the host's CSPRNG. In the guest
 * it is /dev/hwrng (`rng_current` names virtio_rng).
 * @module
 */
import { randomFillSync } from 'node:crypto';
import { VIRTIO_ID_RNG, VIRTQUEUE_FEATURES } from '../constants';
import { VirtioDevice, type VirtioActivation } from '../VirtioDevice';

/** Bytes served per request at most; the device MAY use less than the whole buffer (§5.4.6.2). */
export const RNG_MAX_REQUEST_BYTES = 1 << 20;

/** The entropy device: `new VirtioRng()`. */
export class VirtioRng extends VirtioDevice {
  readonly deviceKind = 'virtio-rng';
  readonly deviceType = VIRTIO_ID_RNG; // §5.4.1
  readonly queueMaxSizes = [256]; // requestq (§5.4.2)
  private active: VirtioActivation | undefined;

  /** @param options.id a name for this device in errors and events */
  constructor(readonly options: { id?: string } = {}) {
    super();
  }

  /** No device-specific feature bits (§5.4.3), no configuration space (§5.4.4). */
  deviceFeatures(): bigint {
    return VIRTQUEUE_FEATURES;
  }

  activate(activation: VirtioActivation): void {
    this.active = activation;
  }

  processQueue(index: number): void {
    const queue = this.active?.queues[index];
    if (!this.active || index !== 0 || !queue) return;
    for (const chain of queue.drain()) {
      let filled = 0; // readable buffers are a driver error (§5.4.6.1): ignored
      for (const view of chain.writableViews(0, RNG_MAX_REQUEST_BYTES)) filled += randomFillSync(view).length;
      queue.addUsed(chain.head, filled);
    }
    if (queue.shouldNotify()) this.active.interrupt.signalUsedQueue(0);
  }

  reset(): void {
    this.active = undefined;
  }
}
