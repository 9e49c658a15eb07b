import { describe, expect, it } from 'vitest';
import { decodeRecoverable, modrmLength } from '../../src/vm/x86Recovery';

const b = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/ /g, ''), 'hex'));

describe('PVM emulation-failure recovery decoder', () => {
  it('recognises int3, fwait and ldmxcsr with their lengths', () => {
    expect(decodeRecoverable(b('cc 90'))).toEqual({ kind: 'breakpoint', length: 1 });
    expect(decodeRecoverable(b('9b db e3'))).toEqual({ kind: 'fwait', length: 1 });
    // ldmxcsr 0x1c(%rsp): 0f ae 54 24 1c
    expect(decodeRecoverable(b('0f ae 54 24 1c'))).toEqual({ kind: 'ldmxcsr', length: 5 });
    // ldmxcsr (%rax): 0f ae 10
    expect(decodeRecoverable(b('0f ae 10'))).toEqual({ kind: 'ldmxcsr', length: 3 });
    // ldmxcsr rip+disp32: 0f ae 15 xx xx xx xx
    expect(decodeRecoverable(b('0f ae 15 00 10 00 00'))).toEqual({ kind: 'ldmxcsr', length: 7 });
    // with a REX prefix and a disp32 through SIB
    expect(decodeRecoverable(b('41 0f ae 94 24 00 01 00 00'))).toEqual({ kind: 'ldmxcsr', length: 9 });
  });

  it('refuses everything else (those become crash exits)', () => {
    expect(decodeRecoverable(b('f3 0f b8 c0'))).toBeUndefined(); // popcnt
    expect(decodeRecoverable(b('0f ae 18'))).toBeUndefined(); // stmxcsr (reg 3)
    expect(decodeRecoverable(b('0f ae f0'))).toBeUndefined(); // mfence (mod 3)
    expect(decodeRecoverable(b('0f ae'))).toBeUndefined(); // truncated
    expect(decodeRecoverable(b(''))).toBeUndefined();
  });

  it('computes ModRM operand lengths per the SDM tables', () => {
    expect(modrmLength(b('c0'), 0)).toBe(1);
    expect(modrmLength(b('04 24'), 0)).toBe(2);
    expect(modrmLength(b('04 25 00 00 00 00'), 0)).toBe(6); // SIB with no base: disp32
    expect(modrmLength(b('44 24 08'), 0)).toBe(3);
    expect(modrmLength(b('84 24 00 01 00 00'), 0)).toBe(6);
    expect(modrmLength(b('84 24 00'), 0)).toBeUndefined();
  });
});
