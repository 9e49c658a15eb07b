/**
 * Helpers for test suites that boot Linux guests: a cpio `newc` writer and an initramfs builder.
 * @module
 */

export {
  CpioWriter,
  normalizeCpioName,
  CPIO_NEWC_MAGIC,
  CPIO_NEWC_HEADER_SIZE,
  CPIO_TRAILER,
  CPIO_MAX_NAME_BYTES,
} from './CpioWriter';
export type {
  CpioWriterOptions,
  CpioEntryOptions,
  CpioOutputOptions,
  CpioEntryKind,
  CpioEntryInfo,
} from './CpioWriter';
export { Initramfs } from './Initramfs';
export type { InitramfsOptions, AddTreeOptions, InitScriptOptions } from './Initramfs';
