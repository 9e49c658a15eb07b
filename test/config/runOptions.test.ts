/** crosvm's --cpus, --mem, --serial and --shared-dir syntax, and configs turned into VM options. */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors';
import { VirtioBlock } from '../../src/devices/virtio/block/VirtioBlock';
import { VirtioBalloon } from '../../src/devices/virtio/balloon/VirtioBalloon';
import { VirtioFs } from '../../src/devices/virtio/fs/VirtioFs';
import {
  emptyConfig, parseCpusOption, parseMemOption, parseSerialOption, parseSharedDirOption, toVmOptions, vmOptionsFromConfig,
} from '../../src/config';

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError, none was thrown');
}

describe('--cpus and --mem', () => {
  it('take a bare number or crosvm\'s key=value form', () => {
    expect(parseCpusOption('4')).toBe(4);
    expect(parseCpusOption('num-cores=8')).toBe(8);
    expect(parseMemOption('512')).toBe(512);
    expect(parseMemOption('size=2048')).toBe(2048);
  });

  it('reject bad values with the VM\'s rule', () => {
    expect(messageOf(() => parseCpusOption('0'))).toBe('cpus must be an integer from 1 to 254, got 0');
    expect(messageOf(() => parseCpusOption('x'))).toBe('cpus must be an integer from 1 to 254, got "x"');
    expect(messageOf(() => parseCpusOption('01'))).toBe('cpus must be an integer from 1 to 254, got "01"');
    expect(messageOf(() => parseCpusOption('num-cores=255'))).toBe('cpus must be an integer from 1 to 254, got 255');
    expect(messageOf(() => parseCpusOption('clusters=1'))).toBe('clusters is not a --cpus option (valid keys: num-cores), got "clusters=1"');
    expect(messageOf(() => parseCpusOption('2,num-cores=3'))).toBe('num-cores is given twice, got "2,num-cores=3"');
    expect(messageOf(() => parseMemOption('lots'))).toBe('mem must be an integer number of MiB from 16 to 1048576, got "lots"');
    expect(messageOf(() => parseMemOption('1G'))).toBe('mem must be an integer number of MiB from 16 to 1048576, got "1G"');
    expect(messageOf(() => parseMemOption('8'))).toBe('mem must be an integer number of MiB from 16 to 1048576, got 8');
    expect(messageOf(() => parseMemOption('size='))).toBe('mem must be an integer number of MiB from 16 to 1048576, got ""');
  });
});

describe('--serial', () => {
  it('bare, stdout, sink and file forms', () => {
    expect(parseSerialOption('')).toEqual({ type: 'stdout', stdin: true });
    expect(parseSerialOption('type=stdout,hardware=serial,num=1,console,stdin')).toEqual({ type: 'stdout', stdin: true });
    expect(parseSerialOption('stdout,stdin=false')).toEqual({ type: 'stdout', stdin: false });
    expect(parseSerialOption('sink')).toEqual({ type: 'sink', stdin: true });
    expect(parseSerialOption('type=file,path=/tmp/console.log')).toEqual({ type: 'file', path: '/tmp/console.log', stdin: true });
  });

  it('names what is wrong', () => {
    expect(messageOf(() => parseSerialOption('tty'))).toBe('type must be stdout, file or sink, got "tty"');
    expect(messageOf(() => parseSerialOption('type=unix,path=/s'))).toBe('type is a crosvm serial type that kvmkit does not support (use stdout, file or sink), got "unix"');
    expect(messageOf(() => parseSerialOption('stdout,stdin=maybe'))).toBe('stdin must be true or false, got "maybe"');
    expect(messageOf(() => parseSerialOption('stdout,num=2'))).toBe('num must be 1 (kvmkit has one serial port, COM1), got "2"');
    expect(messageOf(() => parseSerialOption('stdout,hardware=virtio-console'))).toBe('hardware must be serial (kvmkit emulates one 8250 UART), got "virtio-console"');
    expect(messageOf(() => parseSerialOption('file'))).toBe('path is required with type=file, got "file"');
    expect(messageOf(() => parseSerialOption('stdout,type=sink'))).toBe('type is given twice, got "stdout,type=sink"');
  });
});

