/**
 * What a user-constructed device passed in `devices: [...]` is. Virtio devices implement it in the
 * virtio-pci release; the VM rejects anything else with a clear error.
 * @module
 */

/** A device a user adds to a VirtualMachine. */
export interface VmDevice {
  /** What kind of device this is (`virtio-block`, `virtio-rng`...). */
  readonly deviceKind: string;
}
