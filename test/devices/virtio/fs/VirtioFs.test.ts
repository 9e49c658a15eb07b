/**
 * The virtio-fs device itself (virtio 1.2 §5.11): identity, configuration space, queues, option
 * rules, unanswerable chains, out-of-order completion of large I/O, reset, and no descriptor leaks.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/errors';
import { FS_CONFIG_SIZE, FS_QUEUE_SIZE, resolveFsOptions, VirtioFs } from '../../../../src/devices/virtio/fs';
import { VIRTIO_F_VERSION_1, VIRTIO_ID_FS } from '../../../../src/devices/virtio/constants';
import { FuseOpcode as Op } from '../../../../src/fuse/abi';
import { cleanupTempDirs, ERR, tempDir } from '../../../fuse/helpers';
import { processResources } from '../../../helpers/env';
import { EventFd } from '../../../../src/hypervisor/kvm/EventFd';
import { cat, FuseClient, le, z } from './fuseClient';

afterAll(cleanupTempDirs);

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('VirtioFs device', () => {
  it('is device type 26 with tag[36] + le32 num_request_queues, a hiprio queue and one request queue', async () => {
    const dev = new VirtioFs({ sharedDir: tempDir(), tag: 'my_shared_tag' });
    try {
      expect(dev.deviceType).toBe(VIRTIO_ID_FS);
      expect(VIRTIO_ID_FS).toBe(26);
      expect(dev.queueMaxSizes).toEqual([FS_QUEUE_SIZE, FS_QUEUE_SIZE]);
      expect(dev.deviceFeatures() & VIRTIO_F_VERSION_1).toBe(VIRTIO_F_VERSION_1);
      const cfg = dev.configSpace();
      expect(cfg.length).toBe(FS_CONFIG_SIZE);
      expect(Buffer.from(cfg.subarray(0, 13)).toString()).toBe('my_shared_tag');
      expect([...cfg.subarray(13, 36)].every((b) => b === 0)).toBe(true);
      expect(new DataView(cfg.buffer).getUint32(36, true)).toBe(1);
      const full = new VirtioFs({ sharedDir: tempDir(), tag: 'x'.repeat(36) });
      expect(Buffer.from(full.configSpace().subarray(0, 36)).toString()).toBe('x'.repeat(36));
      await full.close();
    } finally {
      await dev.close();
    }
  });

  it('validates its options with crosvm names', () => {
    const d = tempDir();
    const bad: [object, RegExp][] = [
      [{ sharedDir: d, tag: '' }, /^tag must be 1 to 36 bytes/],
      [{ sharedDir: d, tag: 'x'.repeat(37) }, /^tag must be 1 to 36 bytes/],
      [{ sharedDir: d, tag: 'é'.repeat(19) }, /^tag /], // 38 bytes of UTF-8
      [{ sharedDir: d, tag: 'a\0b' }, /^tag /],
      [{ sharedDir: '', tag: 't' }, /^shared_dir is required/],
      [{ sharedDir: d, tag: 't', cache: 'sometimes' }, /^cache must be never, auto or always/],
      [{ sharedDir: d, tag: 't', timeout: -1 }, /^timeout must be/],
      [{ sharedDir: d, tag: 't', timeout: Number.NaN }, /^timeout must be/],
      [{ sharedDir: d, tag: 't', writeback: 'yes' }, /^writeback must be true or false/],
      [{ sharedDir: d, tag: 't', allowedPaths: ['rel'] }, /^allowed_paths/],
      [{ sharedDir: d, tag: 't', allowlistSocket: '' }, /^allowlist_socket/],
      [{ sharedDir: d, tag: 't', pollMaxNs: -1 }, /^poll_max_ns must be an integer number of nanoseconds from 0 to 1000000/],
      [{ sharedDir: d, tag: 't', pollMaxNs: 1.5 }, /^poll_max_ns /],
      [{ sharedDir: d, tag: 't', pollMaxNs: 2_000_000 }, /^poll_max_ns /],
    ];
    for (const [o, re] of bad) {
      expect(() => resolveFsOptions(o as never), JSON.stringify(o)).toThrow(ConfigError);
      expect(() => resolveFsOptions(o as never)).toThrow(re);
    }
    expect(() => new VirtioFs({ sharedDir: join(d, 'missing'), tag: 't' })).toThrow(/^shared_dir must be an existing directory/);
    writeFileSync(join(d, 'file'), '');
    expect(() => new VirtioFs({ sharedDir: join(d, 'file'), tag: 't' })).toThrow(ConfigError);
    expect(resolveFsOptions({ sharedDir: d, tag: 't' })).toMatchObject({ cache: 'auto', timeout: 5, writeback: false, allowedPaths: undefined, pollMaxNs: 32_768 });
    expect(resolveFsOptions({ sharedDir: d, tag: 't', pollMaxNs: 0 }).pollMaxNs).toBe(0);
    expect(resolveFsOptions({ sharedDir: d, tag: 't', cache: 'never' }).timeout).toBe(0);
    expect(resolveFsOptions({ sharedDir: d, tag: 't', cache: 'never', timeout: 3 }).timeout).toBe(3);
    expect(resolveFsOptions({ sharedDir: d, tag: 'x'.repeat(36) }).tag.length).toBe(36);
  });

  it('serves the hiprio queue too, and returns chains it cannot answer with length 0', async () => {
    const c = FuseClient.create({ sharedDir: tempDir(), tag: 't' });
    try {
      await c.init();
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { queue: 0 })).error).toBe(0);
      expect((await c.raw(new Uint8Array(39))).used).toBe(0); // shorter than fuse_in_header
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { replySize: 15 })).used).toBe(0); // no room for a header
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { replySize: 0 })).used).toBe(0);
      const small = await c.call(Op.GETATTR, 1, new Uint8Array(16), { replySize: 16 });
      expect(small).toMatchObject({ used: 16, error: -ERR.EINVAL }); // the header fits, the attributes do not
      expect(c.dev.stats.unanswerable).toBe(3);
    } finally {
      await c.close();
    }
  });

  it('echoes unique, and answers a len that disagrees with the chain with EINVAL', async () => {
    const c = FuseClient.create({ sharedDir: tempDir(), tag: 't' });
    try {
      await c.init();
      const r = await c.call(Op.GETATTR, 1, new Uint8Array(16), { unique: 0xdead_beef_cafen });
      expect(r.unique).toBe(0xdead_beef_cafen);
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { len: 1000 })).error).toBe(-ERR.EINVAL);
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { len: 39 })).error).toBe(-ERR.EINVAL);
      expect((await c.call(Op.GETATTR, 1, new Uint8Array(16), { split: [1, 7, 20, 3] })).error).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('answers large reads and a small request sent while they are queued', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'big'), Buffer.alloc(4 << 20, 1));
    const c = FuseClient.create({ sharedDir: dir, tag: 't' }, 32 << 20);
    try {
      await c.init();
      const e = await c.lookup(1, 'big');
      const { fh } = await c.open(e.nodeid, 0);
      const reads = Promise.all([0, 1, 2].map((i) => c.read(e.nodeid, fh, i << 20, 3 << 19)));
      const small = c.getattr(e.nodeid);
      const [data, attr] = await Promise.all([reads, small]);
      expect(data.map((d) => d.length)).toEqual([3 << 19, 3 << 19, 3 << 19]);
      expect(attr.size).toBe(4 << 20);
      expect(c.dev.stats.inFlight).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('raises used-buffer interrupts from the queue thread through the irqfd the transport offers, else through the main thread', async () => {
    const c = FuseClient.create({ sharedDir: tempDir(), tag: 't' });
    const irqfd = new EventFd();
    try {
      await c.init();
      const driver = c.active.drivers[1]!;
      const interrupt = c.active.interrupt;
      // no irqfd offered (INTx, or a masked vector): the decision comes back to this thread
      driver.usedEvent = driver.usedIdx; // EVENT_IDX: interrupt for the next used entry
      const before = interrupt.used.length;
      await c.getattr(1);
      await until(() => interrupt.used.length > before);
      expect(c.dev.stats.irqfdSignals).toBe(0);
      // MSI-X unmasked: the queue thread signals the irqfd itself
      Object.assign(interrupt, { usedQueueIrqfd: (q: number) => (q === 1 ? irqfd.fd : undefined) });
      c.dev.interruptRoutingChanged();
      const seen = interrupt.used.length;
      for (let i = 0; i < 5; i++) {
        driver.usedEvent = driver.usedIdx;
        await c.getattr(1);
      }
      expect(c.dev.stats.irqfdSignals).toBe(5);
      expect(irqfd.take()).toBe(5n);
      expect(interrupt.used.length).toBe(seen);
      // routing changed back (the guest masked the vector): through this thread again
      Object.assign(interrupt, { usedQueueIrqfd: () => undefined });
      c.dev.interruptRoutingChanged();
      driver.usedEvent = driver.usedIdx;
      await c.getattr(1);
      await until(() => interrupt.used.length > seen);
      expect(irqfd.take()).toBe(0n);
    } finally {
      await c.close();
      irqfd.close();
    }
  });

  it('a device made after another one closed gets a fresh queue thread state (the thread is reused)', async () => {
    const first = tempDir();
    writeFileSync(join(first, 'secret'), 'x');
    const a = FuseClient.create({ sharedDir: first, tag: 'a', allowedPaths: ['/secret'] });
    await a.init();
    await a.lookup(1, 'secret');
    expect(a.dev.stats.chains).toBe(2);
    await a.close();
    const second = tempDir();
    writeFileSync(join(second, 'f'), 'y');
    const b = FuseClient.create({ sharedDir: second, tag: 'b' });
    try {
      expect(b.dev.stats).toMatchObject({ chains: 0, replies: 0, handles: 0 });
      await b.init();
      expect((await b.lookup(1, 'f')).nodeid).toBeGreaterThan(1); // b's share, and no allowlist of a's
      expect((await b.call(Op.LOOKUP, 1, z('secret'))).error).toBe(-ERR.ENOENT);
      expect(b.dev.stats).toMatchObject({ chains: 3, inodes: 2 });
    } finally {
      await b.close();
    }
  });

  it('a reset ends the FUSE session: the guest must INIT again and old node ids are gone', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'f'), 'x');
    const c = FuseClient.create({ sharedDir: dir, tag: 't' });
    try {
      await c.init();
      const e = await c.lookup(1, 'f');
      await c.open(e.nodeid, 0);
      c.dev.reset();
      expect(c.dev.stats.handles).toBe(0);
      expect(c.dev.stats.inodes).toBe(1);
      const again = new FuseClient(c.dev, c.mem);
      expect((await again.call(Op.GETATTR, 1, new Uint8Array(16))).error).toBe(-ERR.EIO);
      await again.init();
      expect((await again.call(Op.GETATTR, e.nodeid, new Uint8Array(16))).error).toBe(-ERR.EBADF);
    } finally {
      await c.close();
    }
  });

  it('a reset returns once the queue thread stopped: nothing writes guest RAM or the used ring after it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'big'), Buffer.alloc(8 << 20, 0x11));
    const c = FuseClient.create({ sharedDir: dir, tag: 't' }, 32 << 20);
    try {
      await c.init();
      const e = await c.lookup(1, 'big');
      const { fh } = await c.open(e.nodeid, 0);
      const driver = c.active.drivers[1]!;
      const reqAddr = c.alloc(80);
      c.mem.write(reqAddr, cat(le().u32(80).u32(Op.READ).u64(99).u64(e.nodeid).u32(0).u32(0).u32(0).u32(0).bytes(), c.readArgs(fh, 0, 8 << 20)));
      const replyAddr = c.alloc((8 << 20) + 16);
      // 6 reads of 8 MiB (a 16-entry ring): the queue thread is busy with them when the reset comes
      const usedBefore = driver.usedIdx;
      for (let i = 0; i < 6; i++) driver.addChain([{ addr: reqAddr, len: 80 }, { addr: replyAddr, len: (8 << 20) + 16, write: true }]);
      c.dev.processQueue(1);
      c.dev.reset(); // blocks until the queue thread has taken it
      const usedAtReset = driver.usedIdx;
      expect(usedAtReset - usedBefore).toBeLessThanOrEqual(6); // the batch it was serving is finished first
      c.mem.write(replyAddr, new Uint8Array(64).fill(0x5a)); // the driver reuses its buffer at once
      await new Promise((r) => setTimeout(r, 300));
      expect([...c.mem.read(replyAddr, 64)].every((b) => b === 0x5a)).toBe(true);
      expect(driver.usedIdx).toBe(usedAtReset);
      expect(c.dev.stats).toMatchObject({ handles: 0, inodes: 1, inFlight: 0 });
    } finally {
      await c.close();
    }
  });

  it('closes every descriptor it opened', async () => {
    const dir = tempDir();
    for (let i = 0; i < 50; i++) writeFileSync(join(dir, `f${i}`), 'x');
    const before = processResources().fds;
    const c = FuseClient.create({ sharedDir: dir, tag: 't' });
    await c.init();
    for (let i = 0; i < 50; i++) {
      const e = await c.lookup(1, `f${i}`);
      await c.open(e.nodeid, 0);
    }
    await c.list(1, true);
    await c.call(Op.OPENDIR, 1, le().u32(0).u32(0).bytes());
    expect(processResources().fds).toBeGreaterThan(before + 100);
    await c.close();
    expect(readdirSync('/proc/self/fd').length).toBe(before);
  });
});
