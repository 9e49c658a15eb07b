/**
 * Identity page tables for the 64-bit entry: [0, 4 GiB) mapped with 2 MiB pages.
 *
 * 4-level paging, Intel SDM Vol. 3A §4.5 (Tables 4-15 PML4E, 4-17 PDPTE, 4-18 PDE mapping a 2 MiB page).
 * boot.rst ("64-bit BOOT PROTOCOL") requires the range holding the kernel, boot_params and the
 * command line to be identity-mapped; Firecracker maps 1 GiB, kvmkit maps all of 32-bit space.
 * @module
 */

import { PAGE_SIZE, PD_COUNT, PD_START, PDPT_START, PML4_START } from './Layout';

/** Paging-structure entry bits (SDM Vol. 3A Table 4-15 .. 4-18). */
export const PageFlag = {
  PRESENT: 1 << 0,
  WRITABLE: 1 << 1,
  /** In a PDE: maps a 2 MiB page instead of pointing to a page table. */
  PAGE_SIZE: 1 << 7,
} as const;

/** Bytes mapped by one PDE with PS=1. */
export const LARGE_PAGE_SIZE = 0x20_0000;
/** Entries per paging structure (4 KiB / 8 bytes). */
const ENTRIES = 512;

/** The paging structures, each a guest-physical address and its bytes. */
export interface IdentityPageTables {
  /** CR3 value: the PML4's physical address (PCD/PWT clear). */
  cr3: number;
  pml4: { addr: number; data: Uint8Array };
  pdpt: { addr: number; data: Uint8Array };
  /** {@link PD_COUNT} page directories, contiguous. */
  pd: { addr: number; data: Uint8Array };
}

/** Build the PML4, PDPT and page directories identity-mapping [0, PD_COUNT GiB). */
export function buildIdentityPageTables(): IdentityPageTables {
  const table = PageFlag.PRESENT | PageFlag.WRITABLE;

  const pml4 = new Uint8Array(PAGE_SIZE);
  new DataView(pml4.buffer).setBigUint64(0, BigInt(PDPT_START | table), true);

  const pdpt = new Uint8Array(PAGE_SIZE);
  const pdptView = new DataView(pdpt.buffer);
  for (let i = 0; i < PD_COUNT; i++) {
    pdptView.setBigUint64(i * 8, BigInt((PD_START + i * PAGE_SIZE) | table), true);
  }

  const pd = new Uint8Array(PD_COUNT * PAGE_SIZE);
  const pdView = new DataView(pd.buffer);
  for (let i = 0; i < PD_COUNT * ENTRIES; i++) {
    const phys = BigInt(i) * BigInt(LARGE_PAGE_SIZE);
    pdView.setBigUint64(i * 8, phys | BigInt(table | PageFlag.PAGE_SIZE), true);
  }

  return {
    cr3: PML4_START,
    pml4: { addr: PML4_START, data: pml4 },
    pdpt: { addr: PDPT_START, data: pdpt },
    pd: { addr: PD_START, data: pd },
  };
}
