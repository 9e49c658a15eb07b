import { describe, expect, it } from 'vitest';
import { buildIdentityPageTables } from '../../../src/arch/x86_64/PageTables';

describe('buildIdentityPageTables', () => {
  const pt = buildIdentityPageTables();
  const u64 = (b: Uint8Array, i: number): bigint => new DataView(b.buffer, b.byteOffset).getBigUint64(i * 8, true);

  it('points CR3 at the PML4 and the PML4 at the PDPT', () => {
    expect(pt.cr3).toBe(0x9000);
    expect(pt.pml4.addr).toBe(0x9000);
    expect(u64(pt.pml4.data, 0)).toBe(0xa003n);
    for (let i = 1; i < 512; i++) expect(u64(pt.pml4.data, i)).toBe(0n);
  });

  it('has four PDPT entries pointing at the page directories 0xB000..0xE000', () => {
    expect(pt.pdpt.addr).toBe(0xa000);
    expect([0, 1, 2, 3, 4].map((i) => u64(pt.pdpt.data, i))).toEqual([0xb003n, 0xc003n, 0xd003n, 0xe003n, 0n]);
  });

  it('maps 0..4 GiB with present, writable 2 MiB pages', () => {
    expect(pt.pd.addr).toBe(0xb000);
    expect(pt.pd.data.length).toBe(4 * 4096);
    expect(u64(pt.pd.data, 0)).toBe(0x83n);
    expect(u64(pt.pd.data, 1)).toBe(0x200083n);
    expect(u64(pt.pd.data, 512)).toBe(0x4000_0083n); // 1 GiB
    expect(u64(pt.pd.data, 2047)).toBe(0xffe0_0083n); // last 2 MiB below 4 GiB
  });
});
