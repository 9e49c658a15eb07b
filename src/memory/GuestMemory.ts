/**
 * Guest RAM: anonymous mmap'd regions at guest-physical addresses, with bounds-checked reads and
 * writes. An access outside RAM throws {@link GuestMemoryError} and never touches host memory.
 * @module
 */
import { GuestMemoryError, KvmError } from '../errors';
import { libc, MADV_DONTNEED, MADV_HUGEPAGE, MAP_ANONYMOUS, MAP_FAILED, MAP_NORESERVE, MAP_PRIVATE, nativeView, PROT_READ, PROT_WRITE } from '../hypervisor/kvm/libc';
import type { RamRegion } from '../arch/ArchLayout';

/** Largest single JS view over guest RAM; regions are viewed in chunks of this size. */
const CHUNK = 1 << 30;
/** Host page size on x86_64 Linux: the granule of {@link GuestMemory.discard}. */
export const HOST_PAGE_SIZE = 4096;

/** One mmap'd region of guest RAM. */
export interface GuestRegion {
  readonly guestAddress: number;
  readonly size: number;
  /** Host virtual address of the mapping (for KVM_SET_USER_MEMORY_REGION and worker views). */
  readonly hostAddress: number | bigint;
}

/** A view over one piece of guest RAM (at most CHUNK bytes). */
interface Chunk {
  start: number; // guest-physical
  end: number;
  bytes: Uint8Array;
  /** The same bytes as le16 / le32 elements, for aligned loads and stores without a view per access. */
  u16: Uint16Array;
  u32: Uint32Array;
}

