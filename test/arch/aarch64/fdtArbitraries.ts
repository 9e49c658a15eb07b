/** fast-check generators of random device trees, and a writer of such a model through FdtWriter. */

import fc from 'fast-check';
import { FdtWriter } from '../../../src/arch/aarch64/FdtWriter';
import type { FdtNode } from '../../../src/arch/aarch64/FdtReader';

/** Devicetree spec v0.4 Table 2.1 (node names) and Table 2.2 (property names). */
export const NODE_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,._+-';
export const PROPERTY_CHARS = `${NODE_CHARS}?#`;
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

const charOf = (set: string): fc.Arbitrary<string> => fc.constantFrom(...set.split(''));
const stringOf = (set: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.array(charOf(set), { minLength, maxLength }).map((cs) => cs.join(''));

/** A tree as plain data, the same shape the reader returns. */
export type TreeModel = FdtNode;

/** Options of {@link treeArbitrary}. */
export interface TreeArbitraryOptions {
  /**
   * Keep names away from the ones dtc gives meaning to (`reg`, `phandle`, `*-gpios`, `pci`,
   * `chosen`...), so dtc round-trips them without semantic errors: property names start with `x`,
   * node names with `n`.
   */
  dtcSafe?: boolean;
  maxDepth?: number;
}

/** Any valid node name: `node-name[@unit-address]`. */
export function nodeNameArbitrary(dtcSafe = false): fc.Arbitrary<string> {
  const base = dtcSafe
    ? stringOf(NODE_CHARS, 0, 30).map((s) => `n${s}`)
    : fc.tuple(charOf(LETTERS), stringOf(NODE_CHARS, 0, 30)).map(([a, b]) => a + b);
  return fc.tuple(base, fc.option(stringOf(NODE_CHARS, 1, 12), { nil: undefined })).map(([b, u]) => (u === undefined ? b : `${b}@${u}`));
}

/** Any valid property name. */
export function propertyNameArbitrary(dtcSafe = false): fc.Arbitrary<string> {
  if (!dtcSafe) return stringOf(PROPERTY_CHARS, 1, 31);
  return stringOf(PROPERTY_CHARS, 0, 30)
    .map((s) => `x${s}`)
    .filter((s) => !/gpios?$/.test(s));
}

/** Property values: raw bytes, printable strings (NUL-terminated, so dtc prints them as strings), cells. */
export const valueArbitrary: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 24 }),
  fc.array(fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 12 }), { minLength: 1, maxLength: 3 }).map(
    (ss) => new TextEncoder().encode(ss.map((s) => `${s}\0`).join('')),
  ),
  fc.array(fc.nat({ max: 0xffff_ffff }), { maxLength: 6 }).map((cells) => {
    const b = new Uint8Array(cells.length * 4);
    cells.forEach((c, i) => new DataView(b.buffer).setUint32(i * 4, c));
    return b;
  }),
);

/** Random trees: unique names per node, a bounded depth and fan-out. */
export function treeArbitrary(options: TreeArbitraryOptions = {}): fc.Arbitrary<TreeModel> {
  const dtcSafe = options.dtcSafe ?? false;
  const props = fc
    .uniqueArray(fc.record({ name: propertyNameArbitrary(dtcSafe), value: valueArbitrary }), { selector: (p) => p.name, maxLength: 5 })
    .map((ps) => ps.map((p) => ({ name: p.name, value: p.value })));
  const node = (depth: number, name: fc.Arbitrary<string>): fc.Arbitrary<TreeModel> =>
    fc.record({
      name,
      properties: props,
      children:
        depth <= 0
          ? fc.constant([] as TreeModel[])
          : fc.uniqueArray(node(depth - 1, nodeNameArbitrary(dtcSafe)), { selector: (n) => n.name, maxLength: 3 }),
    });
  return node(options.maxDepth ?? 3, fc.constant(''));
}

/** Memory reservation entries (size > 0, no 64-bit overflow). */
export const reservationsArbitrary = fc.array(
  fc.record({ address: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), size: fc.bigInt({ min: 1n, max: (1n << 63n) - 1n }) }),
  { maxLength: 3 },
);

/** Write a model with an FdtWriter (properties first, then children, as the format requires). */
export function writeModel(w: FdtWriter, node: TreeModel): void {
  w.beginNode(node.name);
  for (const p of node.properties) w.property(p.name, p.value);
  for (const c of node.children) writeModel(w, c);
  w.endNode();
}

/** A tree with values as plain arrays, for deep equality across Uint8Array/Buffer. */
export function normalize(node: FdtNode): unknown {
  return { name: node.name, properties: node.properties.map((p) => [p.name, Array.from(p.value)]), children: node.children.map(normalize) };
}
