import { describe, expect, it } from 'vitest';
import { buildBootParams } from '../../../src/arch/x86_64/BootParams';
import { parseBzImage } from '../../../src/arch/x86_64/BzImage';
import { buildE820Map } from '../../../src/arch/x86_64/E820Map';
import { syntheticBzImage } from './syntheticBzImage';

describe('buildBootParams', () => {
  const header = parseBzImage(syntheticBzImage({ setupSects: 9 }), 'k');
  const page = buildBootParams({
    setupHeader: header.setupHeader,
    cmdlineAddr: 0x20000,
    initrd: { addr: 0x7fc0_0000, size: 0x123456 },
    acpiRsdpAddr: 0xe0000,
    e820: buildE820Map(256 * 1024 * 1024),
  });
  const v = new DataView(page.buffer);

  it('is one page', () => expect(page.length).toBe(4096));

  it('carries the kernel setup header at 0x1F1', () => {
    expect(page[0x1f1]).toBe(9); // setup_sects
    expect(v.getUint16(0x1fe, true)).toBe(0xaa55); // boot_flag
    expect(v.getUint32(0x202, true)).toBe(0x53726448); // "HdrS"
    expect(v.getUint16(0x206, true)).toBe(0x020f); // version
    expect(v.getUint32(0x238, true)).toBe(2047); // cmdline_size
    expect(v.getUint32(0x260, true)).toBe(0x400000); // init_size
  });

  it('fills the loader fields', () => {
    expect(v.getUint16(0x1fa, true)).toBe(0xffff); // vid_mode
    expect(page[0x210]).toBe(0xff); // type_of_loader
    expect(page[0x211]).toBe(0x81); // loadflags: LOADED_HIGH | CAN_USE_HEAP
    expect(v.getUint16(0x224, true)).toBe(0xfe00); // heap_end_ptr
    expect(v.getUint32(0x228, true)).toBe(0x20000); // cmd_line_ptr
    expect(v.getUint32(0x0c8, true)).toBe(0); // ext_cmd_line_ptr
    expect(v.getUint32(0x218, true)).toBe(0x7fc0_0000); // ramdisk_image
    expect(v.getUint32(0x21c, true)).toBe(0x123456); // ramdisk_size
    expect(v.getUint32(0x0c0, true)).toBe(0); // ext_ramdisk_image
    expect(v.getUint32(0x0c4, true)).toBe(0); // ext_ramdisk_size
    expect(v.getBigUint64(0x070, true)).toBe(0xe0000n); // acpi_rsdp_addr
    expect(page[0x1ef]).toBe(0); // sentinel
  });

  it('writes the e820 map', () => {
    expect(page[0x1e8]).toBe(4);
    expect(v.getBigUint64(0x2d0 + 3 * 20, true)).toBe(0x100000n);
  });

  it('splits addresses above 4 GiB into the ext_ fields', () => {
    const high = new DataView(
      buildBootParams({ setupHeader: header.setupHeader, cmdlineAddr: 0x1_2345_6000, initrd: { addr: 0x2_0000_1000, size: 0x1_0000_0002 }, e820: [] }).buffer,
    );
    expect(high.getUint32(0x228, true)).toBe(0x2345_6000);
    expect(high.getUint32(0x0c8, true)).toBe(1);
    expect(high.getUint32(0x218, true)).toBe(0x1000);
    expect(high.getUint32(0x0c0, true)).toBe(2);
    expect(high.getUint32(0x21c, true)).toBe(2);
    expect(high.getUint32(0x0c4, true)).toBe(1);
    expect(high.getBigUint64(0x070, true)).toBe(0n);
  });
});
