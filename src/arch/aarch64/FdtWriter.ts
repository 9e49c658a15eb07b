/**
 * A sequential writer of flattened device tree blobs (DTB format version 17), our own code after
 * the Devicetree Specification v0.4 chapter 5. Nodes are opened and closed in order and each
 * node's properties come before its children, as in the structure block itself (spec v0.4 §5.4.2).
 * @module
 */

import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_HEADER_SIZE,
  FDT_LAST_COMP_VERSION,
  FDT_MAGIC,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FDT_VERSION,
  FdtError,
  FdtHeaderOffset,
  type FdtReservation,
  align4,
  nodeNameProblem,
  propertyNameProblem,
} from './Fdt';

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** Options of {@link FdtWriter}. */
export interface FdtWriterOptions {
  /** `boot_cpuid_phys` of the header: the physical id (`reg`) of the boot CPU. Default 0. */
  bootCpuidPhys?: number;
}

interface OpenNode {
  path: string;
  propertyNames: Set<string>;
  childNames: Set<string>;
  hasChildren: boolean;
}

/** A growable big-endian byte buffer. */
class ByteSink {
  private bytes = new Uint8Array(1024);
  private view = new DataView(this.bytes.buffer);
  length = 0;

  private reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + extra) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
    this.view = new DataView(bigger.buffer);
  }

  u32(value: number): void {
    this.reserve(4);
    this.view.setUint32(this.length, value);
    this.length += 4;
  }

  append(data: Uint8Array): void {
    this.reserve(data.length);
    this.bytes.set(data, this.length);
    this.length += data.length;
  }

  /** Zero bytes up to the next multiple of 4. */
  pad4(): void {
    const padded = align4(this.length);
    this.reserve(padded - this.length);
    this.bytes.fill(0, this.length, padded);
    this.length = padded;
  }

  contents(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }
}

const utf8 = new TextEncoder();

/** NUL-terminated UTF-8 bytes of `s`; `what` names it in the error if `s` contains a NUL. */
function cString(s: string, what: string): Uint8Array {
  if (s.includes('\0')) throw new FdtError(`${what} contains a NUL character; devicetree strings are NUL-terminated`);
  const encoded = utf8.encode(s);
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  return out;
}

function toU64(value: number | bigint, what: string): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new FdtError(`${what} must be a non-negative safe integer, got ${value}`);
    return BigInt(value);
  }
  if (value < 0n || value > U64_MAX) throw new FdtError(`${what} must fit in 64 bits, got ${value}`);
  return value;
}

function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new FdtError(`${what} must be an integer from 0 to 0xffffffff, got ${value}`);
  }
}

/**
 * Builds a DTB. Usage: `new FdtWriter().beginNode('')` for the root, properties, child nodes,
 * `endNode()` for each, then {@link FdtWriter.finish}. Names are checked against the devicetree
 * spec v0.4 §2.2; unbalanced nodes, duplicate names and properties after child nodes are errors.
 */
export class FdtWriter {
  private readonly reservations: FdtReservation[] = [];
  private readonly structure = new ByteSink();
  private readonly strings = new ByteSink();
  private readonly stringOffsets = new Map<string, number>();
  private readonly stack: OpenNode[] = [];
  private rootDone = false;
  private finished = false;
  private readonly bootCpuidPhys: number;

  constructor(options: FdtWriterOptions = {}) {
    this.bootCpuidPhys = options.bootCpuidPhys ?? 0;
    checkU32(this.bootCpuidPhys, 'bootCpuidPhys');
  }

  /** Add an entry to the memory reservation block (spec v0.4 §5.3). Allowed until {@link finish}. */
  addReservation(address: number | bigint, size: number | bigint): this {
    this.checkNotFinished();
    const a = toU64(address, 'reservation address');
    const s = toU64(size, 'reservation size');
    if (s === 0n) throw new FdtError('a memory reservation cannot have size 0: a zero entry ends the reservation block (spec v0.4 §5.3)');
    if (a + s > U64_MAX + 1n) throw new FdtError(`memory reservation 0x${a.toString(16)} + 0x${s.toString(16)} overflows 64 bits`);
    this.reservations.push({ address: a, size: s });
    return this;
  }

  /** Open a node. The first node must be the root, named `''`; every other name is `node-name[@unit-address]`. */
  beginNode(name: string): this {
    this.checkNotFinished();
    const parent = this.stack[this.stack.length - 1];
    if (parent === undefined) {
      if (this.rootDone) throw new FdtError(`cannot open node "${name}": the root node is already closed; a tree has one root`);
      if (name !== '') throw new FdtError(`the first node must be the root node, named "" (got "${name}")`);
      this.stack.push({ path: '/', propertyNames: new Set(), childNames: new Set(), hasChildren: false });
    } else {
      const problem = nodeNameProblem(name);
      if (problem !== undefined) throw new FdtError(`invalid node name under ${parent.path}: ${problem}`);
      if (parent.childNames.has(name)) throw new FdtError(`node ${parent.path} already has a child named "${name}"`);
      parent.childNames.add(name);
      parent.hasChildren = true;
      const path = parent.path === '/' ? `/${name}` : `${parent.path}/${name}`;
      this.stack.push({ path, propertyNames: new Set(), childNames: new Set(), hasChildren: false });
    }
    this.structure.u32(FDT_BEGIN_NODE);
    this.structure.append(cString(name, 'node name'));
    this.structure.pad4();
    return this;
  }

  /** Close the innermost open node. */
  endNode(): this {
    this.checkNotFinished();
    const node = this.stack.pop();
    if (node === undefined) throw new FdtError('endNode() without a matching beginNode()');
    if (this.stack.length === 0) this.rootDone = true;
    this.structure.u32(FDT_END_NODE);
    return this;
  }