/** Typed-array elements are host-endian: the aligned accessors below need a little-endian host (x86_64, aarch64 Linux). */
const LITTLE_ENDIAN_HOST = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** Guest-physical memory. */
export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  private readonly chunks: Chunk[] = [];
  private freed = false;

  private constructor(regions: GuestRegion[], private readonly owned: boolean) {
    this.regions = regions;
    for (const r of regions) {
      for (let off = 0; off < r.size; off += CHUNK) {
        const len = Math.min(CHUNK, r.size - off);
        const host = BigInt(r.hostAddress) + BigInt(off);
        const buffer = nativeView(host, len);
        this.chunks.push({
          start: r.guestAddress + off,
          end: r.guestAddress + off + len,
          bytes: new Uint8Array(buffer),
          u16: new Uint16Array(buffer, 0, Math.floor(len / 2)),
          u32: new Uint32Array(buffer, 0, Math.floor(len / 4)),
        });
      }
    }
  }

  /** mmap anonymous memory for each region. Regions must not overlap. */
  static allocate(ram: readonly RamRegion[]): GuestMemory {
    const sorted = [...ram].sort((a, b) => a.guestAddress - b.guestAddress);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].guestAddress < sorted[i - 1].guestAddress + sorted[i - 1].size) {
        throw new RangeError(`guest RAM regions overlap at 0x${sorted[i].guestAddress.toString(16)}`);
      }
    }
    const regions: GuestRegion[] = [];
    try {
      for (const r of sorted) {
        const addr = libc().mmap(0, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (BigInt(addr) === MAP_FAILED) throw new KvmError('mmap(guest RAM)', libc().errno(), `cannot map ${r.size} bytes of guest RAM (errno ${libc().errno()})`);
        regions.push({ guestAddress: r.guestAddress, size: r.size, hostAddress: addr });
        // Transparent huge pages, as QEMU asks for guest RAM: fewer TLB misses for the guest and
        // cheaper page pinning for O_DIRECT I/O into guest buffers (measured: 1 MiB O_DIRECT reads
        // 1.5-1.9 GB/s into 4 KiB pages, 2.2-4.5 GB/s into huge pages). Only a hint: a host with
        // THP off answers EINVAL and the RAM works the same.
        libc().madvise(addr, r.size, MADV_HUGEPAGE);
      }
    } catch (e) {
      for (const r of regions) libc().munmap(r.hostAddress, r.size);
      throw e;
    }
    return new GuestMemory(regions, true);
  }

  /**
   * Views over RAM that another GuestMemory owns (e.g. in a vCPU worker thread, from the host
   * addresses passed in workerData). `free()` on such an instance only drops the views.
   */
  static fromMapped(regions: readonly GuestRegion[]): GuestMemory {
    return new GuestMemory([...regions], false);
  }

  /** Total RAM in bytes. */
  get size(): number {
    return this.regions.reduce((s, r) => s + r.size, 0);
  }

  /** The chunk of the last aligned access: ring fields of one queue live in one chunk. */
  #last: Chunk | undefined;

  /** The chunk holding `[addr, addr+len)`, trying the last one first. */
  private chunkAt(addr: number, len: number): Chunk {
    const c = this.#last;
    if (c !== undefined && addr >= c.start && addr + len <= c.end) return c;
    const found = this.chunkFor(addr, len);
    this.#last = found;
    return found;
  }

  private chunkFor(addr: number, len: number): Chunk {
    if (this.freed) throw new GuestMemoryError(BigInt(addr), len, 'guest memory was released (the VM has ended)');
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) {
      throw new GuestMemoryError(BigInt(Math.max(0, Math.trunc(addr) || 0)), len, `invalid guest address/length ${addr}/${len}`);
    }
    // Few chunks (one per GiB): linear scan is fine.
    for (const c of this.chunks) {
      if (addr >= c.start && addr < c.end) {
        if (addr + len > c.end) {
          // Allowed only if the next chunk is contiguous; callers of slice() need one chunk.
          throw new GuestMemoryError(BigInt(addr), len, `guest range 0x${addr.toString(16)}+${len} crosses a RAM region or view boundary`);
        }
        return c;
      }
    }
    throw new GuestMemoryError(BigInt(addr), len);
  }

  /** True when `[addr, addr+len)` is entirely guest RAM. */
  contains(addr: number, len: number): boolean {
    if (this.freed || !Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) return false;
    const last = this.#last;
    if (len > 0 && last !== undefined && addr >= last.start && addr + len <= last.end) return true;
    // An empty range is inside RAM when its address is (a region's end counts).
    if (len === 0) return this.regions.some((r) => addr >= r.guestAddress && addr <= r.guestAddress + r.size);
    let a = addr;
    let left = len;
    while (left > 0) {
      const c = this.chunks.find((ch) => a >= ch.start && a < ch.end);
      if (!c) return false;
      const n = Math.min(left, c.end - a);
      a += n;
      left -= n;
    }
    return true;
  }

  /** A zero-copy view of `[addr, addr+len)`; the range must lie in one RAM chunk. */
  slice(addr: number, len: number): Uint8Array {
    const c = this.chunkFor(addr, len);
    return c.bytes.subarray(addr - c.start, addr - c.start + len);
  }

  /** Copy `data` into guest RAM at `addr` (may span chunks of one contiguous region). */
  write(addr: number, data: Uint8Array): void {
    if (!this.contains(addr, data.length)) throw new GuestMemoryError(BigInt(addr), data.length);
    let done = 0;
    while (done < data.length) {
      const a = addr + done;
      const c = this.chunkFor(a, 0);
      const n = Math.min(data.length - done, c.end - a);
      c.bytes.set(data.subarray(done, done + n), a - c.start);
      done += n;
    }
  }

  /** Copy `len` bytes out of guest RAM at `addr`. */
  read(addr: number, len: number): Uint8Array {
    if (!this.contains(addr, len)) throw new GuestMemoryError(BigInt(addr), len);
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const c = this.chunkFor(a, 0);
      const n = Math.min(len - done, c.end - a);
      out.set(c.bytes.subarray(a - c.start, a - c.start + n), done);
      done += n;
    }
    return out;
  }

  private dv(addr: number, len: number): DataView {
    const s = this.slice(addr, len);
    return new DataView(s.buffer, s.byteOffset, len);
  }

  /**
   * Load the le16 at an even `addr` in one access (a field the guest may be writing meanwhile,
   * such as `avail.idx`, cannot tear) without allocating: the virtqueue's hot path.
   * @throws GuestMemoryError outside RAM; RangeError for an odd address
   */
  loadU16(addr: number): number {
    if (addr % 2 !== 0) throw new RangeError(`loadU16 at odd address 0x${addr.toString(16)}`);
    if (!LITTLE_ENDIAN_HOST) return this.readU16(addr);
    const c = this.chunkAt(addr, 2);
    return c.u16[(addr - c.start) / 2]!;
  }

  /** Store a le16 at an even `addr` in one access (see {@link loadU16}). */
  storeU16(addr: number, v: number): void {
    if (addr % 2 !== 0) throw new RangeError(`storeU16 at odd address 0x${addr.toString(16)}`);
    if (!LITTLE_ENDIAN_HOST) return this.writeU16(addr, v);
    const c = this.chunkAt(addr, 2);
    c.u16[(addr - c.start) / 2] = v;
  }

  /** Load the le32 at a 4-byte aligned `addr` in one access, without allocating. */
  loadU32(addr: number): number {
    if (addr % 4 !== 0) throw new RangeError(`loadU32 at unaligned address 0x${addr.toString(16)}`);
    if (!LITTLE_ENDIAN_HOST) return this.readU32(addr);
    const c = this.chunkAt(addr, 4);
    return c.u32[(addr - c.start) / 4]!;
  }

  /** Store a le32 at a 4-byte aligned `addr` in one access (see {@link loadU32}). */
  storeU32(addr: number, v: number): void {
    if (addr % 4 !== 0) throw new RangeError(`storeU32 at unaligned address 0x${addr.toString(16)}`);
    if (!LITTLE_ENDIAN_HOST) return this.writeU32(addr, v);
    const c = this.chunkAt(addr, 4);
    c.u32[(addr - c.start) / 4] = v >>> 0;
  }

  readU8(addr: number): number { return this.slice(addr, 1)[0]; }
  readU16(addr: number): number { return this.dv(addr, 2).getUint16(0, true); }
  readU32(addr: number): number { return this.dv(addr, 4).getUint32(0, true); }
  readU64(addr: number): bigint { return this.dv(addr, 8).getBigUint64(0, true); }
  writeU8(addr: number, v: number): void { this.slice(addr, 1)[0] = v; }
  writeU16(addr: number, v: number): void { this.dv(addr, 2).setUint16(0, v, true); }
  writeU32(addr: number, v: number): void { this.dv(addr, 4).setUint32(0, v >>> 0, true); }
  writeU64(addr: number, v: bigint): void { this.dv(addr, 8).setBigUint64(0, v, true); }

  /**
   * Give the host pages of `[addr, addr+len)` back to the host (a memory balloon's inflated pages):
   * `madvise(MADV_DONTNEED)` on the mapping, so they stop counting in the process's RSS and read
   * as zeros the next time the guest (or a view) touches them; KVM's MMU notifier drops its own
   * mappings of them. Guest RAM is a private anonymous mapping, for which MADV_DONTNEED frees the
   * pages; a shared (memfd) mapping would need MADV_REMOVE instead. The range may span regions.
   * @throws RangeError when `addr` or `len` is not a multiple of {@link HOST_PAGE_SIZE};
   *   GuestMemoryError when the range is not entirely guest RAM; KvmError if madvise fails
   */
  discard(addr: number, len: number): void {
    if (addr % HOST_PAGE_SIZE !== 0 || len % HOST_PAGE_SIZE !== 0) {
      throw new RangeError(`discard needs a ${HOST_PAGE_SIZE}-byte aligned address and length, got 0x${addr.toString(16)}+0x${len.toString(16)}`);
    }
    if (!this.contains(addr, len)) throw new GuestMemoryError(BigInt(Math.max(0, Math.trunc(addr) || 0)), len);
    let a = addr;
    let left = len;
    while (left > 0) {
      // contains() held, so a region covers `a` and regions are contiguous inside the range
      const r = this.regions.find((x) => a >= x.guestAddress && a < x.guestAddress + x.size)!;
      const n = Math.min(left, r.guestAddress + r.size - a);
      const host = BigInt(r.hostAddress) + BigInt(a - r.guestAddress);
      if (libc().madvise(host, n, MADV_DONTNEED) !== 0) {
        const errno = libc().errno();
        throw new KvmError('madvise(MADV_DONTNEED)', errno, `cannot release guest RAM 0x${a.toString(16)}+0x${n.toString(16)} to the host (errno ${errno})`);
      }
      a += n;
      left -= n;
    }
  }

  /**
   * Unmap the RAM. Call only after every vCPU thread has ended and no view is in use: a view over
   * unmapped memory crashes the process (KOFFI-NOTES.md). Later accesses throw.
   */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.chunks.length = 0;
    this.#last = undefined;
    if (this.owned) for (const r of this.regions) libc().munmap(r.hostAddress, r.size);
  }
}