describe('--shared-dir', () => {
  it('parses the documented form into virtio-fs options, only the keys given (the device has the defaults)', () => {
    expect(parseSharedDirOption('/srv/share:my_tag:type=fs:cache=auto:timeout=5:writeback=false')).toEqual({
      sharedDir: '/srv/share', tag: 'my_tag', cache: 'auto', timeout: 5, writeback: false,
    });
    expect(parseSharedDirOption('/srv/share:t:type=fs')).toEqual({ sharedDir: '/srv/share', tag: 't' });
    expect(parseSharedDirOption('rel:t:writeback=true:type=FS:timeout=0:cache=never')).toEqual({ sharedDir: 'rel', tag: 't', cache: 'never', timeout: 0, writeback: true });
    expect(parseSharedDirOption('/srv:t:type=fs:allowlist-socket=/run/al.sock')).toEqual({ sharedDir: '/srv', tag: 't', allowlistSocket: '/run/al.sock' });
    expect(parseSharedDirOption('/srv:t:type=fs:allowlist_socket=/run/al.sock')).toEqual({ sharedDir: '/srv', tag: 't', allowlistSocket: '/run/al.sock' });
  });

  it('rejects every bad field', () => {
    const cases: [string, string][] = [
      ['', 'shared-dir needs the host directory first: PATH:TAG:type=fs, got ""'],
      [':t:type=fs', 'shared-dir needs the host directory first: PATH:TAG:type=fs, got ":t:type=fs"'],
      ['/d', 'tag is required as the second field: PATH:TAG:type=fs, got "/d"'],
      ['/d::type=fs', 'tag is required as the second field: PATH:TAG:type=fs, got "/d::type=fs"'],
      [`/d:${'t'.repeat(37)}:type=fs`, `tag must be at most 36 bytes of UTF-8, got "${'t'.repeat(37)}"`],
      ['/d:t', 'type is required: add :type=fs (kvmkit shares directories with virtio-fs; crosvm\'s default p9 is not supported), got "/d:t"'],
      ['/d:t:type=9p', 'type must be fs: kvmkit has no virtio-9p device, got "9p"'],
      ['/d:t:type=nfs', 'type must be fs, got "nfs"'],
      ['/d:t:type=fs:cache=maybe', 'cache must be never, auto or always, got "maybe"'],
      ['/d:t:type=fs:timeout=-1', 'timeout must be a whole number of seconds, got "-1"'],
      ['/d:t:type=fs:timeout=1.5', 'timeout must be a whole number of seconds, got "1.5"'],
      ['/d:t:type=fs:writeback=yes', 'writeback must be true or false, got "yes"'],
      ['/d:t:type=fs:allowlist-socket=', 'allowlist_socket must be the path of a Unix socket to create, got ""'],
      ['/d:t:type=fs:allowlist_socket=/a:allowlist-socket=/b', 'allowlist-socket is given twice, got "/d:t:type=fs:allowlist_socket=/a:allowlist-socket=/b"'],
      ['/d:t:type=fs:writeback', 'shared-dir options after PATH:TAG must be key=value ("writeback" is not), got "/d:t:type=fs:writeback"'],
      ['/d:t:type=fs:dax=true', 'dax is a crosvm --shared-dir option that kvmkit does not support, got "/d:t:type=fs:dax=true"'],
      ['/d:t:type=fs:colour=red', 'colour is not a --shared-dir option (valid keys: type, cache, timeout, writeback, allowlist_socket, allowlist-socket), got "/d:t:type=fs:colour=red"'],
      ['/d:t:type=fs:cache=auto:cache=never', 'cache is given twice, got "/d:t:type=fs:cache=auto:cache=never"'],
    ];
    for (const [text, message] of cases) expect(messageOf(() => parseSharedDirOption(text)), text).toBe(message);
  });
});

