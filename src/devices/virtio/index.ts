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
export {
  VirtioConsole, VIRTIO_CONSOLE_F_SIZE, VIRTIO_CONSOLE_F_MULTIPORT, VIRTIO_CONSOLE_F_EMERG_WRITE,
  CONSOLE_RECEIVEQ, CONSOLE_TRANSMITQ, CONSOLE_MAX_OUTPUT_CHUNK,
} from './console/VirtioConsole';
export type { VirtioConsoleOptions } from './console/VirtioConsole';
export * from './block';
export * from './balloon';
export * from './fs';
