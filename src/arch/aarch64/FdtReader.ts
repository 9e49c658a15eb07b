/**
 * A strict reader of flattened device tree blobs (DTB version 17, Devicetree Specification v0.4
 * chapter 5). It checks every offset and token instead of trusting the blob, so tests can use it
 * as an independent decoder of what {@link FdtWriter} produced, and `dump-fdt` users can inspect
 * a blob without dtc.
 * @module
 */

import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_HEADER_SIZE,
  FDT_MAGIC,
  FDT_NOP,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FDT_VERSION,
  FdtError,
  FdtHeaderOffset,
  type FdtReservation,
  align4,
} from './Fdt';

/** A property as stored: its name and raw value bytes. */
export interface FdtProperty {
  name: string;
  value: Uint8Array;
}

/** A decoded node: name (`''` for the root), properties and children in blob order. */
export interface FdtNode {
  name: string;
  properties: FdtProperty[];
  children: FdtNode[];
}

/** A decoded blob. */
export interface FdtTree {
  version: number;
  lastCompVersion: number;
  bootCpuidPhys: number;
  reservations: FdtReservation[];
  root: FdtNode;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The NUL-terminated string at `offset` in `bytes`, which must end before `end`. */
function readCString(bytes: Uint8Array, offset: number, end: number, what: string): string {
  const nul = bytes.indexOf(0, offset);
  if (nul < 0 || nul >= end) throw new FdtError(`${what} at offset ${offset} is not NUL-terminated inside its block`);
  try {
    return utf8.decode(bytes.subarray(offset, nul));
  } catch (cause) {
    throw new FdtError(`${what} at offset ${offset} is not valid UTF-8`, { cause });
  }
}

/** Decode a DTB, checking its header, offsets, token stream and nesting. Throws {@link FdtError}. */
export function parseFdt(blob: Uint8Array): FdtTree {
  if (blob.length < FDT_HEADER_SIZE) throw new FdtError(`blob is ${blob.length} bytes, shorter than the ${FDT_HEADER_SIZE}-byte header`);
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const h = (field: keyof typeof FdtHeaderOffset): number => view.getUint32(FdtHeaderOffset[field]);
  if (h('magic') !== FDT_MAGIC) throw new FdtError(`bad magic 0x${h('magic').toString(16)}, expected 0x${FDT_MAGIC.toString(16)}`);
  const total = h('totalsize');
  if (total > blob.length) throw new FdtError(`totalsize ${total} is larger than the ${blob.length}-byte blob`);
  const version = h('version');
  const lastComp = h('last_comp_version');
  if (version < FDT_VERSION || lastComp > FDT_VERSION) {
    throw new FdtError(`version ${version} (last compatible ${lastComp}) cannot be read as version ${FDT_VERSION}`);
  }

  const offRsv = h('off_mem_rsvmap');
  const offStruct = h('off_dt_struct');
  const sizeStruct = h('size_dt_struct');
  const offStrings = h('off_dt_strings');
  const sizeStrings = h('size_dt_strings');
  if (offRsv % 8 !== 0 || offRsv < FDT_HEADER_SIZE || offRsv > total) throw new FdtError(`off_mem_rsvmap ${offRsv} is misaligned or outside the blob`);
  if (offStruct % 4 !== 0 || offStruct < FDT_HEADER_SIZE || offStruct + sizeStruct > total) {
    throw new FdtError(`structure block [${offStruct}, +${sizeStruct}) is misaligned or outside the blob`);
  }
  if (offStrings < FDT_HEADER_SIZE || offStrings + sizeStrings > total) {
    throw new FdtError(`strings block [${offStrings}, +${sizeStrings}) is outside the blob`);
  }

  const reservations: FdtReservation[] = [];
  for (let at = offRsv; ; at += FDT_RESERVE_ENTRY_SIZE) {
    if (at + FDT_RESERVE_ENTRY_SIZE > total) throw new FdtError('memory reservation block has no terminating zero entry');
    const address = view.getBigUint64(at);
    const size = view.getBigUint64(at + 8);
    if (address === 0n && size === 0n) break;
    reservations.push({ address, size });
  }

  const structEnd = offStruct + sizeStruct;
  const stringsEnd = offStrings + sizeStrings;
  const token = (at: number): number => {
    if (at + 4 > structEnd) throw new FdtError(`structure block ends at ${structEnd} before a token at ${at}`);
    return view.getUint32(at);
  };

  let root: FdtNode | undefined;
  const stack: FdtNode[] = [];
  let at = offStruct;
  for (;;) {
    const t = token(at);
    at += 4;
    if (t === FDT_NOP) continue;
    if (t === FDT_BEGIN_NODE) {
      const name = readCString(blob, at, structEnd, 'node name');
      at = align4(blob.indexOf(0, at) + 1);
      const node: FdtNode = { name, properties: [], children: [] };
      const parent = stack[stack.length - 1];
      if (parent === undefined) {
        if (root !== undefined) throw new FdtError(`a second top-level node "${name}" at offset ${at}`);
        if (name !== '') throw new FdtError(`the root node is named "${name}", expected ""`);
        root = node;
      } else {
        parent.children.push(node);
      }
      stack.push(node);
    } else if (t === FDT_END_NODE) {
      if (stack.pop() === undefined) throw new FdtError(`FDT_END_NODE at offset ${at - 4} without an open node`);
    } else if (t === FDT_PROP) {
      const node = stack[stack.length - 1];
      if (node === undefined) throw new FdtError(`FDT_PROP at offset ${at - 4} outside any node`);
      const len = token(at);
      const nameoff = token(at + 4);
      at += 8;
      if (at + len > structEnd) throw new FdtError(`property value at ${at} (+${len}) runs past the structure block`);
      if (nameoff >= sizeStrings) throw new FdtError(`property name offset ${nameoff} is outside the ${sizeStrings}-byte strings block`);
      const name = readCString(blob, offStrings + nameoff, stringsEnd, 'property name');
      if (node.children.length > 0) throw new FdtError(`property "${name}" after a child node of "${node.name}"`);
      node.properties.push({ name, value: blob.slice(at, at + len) });
      at = align4(at + len);
    } else if (t === FDT_END) {
      if (stack.length !== 0) throw new FdtError(`FDT_END with ${stack.length} node(s) still open`);
      if (root === undefined) throw new FdtError('FDT_END before any node');
      if (at !== structEnd) throw new FdtError(`FDT_END at ${at - 4} but size_dt_struct says the block ends at ${structEnd}`);
      break;
    } else {
      throw new FdtError(`unknown token 0x${t.toString(16)} at offset ${at - 4}`);
    }
  }
  return { version, lastCompVersion: lastComp, bootCpuidPhys: h('boot_cpuid_phys'), reservations, root };
}

/** The node at an absolute `path` (`/`, `/cpus/cpu@0`), or `undefined`. */
export function findNode(root: FdtNode, path: string): FdtNode | undefined {
  let node: FdtNode | undefined = root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    node = node.children.find((c) => c.name === part);
    if (node === undefined) return undefined;
  }
  return node;
}

/** The value of property `name` of `node`, or `undefined`. */
export function findProperty(node: FdtNode, name: string): Uint8Array | undefined {
  return node.properties.find((p) => p.name === name)?.value;
}

/** Decode a property value as big-endian u32 cells. Throws if its length is not a multiple of 4. */
export function cellsOf(value: Uint8Array): number[] {
  if (value.length % 4 !== 0) throw new FdtError(`a ${value.length}-byte value is not a list of 32-bit cells`);
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  return Array.from({ length: value.length / 4 }, (_, i) => view.getUint32(i * 4));
}

/** Decode a property value as a list of NUL-terminated strings. */
export function stringsOf(value: Uint8Array): string[] {
  if (value.length === 0 || value[value.length - 1] !== 0) throw new FdtError('value is not NUL-terminated strings');
  try {
    return utf8.decode(value.subarray(0, value.length - 1)).split('\0');
  } catch (cause) {
    throw new FdtError('value is not UTF-8 strings', { cause });
  }
}
