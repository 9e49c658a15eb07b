/**
 * Errors specific to device models. Guest-triggered conditions never throw (devices answer them
 * like hardware would); these are for mistakes made by the code that builds the machine.
 * @module
 */

import { KvmkitError } from '../errors';

/** A bus range was inserted over a range another device already holds. */
export class BusOverlapError extends KvmkitError {
  constructor(
    /** Name of the device being inserted. */
    readonly device: string,
    /** Start of the range being inserted. */
    readonly base: number,
    /** Length of the range being inserted. */
    readonly length: number,
    /** Name of the device already holding part of that range. */
    readonly existing: string,
    /** Start of the existing range. */
    readonly existingBase: number,
    /** Length of the existing range. */
    readonly existingLength: number,
  ) {
    super(
      `cannot map ${device} at ${hexRange(base, length)}: it overlaps ${existing} at ` +
        `${hexRange(existingBase, existingLength)}; give one of them another address`,
    );
  }
}

function hexRange(base: number, length: number): string {
  return `[0x${base.toString(16)}, 0x${(base + length).toString(16)})`;
}
