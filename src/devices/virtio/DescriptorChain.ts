/**
 * A descriptor chain popped from a `VirtQueue`: the request's buffers, already checked
 * (every buffer lies in guest RAM, device-readable buffers come before device-writable ones), with
 * bounds-checked copy helpers and zero-copy views for devices that do I/O straight into guest RAM.
 * @module
 */
import { GuestMemoryError } from '../../errors';
import type { GuestMemory } from '../../memory/GuestMemory';

/** One guest buffer of a chain (one descriptor with a non-zero length, §2.7.5). */
export interface DescriptorBuffer {
  /** Guest-physical address of the first byte. */
  readonly addr: number;
  /** Length in bytes (> 0). */
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE) rather than device-readable. */
  readonly writable: boolean;
}

/**
 * The buffers of one request. The device reads the request from the readable part and writes its
 * answer into the writable part, then hands the head back with `VirtQueue.addUsed(chain.head, n)`
 * where `n` is the number of bytes written (§2.7.8).
 *
 * Offsets in the helpers count bytes in the concatenation of the readable (or writable) buffers,
 * as if they were one contiguous stream; zero-length descriptors are left out.
 */
export class DescriptorChain {
  /** Device-readable buffers, in chain order. */
  readonly readable: readonly DescriptorBuffer[];
  /** Device-writable buffers, in chain order. */
  readonly writable: readonly DescriptorBuffer[];
  /** Total bytes the device may read. */
  readonly readableLength: number;
  /** Total bytes the device may write. */
  readonly writableLength: number;

  /**
   * Built by `VirtQueue.pop()`; the buffers must already be validated against `mem`.
   * @param mem guest memory the buffers live in
   * @param head index of the chain's first descriptor in the descriptor table (the id to return)
   * @param buffers every non-empty buffer in chain order, readable ones first
   * @param descriptorCount descriptors walked, including empty ones (not the indirect pointer)
   * @param indirect the chain went through an indirect table
   */
  constructor(
    readonly mem: GuestMemory,
    readonly head: number,
    readonly buffers: readonly DescriptorBuffer[],
    readonly descriptorCount = buffers.length,
    readonly indirect = false,
  ) {
    const readable: DescriptorBuffer[] = [];
    const writable: DescriptorBuffer[] = [];
    let readableLength = 0;
    let writableLength = 0;
    for (const b of buffers) {
      if (b.writable) {
        writable.push(b);
        writableLength += b.len;
      } else {
        readable.push(b);
        readableLength += b.len;
      }
    }
    this.readable = readable;
    this.writable = writable;
    this.readableLength = readableLength;
    this.writableLength = writableLength;
  }

  /**
   * Copy device-readable bytes starting at stream `offset` into `target`.
   * @returns bytes copied: `min(target.length, readableLength - offset)`, 0 past the end
   */
  readBytes(offset: number, target: Uint8Array): number {
    let done = 0;
    for (const view of this.readableViews(offset, target.length)) {
      target.set(view, done);
      done += view.length;
    }
    return done;
  }

  /**
   * Copy `source` into the device-writable buffers starting at stream `offset`.
   * @returns bytes copied: `min(source.length, writableLength - offset)`, 0 past the end
   */
  writeBytes(offset: number, source: Uint8Array): number {
    let done = 0;
    for (const view of this.writableViews(offset, source.length)) {
      view.set(source.subarray(done, done + view.length));
      done += view.length;
    }
    return done;
  }

  /**
   * Zero-copy views of the readable stream from `offset`, at most `length` bytes. A buffer that
   * crosses a guest RAM region or view boundary comes back as several views. Never write to them:
   * the device must not write device-readable buffers (§2.7.5.1).
   */
  readableViews(offset = 0, length = Infinity): Uint8Array[] {
    return streamViews(this.mem, this.readable, offset, length);
  }

  /** Zero-copy views of the writable stream from `offset`, at most `length` bytes (see {@link readableViews}). */
  writableViews(offset = 0, length = Infinity): Uint8Array[] {
    return streamViews(this.mem, this.writable, offset, length);
  }
}

function streamViews(mem: GuestMemory, bufs: readonly DescriptorBuffer[], offset: number, length: number): Uint8Array[] {
  if (!(offset >= 0) || !(length >= 0)) throw new RangeError(`offset ${offset} and length ${length} must be >= 0`);
  const views: Uint8Array[] = [];
  let skip = offset;
  let left = length;
  for (const b of bufs) {
    if (left <= 0) break;
    if (skip >= b.len) {
      skip -= b.len;
      continue;
    }
    const n = Math.min(b.len - skip, left);
    for (const v of guestViews(mem, b.addr + skip, n)) views.push(v);
    left -= n;
    skip = 0;
  }
  return views;
}

/**
 * Zero-copy views covering guest range `[addr, addr+len)`, which must lie in RAM: one view per
 * piece that `GuestMemory.slice` can serve. Regions are separate mappings and large regions are
 * viewed in chunks, so a range that crosses such a boundary comes back as one view per side.
 */
export function guestViews(mem: GuestMemory, addr: number, len: number): Uint8Array[] {
  if (!mem.contains(addr, len)) throw new GuestMemoryError(BigInt(addr), len);
  const out: Uint8Array[] = [];
  let a = addr;
  let left = len;
  while (left > 0) {
    const region = mem.regions.find((r) => a >= r.guestAddress && a < r.guestAddress + r.size);
    let n = Math.min(left, region ? region.guestAddress + region.size - a : left);
    let view = trySlice(mem, a, n);
    if (!view) {
      // A view boundary inside the region: find the longest piece slice() serves (it serves every
      // shorter one too). One byte always works because contains() held.
      let lo = 1;
      let hi = n - 1;
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        if (trySlice(mem, a, mid)) lo = mid;
        else hi = mid - 1;
      }
      n = lo;
      view = mem.slice(a, n);
    }
    out.push(view);
    a += n;
    left -= n;
  }
  return out;
}

function trySlice(mem: GuestMemory, addr: number, len: number): Uint8Array | undefined {
  try {
    return mem.slice(addr, len);
  } catch (e) {
    if (e instanceof GuestMemoryError) return undefined;
    throw e;
  }
}