  /** A property with raw bytes as its value. */
  property(name: string, value: Uint8Array): this {
    this.checkNotFinished();
    const node = this.stack[this.stack.length - 1];
    if (node === undefined) throw new FdtError(`property "${name}" is outside any node; open the root with beginNode('') first`);
    const problem = propertyNameProblem(name);
    if (problem !== undefined) throw new FdtError(`invalid property name in ${node.path}: ${problem}`);
    if (node.hasChildren) {
      throw new FdtError(`property "${name}" of ${node.path} comes after a child node; a node's properties precede its children (spec v0.4 §5.4.2)`);
    }
    if (node.propertyNames.has(name)) throw new FdtError(`node ${node.path} already has a property "${name}"`);
    node.propertyNames.add(name);
    this.structure.u32(FDT_PROP);
    this.structure.u32(value.length);
    this.structure.u32(this.stringOffset(name));
    this.structure.append(value);
    this.structure.pad4();
    return this;
  }

  /** A property with an empty value (a boolean such as `interrupt-controller`). */
  propertyEmpty(name: string): this {
    return this.property(name, new Uint8Array(0));
  }

  /** A single `<u32>` cell. */
  propertyU32(name: string, value: number): this {
    return this.propertyCells(name, [value]);
  }

  /** A single `<u64>` value (two cells, big-endian). */
  propertyU64(name: string, value: number | bigint): this {
    return this.propertyU64List(name, [value]);
  }

  /** A list of `<u32>` cells (`prop-encoded-array`, spec v0.4 §2.2.4.2). */
  propertyCells(name: string, cells: readonly number[]): this {
    const bytes = new Uint8Array(cells.length * 4);
    const view = new DataView(bytes.buffer);
    cells.forEach((cell, i) => {
      checkU32(cell, `cell ${i} of property "${name}"`);
      view.setUint32(i * 4, cell);
    });
    return this.property(name, bytes);
  }

  /** A list of u64 values, each two cells (as `reg` entries with `#address-cells = 2`). */
  propertyU64List(name: string, values: readonly (number | bigint)[]): this {
    const bytes = new Uint8Array(values.length * 8);
    const view = new DataView(bytes.buffer);
    values.forEach((v, i) => view.setBigUint64(i * 8, toU64(v, `value ${i} of property "${name}"`)));
    return this.property(name, bytes);
  }

  /** A NUL-terminated string. */
  propertyString(name: string, value: string): this {
    return this.property(name, cString(value, `the value of property "${name}"`));
  }

  /** A `stringlist`: NUL-terminated strings back to back (spec v0.4 §2.2.4.2). At least one string. */
  propertyStringList(name: string, values: readonly string[]): this {
    if (values.length === 0) throw new FdtError(`property "${name}": a string list needs at least one string; use propertyEmpty() for an empty value`);
    const parts = values.map((v, i) => cString(v, `string ${i} of property "${name}"`));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    return this.property(name, bytes);
  }

  /** End the structure block and return the whole blob. The writer cannot be used afterwards. */
  finish(): Uint8Array {
    this.checkNotFinished();
    const open = this.stack[this.stack.length - 1];
    if (open !== undefined) throw new FdtError(`node ${open.path} is still open: every beginNode() needs an endNode() before finish()`);
    if (!this.rootDone) throw new FdtError('the tree is empty: open and close the root node (beginNode(\'\') ... endNode()) before finish()');
    this.finished = true;
    this.structure.u32(FDT_END);

    const structBytes = this.structure.contents();
    const stringBytes = this.strings.contents();
    const offRsvmap = FDT_HEADER_SIZE; // 40: already 8-byte aligned as §5.3 requires
    const offStruct = offRsvmap + (this.reservations.length + 1) * FDT_RESERVE_ENTRY_SIZE;
    const offStrings = offStruct + structBytes.length;
    const total = offStrings + stringBytes.length;

    const blob = new Uint8Array(total);
    const view = new DataView(blob.buffer);
    view.setUint32(FdtHeaderOffset.magic, FDT_MAGIC);
    view.setUint32(FdtHeaderOffset.totalsize, total);
    view.setUint32(FdtHeaderOffset.off_dt_struct, offStruct);
    view.setUint32(FdtHeaderOffset.off_dt_strings, offStrings);
    view.setUint32(FdtHeaderOffset.off_mem_rsvmap, offRsvmap);
    view.setUint32(FdtHeaderOffset.version, FDT_VERSION);
    view.setUint32(FdtHeaderOffset.last_comp_version, FDT_LAST_COMP_VERSION);
    view.setUint32(FdtHeaderOffset.boot_cpuid_phys, this.bootCpuidPhys);
    view.setUint32(FdtHeaderOffset.size_dt_strings, stringBytes.length);
    view.setUint32(FdtHeaderOffset.size_dt_struct, structBytes.length);
    this.reservations.forEach((r, i) => {
      view.setBigUint64(offRsvmap + i * FDT_RESERVE_ENTRY_SIZE, r.address);
      view.setBigUint64(offRsvmap + i * FDT_RESERVE_ENTRY_SIZE + 8, r.size);
    });
    // The terminating all-zero reservation entry is already zero.
    blob.set(structBytes, offStruct);
    blob.set(stringBytes, offStrings);
    return blob;
  }

  /** Offset of `name` in the strings block, adding it once (de-duplication, spec v0.4 §5.5). */
  private stringOffset(name: string): number {
    let offset = this.stringOffsets.get(name);
    if (offset === undefined) {
      offset = this.strings.length;
      this.strings.append(cString(name, 'property name'));
      this.stringOffsets.set(name, offset);
    }
    return offset;
  }

  private checkNotFinished(): void {
    if (this.finished) throw new FdtError('this FdtWriter is finished; create a new one for another tree');
  }
}
