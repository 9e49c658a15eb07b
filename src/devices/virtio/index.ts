/**
 * Virtio devices and the split virtqueue they share (virtio 1.2). The virtio-pci transport
 * (`./pci`) carries them; a new device is one file under its own folder plus its tests.
 * @module
 */
export * from './constants';
export { VirtioDevice } from './VirtioDevice';
export type { VirtioActivation, VirtioInterrupt } from './VirtioDevice';
export { VirtQueue, VirtQueueError } from './VirtQueue';
export type { VirtQueueOptions } from './VirtQueue';
export { DescriptorChain, guestViews } from './DescriptorChain';
export type { DescriptorBuffer } from './DescriptorChain';
export { VirtioRng, RNG_MAX_REQUEST_BYTES } from './rng/VirtioRng';
