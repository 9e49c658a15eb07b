import { describe, expect, it } from 'vitest';
import { BOOT_CR0, bootFpu, bootRegs, bootSregs } from '../../../src/arch/x86_64/BootCpuState';
import { APIC_LVT0, APIC_LVT1, configureLapic, setDeliveryMode } from '../../../src/arch/x86_64/Lapic';
import { bootMsrs, Msr } from '../../../src/arch/x86_64/Msrs';

describe('boot vCPU state', () => {
  it('enters the kernel at its 64-bit entry with RSI = boot_params', () => {
    expect(bootRegs()).toEqual({ rip: 0x100200, rsp: 0x8ff0, rbp: 0x8ff0, rsi: 0x7000, rflags: 2 });
  });

  it('is in long mode with paging', () => {
    const s = bootSregs();
    expect(BOOT_CR0).toBe(0x8000_0031);
    expect(s).toMatchObject({ cr0: 0x8000_0031, cr3: 0x9000, cr4: 0x20, efer: 0x500, gdt: { base: 0x500, limit: 31 }, idt: { base: 0x520, limit: 7 } });
    expect(s.cs?.selector).toBe(0x08);
    expect(s.ss?.selector).toBe(0x10);
    expect(s.tr?.selector).toBe(0x18);
  });

  it('sets the FPU reset values', () => expect(bootFpu()).toEqual({ fcw: 0x37f, mxcsr: 0x1f80 }));
});

describe('bootMsrs', () => {
  it('matches Firecracker\'s boot MSR list', () => {
    const msrs = bootMsrs();
    const byIndex = new Map(msrs.map((m) => [m.index, m.data]));
    expect(msrs).toHaveLength(11);
    for (const i of [0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0x10]) expect(byIndex.get(i)).toBe(0n);
    expect(byIndex.get(Msr.IA32_MISC_ENABLE)).toBe(1n);
    expect(byIndex.get(Msr.MTRR_DEF_TYPE)).toBe(0x806n);
  });

  it('returns a fresh array each time', () => expect(bootMsrs()).not.toBe(bootMsrs()));
});

describe('configureLapic', () => {
  it('sets LINT0 to ExtINT and LINT1 to NMI, keeping the other LVT bits', () => {
    const state = new Uint8Array(1024);
    const v = new DataView(state.buffer);
    v.setUint32(APIC_LVT0, 0x0001_0000, true); // masked, fixed
    v.setUint32(APIC_LVT1, 0x0001_0000, true);
    v.setUint32(0x340, 0xdead_beef, true);
    expect(configureLapic(state)).toBe(state);
    expect(v.getUint32(APIC_LVT0, true)).toBe(0x0001_0700);
    expect(v.getUint32(APIC_LVT1, true)).toBe(0x0001_0400);
    expect(v.getUint32(0x340, true)).toBe(0xdead_beef);
  });

  it('replaces only the delivery mode bits', () => {
    expect(setDeliveryMode(0xffff_ffff, 4)).toBe(0xffff_fcff);
    expect(setDeliveryMode(0, 7)).toBe(0x700);
  });

  it('rejects a short buffer', () => expect(() => configureLapic(new Uint8Array(100))).toThrow(/1024/));
});