describe('toVmOptions / vmOptionsFromConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmkit-vmopts-'));
  const img = (name: string): string => {
    const p = join(dir, name);
    writeFileSync(p, Buffer.alloc(1 << 20));
    return p;
  };

  it('constructs the block devices in order, root first as listed, with the once-only options', async () => {
    const root = img('root.img');
    const home = img('home.img');
    const o = await vmOptionsFromConfig({ kernel: 'bzImage', 'no-balloon': true, cpus: { 'num-cores': 2 }, mem: 512, params: ['quiet'], initrd: 'initrd.img', block: [{ path: root, root: true, ro: true }, `${home},id=HOME`] });
    try {
      expect(o).toMatchObject({ kernel: 'bzImage', cpus: 2, mem: 512, params: ['quiet'], initrd: 'initrd.img' });
      expect(o.devices).toHaveLength(2);
      const [a, b] = o.devices as VirtioBlock[];
      expect(a).toBeInstanceOf(VirtioBlock);
      expect([a!.path, a!.root, a!.readOnly]).toEqual([root, true, true]);
      expect([b!.path, b!.root, b!.readOnly, b!.id]).toEqual([home, false, false, 'HOME']);
    } finally {
      await Promise.all((o.devices as VirtioBlock[]).map((d) => d.close()));
    }
  });

  it('leaves out what was not given, so the VM applies its defaults; a balloon is there unless no-balloon, as in crosvm', async () => {
    const o = await toVmOptions({ ...emptyConfig(), kernel: 'k' });
    expect(o.devices).toHaveLength(1);
    expect(o.devices![0]).toBeInstanceOf(VirtioBalloon);
    expect({ ...o, devices: [] }).toEqual({ kernel: 'k', params: [], devices: [] });
    expect((await vmOptionsFromConfig({ kernel: 'k', 'no-balloon': true })).devices).toEqual([]);
    // the balloon follows the disks, so block devices keep slots 1, 2, ...
    const disk = img('first.img');
    const withDisk = await vmOptionsFromConfig({ kernel: 'k', block: [disk] });
    expect(withDisk.devices!.map((d) => d.deviceKind)).toEqual(['virtio-blk', 'virtio-balloon']);
    await Promise.all(withDisk.devices!.map((d) => (d as VirtioBlock).close()));
  });

  it('requires a kernel', async () => {
    await expect(toVmOptions(emptyConfig())).rejects.toThrow('kernel is required: give KERNEL on the command line, --kernel, or "kernel" in a --cfg file');
  });

  it('shared-dir gives virtio-fs devices after the disks and before the balloon, with the keys given', async () => {
    const share = mkdtempSync(join(dir, 'share-'));
    const disk = img('fs-order.img');
    const o = await vmOptionsFromConfig({ kernel: 'k', block: [disk], 'shared-dir': [`${share}:one:type=fs:cache=never`, `${share}:two:type=fs:timeout=9:writeback=true`] });
    try {
      expect(o.devices!.map((d) => d.deviceKind)).toEqual(['virtio-blk', 'virtio-fs', 'virtio-fs', 'virtio-balloon']);
      const [, one, two] = o.devices as VirtioFs[];
      expect([one!.tag, one!.cache, one!.timeout, one!.writeback]).toEqual(['one', 'never', 0, false]); // the device's default timeout for cache=never
      expect([two!.tag, two!.cache, two!.timeout, two!.writeback]).toEqual(['two', 'auto', 9, true]);
    } finally {
      await Promise.all((o.devices as VirtioBlock[]).map((d) => d.close()));
    }
    await expect(vmOptionsFromConfig({ kernel: 'k', 'shared-dir': `${join(dir, 'no-such-dir')}:t:type=fs` })).rejects.toThrow(/no-such-dir/);
  });

  it('closes the images it opened when a later one fails', async () => {
    const ok = img('ok.img');
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    await expect(vmOptionsFromConfig({ kernel: 'k', block: [ok, ok, join(dir, 'missing.img')] })).rejects.toThrow(/missing\.img/);
    const share = mkdtempSync(join(dir, 'share-'));
    await expect(vmOptionsFromConfig({ kernel: 'k', block: [ok], 'shared-dir': [`${share}:a:type=fs`, `${join(dir, 'gone')}:b:type=fs`] })).rejects.toThrow(/gone/);
    expect(fds()).toBe(before);
  });

  it('passes the socket option through (the VM serves it, naming it kvmkit-<pid>.sock in a directory)', async () => {
    const o = await toVmOptions({ ...emptyConfig(), kernel: 'k', socket: dir, noBalloon: true });
    expect(o).toEqual({ kernel: 'k', params: [], devices: [], socket: dir });
  });
});
