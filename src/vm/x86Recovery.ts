/**
 * Decoding of the instructions a paravirtual KVM fails to emulate and kvmkit can step over
 * (DESIGN.md, "This machine's KVM is paravirtual"): int3, fwait, ldmxcsr.
 * @module
 */

/** What to do about the instruction at RIP. */
export interface Recovery {
  kind: 'breakpoint' | 'fwait' | 'ldmxcsr';
  /** Instruction length in bytes. */
  length: number;
}

const LEGACY_PREFIXES = new Set([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3]);

/**
 * Length of a ModRM memory operand (ModRM byte + SIB + displacement) in 64-bit mode, from the
 * Intel SDM vol. 2 §2.1.5 tables; `undefined` when the bytes run out.
 */
export function modrmLength(bytes: Uint8Array, at: number, addr32 = false): number | undefined {
  if (at >= bytes.length) return undefined;
  const modrm = bytes[at];
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let len = 1;
  if (mod === 3) return len;
  if (rm === 4) {
    if (at + 1 >= bytes.length) return undefined;
    const sib = bytes[at + 1];
    len += 1;
    if (mod === 0 && (sib & 7) === 5) len += 4;
  }
  if (mod === 0 && rm === 5) len += 4; // RIP-relative disp32
  else if (mod === 1) len += 1;
  else if (mod === 2) len += 4;
  void addr32;
  return at + len <= bytes.length ? len : undefined;
}

/** Recognise a recoverable instruction at the start of `bytes`, or return undefined. */
export function decodeRecoverable(bytes: Uint8Array): Recovery | undefined {
  let i = 0;
  while (i < bytes.length && LEGACY_PREFIXES.has(bytes[i])) i++;
  if (i < bytes.length && bytes[i] >= 0x40 && bytes[i] <= 0x4f) i++; // REX
  if (i >= bytes.length) return undefined;
  const op = bytes[i];
  if (op === 0xcc && i === 0) return { kind: 'breakpoint', length: 1 };
  if (op === 0x9b) return { kind: 'fwait', length: i + 1 };
  if (op === 0x0f && bytes[i + 1] === 0xae) {
    const modrm = bytes[i + 2];
    if (modrm === undefined) return undefined;
    const reg = (modrm >> 3) & 7;
    if (modrm >> 6 !== 3 && reg === 2) {
      const ml = modrmLength(bytes, i + 2);
      if (ml !== undefined) return { kind: 'ldmxcsr', length: i + 2 + ml };
    }
  }
  return undefined;
}
