/**
 * How much of a host mapping is resident in RAM, page by page: `mincore(2)` through koffi. Used to
 * show that guest RAM given back with `GuestMemory.discard` (a balloon's inflated pages) really
 * left the process, without the noise of the whole process's RSS.
 */
import koffi from 'koffi';
import type { GuestMemory } from '../../src/memory/GuestMemory';

const PAGE = 4096;
type Mincore = (addr: bigint, len: number, vec: Uint8Array) => number;
let mincore: Mincore | undefined;

/** Resident 4 KiB pages of the host mapping `[host, host+len)` (page-aligned). */
export function residentPagesAt(host: number | bigint, len: number): number {
  mincore ??= koffi.load('libc.so.6').func('int mincore(uintptr_t addr, size_t len, uint8_t *vec)') as unknown as Mincore;
  const vec = new Uint8Array(Math.ceil(len / PAGE));
  if (mincore(BigInt(host), len, vec) !== 0) throw new Error(`mincore(0x${BigInt(host).toString(16)}, ${len}) failed: errno ${koffi.errno()}`);
  let n = 0;
  for (const v of vec) n += v & 1;
  return n;
}

/** Resident bytes of guest range `[addr, addr+len)` (inside one region, page-aligned). */
export function residentBytes(mem: GuestMemory, addr = 0, len = mem.size): number {
  let total = 0;
  for (const r of mem.regions) {
    const from = Math.max(addr, r.guestAddress);
    const to = Math.min(addr + len, r.guestAddress + r.size);
    if (to <= from) continue;
    total += residentPagesAt(BigInt(r.hostAddress) + BigInt(from - r.guestAddress), to - from) * PAGE;
  }
  return total;
}

/** The process's resident set size (VmRSS in /proc/self/status), in bytes. */
export async function processRss(): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmRSS line in /proc/self/status');
  return Number(m[1]) * 1024;
}
