import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { resolveOptions } from '../../src/vm/options';

describe('VirtualMachine options', () => {
  it('applies crosvm defaults: 1 vCPU, 256 MiB', () => {
    const o = resolveOptions({ kernel: 'k' });
    expect(o.cpus).toBe(1);
    expect(o.mem).toBe(256);
    expect(o.params).toEqual([]);
  });

  it('splits params given as a string or array', () => {
    expect(resolveOptions({ kernel: 'k', params: 'a=1  b' }).params).toEqual(['a=1', 'b']);
    expect(resolveOptions({ kernel: 'k', params: ['a=1 b', 'c'] }).params).toEqual(['a=1', 'b', 'c']);
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['kernel', { kernel: '' }, /^kernel is required/],
    ['cpus', { kernel: 'k', cpus: 0 }, /^cpus must be an integer from 1 to 254, got 0$/],
    ['cpus', { kernel: 'k', cpus: 1.5 }, /^cpus must be an integer/],
    ['cpus', { kernel: 'k', cpus: 255 }, /^cpus must be an integer from 1 to 254, got 255$/],
    ['mem', { kernel: 'k', mem: 1 }, /^mem must be an integer number of MiB from 16 to \d+, got 1$/],
    ['mem', { kernel: 'k', mem: '256' }, /^mem must be an integer number of MiB/],
    ['initrd', { kernel: 'k', initrd: '' }, /^initrd must be the path/],
    ['params', { kernel: 'k', params: 5 }, /^params must be a string or an array of strings/],
    ['devices', { kernel: 'k', devices: [{}] }, /^devices\[0\] must be a kvmkit device object/],
    ['arch', { kernel: 'k', arch: 'riscv' }, /^arch must be "x86_64" or "aarch64"/],
  ];
  it.each(bad)('rejects a bad %s with a ConfigError naming the option and the rule', (option, opts, msg) => {
    let err: unknown;
    try {
      resolveOptions(opts as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe(option === 'devices' ? 'devices[0]' : option);
    expect((err as Error).message).toMatch(msg);
  });
});
