/**
 * The flattened device tree (DTB) format: constants shared by {@link FdtWriter} and the reader,
 * the name rules of the devicetree specification, and the error type for both.
 *
 * Sources: Devicetree Specification v0.4 (devicetree.org), chapter 5 "Flattened Devicetree (DTB)
 * Format" for the layout, section 2.2 for names.
 * @module
 */

import { KvmkitError } from '../../errors';

/** Header magic, stored big-endian (spec v0.4 §5.2 `magic`). */
export const FDT_MAGIC = 0xd00dfeed;
/** The format version we write (spec v0.4 §5.2: "version ... 17"). */
export const FDT_VERSION = 17;
/** The lowest version a version-17 blob is backwards compatible with (spec v0.4 §5.2: 16). */
export const FDT_LAST_COMP_VERSION = 16;
/** Size of the version-17 header: ten big-endian u32 fields (spec v0.4 §5.2). */
export const FDT_HEADER_SIZE = 40;
/** The memory reservation block is 8-byte aligned; each entry is two u64 (spec v0.4 §5.3). */
export const FDT_RESERVE_ENTRY_SIZE = 16;

/** Structure block tokens, big-endian u32, each 4-byte aligned (spec v0.4 §5.4.1). */
export const FDT_BEGIN_NODE = 0x1;
export const FDT_END_NODE = 0x2;
export const FDT_PROP = 0x3;
export const FDT_NOP = 0x4;
export const FDT_END = 0x9;

/** Byte offsets of the header fields (spec v0.4 §5.2, `struct fdt_header`). */
export const FdtHeaderOffset = {
  magic: 0,
  totalsize: 4,
  off_dt_struct: 8,
  off_dt_strings: 12,
  off_mem_rsvmap: 16,
  version: 20,
  last_comp_version: 24,
  boot_cpuid_phys: 28,
  size_dt_strings: 32,
  size_dt_struct: 36,
} as const;

/** A node or property name, or the structure of a blob, broke a rule of the devicetree format. */
export class FdtError extends KvmkitError {}

/** One entry of the memory reservation block (spec v0.4 §5.3). */
export interface FdtReservation {
  address: bigint;
  size: bigint;
}

/** Maximum length of a node-name (the part before `@`) and of a property name (spec v0.4 §2.2.1, §2.2.4). */
export const FDT_MAX_NAME_LENGTH = 31;

/** Node name characters, Table 2.1 of spec v0.4: digits, letters, `,` `.` `_` `+` `-`. */
const NODE_NAME_CHARS = /^[0-9a-zA-Z,._+-]+$/;
/** Property name characters, Table 2.2 of spec v0.4: Table 2.1 plus `?` and `#`. */
const PROPERTY_NAME_CHARS = /^[0-9a-zA-Z,._+?#-]+$/;

/**
 * Why `name` is not a valid node name (`node-name[@unit-address]`, spec v0.4 §2.2.1), or
 * `undefined` when it is. The root node's empty name is handled by the writer, not here.
 */
export function nodeNameProblem(name: string): string | undefined {
  const at = name.indexOf('@');
  const base = at < 0 ? name : name.slice(0, at);
  const unit = at < 0 ? undefined : name.slice(at + 1);
  if (base.length === 0) return 'the node-name before "@" is empty';
  if (base.length > FDT_MAX_NAME_LENGTH) {
    return `the node-name "${base}" is ${base.length} characters long; the devicetree spec v0.4 §2.2.1 allows 1 to ${FDT_MAX_NAME_LENGTH}`;
  }
  if (!NODE_NAME_CHARS.test(base)) {
    return `the node-name "${base}" has a character outside 0-9 a-z A-Z , . _ + - (devicetree spec v0.4 Table 2.1)`;
  }
  if (!/^[a-zA-Z]/.test(base)) return `the node-name "${base}" must start with a letter (devicetree spec v0.4 §2.2.1)`;
  if (unit !== undefined) {
    if (unit.length === 0) return 'the unit-address after "@" is empty';
    if (!NODE_NAME_CHARS.test(unit)) {
      return `the unit-address "${unit}" has a character outside 0-9 a-z A-Z , . _ + - (devicetree spec v0.4 Table 2.1)`;
    }
  }
  return undefined;
}

/** Why `name` is not a valid property name (spec v0.4 §2.2.4.1), or `undefined` when it is. */
export function propertyNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a property name cannot be empty';
  if (name.length > FDT_MAX_NAME_LENGTH) {
    return `the property name "${name}" is ${name.length} characters long; the devicetree spec v0.4 §2.2.4.1 allows 1 to ${FDT_MAX_NAME_LENGTH}`;
  }
  if (!PROPERTY_NAME_CHARS.test(name)) {
    return `the property name "${name}" has a character outside 0-9 a-z A-Z , . _ + ? # - (devicetree spec v0.4 Table 2.2)`;
  }
  return undefined;
}

/** Round `n` up to a multiple of 4 (structure block alignment, spec v0.4 §5.4). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}
