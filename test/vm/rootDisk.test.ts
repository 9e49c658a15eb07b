import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, VirtualMachine, VirtioBlock, VirtioRng } from '../../src';
import { rootDiskParams, virtioDiskName } from '../../src/vm/rootDisk';

describe('virtio disk names', () => {
  it('follow Linux virtblk_name_format: vda..vdz, vdaa..vdzz, vdaaa', () => {
    expect([0, 1, 25, 26, 27, 51, 52, 701, 702].map(virtioDiskName)).toEqual(['vda', 'vdb', 'vdz', 'vdaa', 'vdab', 'vdaz', 'vdba', 'vdzz', 'vdaaa']);
    expect(() => virtioDiskName(-1)).toThrow(RangeError);
  });
});

describe('root option', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-root-'));
  const img = (n: string): string => {
    const p = join(dir, n);
    writeFileSync(p, Buffer.alloc(1 << 20));
    return p;
  };
  const a = img('a.img');
  const b = img('b.img');
  const c = img('c.img');

  it('names the root disk by its position among the block devices, ro or rw', () => {
    expect(rootDiskParams([new VirtioRng(), new VirtioBlock({ path: a }), new VirtioBlock({ path: b, root: true })])).toEqual(['root=/dev/vdb', 'rw']);
    expect(rootDiskParams([new VirtioBlock({ path: a, root: true, ro: true }), new VirtioBlock({ path: b })])).toEqual(['root=/dev/vda', 'ro']);
    expect(rootDiskParams([new VirtioBlock({ path: a }), new VirtioRng()])).toEqual([]);
  });

  it('goes on the kernel command line before the user params (which can override it)', () => {
    const vm = new VirtualMachine({ kernel: 'k', params: 'quiet', devices: [new VirtioBlock({ path: a }), new VirtioBlock({ path: b }), new VirtioBlock({ path: c, root: true, ro: true })] });
    expect(vm.options.params).toEqual(['root=/dev/vdc', 'ro', 'quiet']);
  });

  it('more than one root disk is a ConfigError naming root', () => {
    const make = () => new VirtualMachine({ kernel: 'k', devices: [new VirtioBlock({ path: a, root: true }), new VirtioBlock({ path: b }), new VirtioBlock({ path: c, root: true })] });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(/root may be set on one block device only, got 2 \(disks vda, vdc\)/);
  });
});
