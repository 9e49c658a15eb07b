// A minimal synthetic bzImage: a boot protocol header (Documentation/arch/x86/boot.rst offsets)
// followed by a protected-mode payload of recognizable bytes.

export interface SyntheticBzImageOptions {
  setupSects?: number;
  version?: number;
  xloadflags?: number;
  loadflags?: number;
  payloadSize?: number;
  initSize?: number;
  prefAddress?: number;
  relocatable?: boolean;
  kernelAlignment?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  bootFlag?: number;
  magic?: string;
  /** Byte at 0x201 (header end = 0x202 + this). */
  jumpOffset?: number;
}

export function syntheticBzImage(o: SyntheticBzImageOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const sects = setupSects === 0 ? 4 : setupSects;
  const payloadSize = o.payloadSize ?? 0x1000;
  const bytes = new Uint8Array((sects + 1) * 512 + payloadSize);
  const v = new DataView(bytes.buffer);
  bytes[0x1f1] = setupSects;
  v.setUint16(0x1fe, o.bootFlag ?? 0xaa55, true);
  bytes[0x200] = 0xeb;
  bytes[0x201] = o.jumpOffset ?? 0x6a;
  const magic = o.magic ?? 'HdrS';
  for (let i = 0; i < 4; i++) bytes[0x202 + i] = magic.charCodeAt(i);
  v.setUint16(0x206, o.version ?? 0x020f, true);
  bytes[0x211] = o.loadflags ?? 0x01;
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(0x230, o.kernelAlignment ?? 0x200000, true);
  bytes[0x234] = o.relocatable === false ? 0 : 1;
  bytes[0x235] = 21;
  v.setUint16(0x236, o.xloadflags ?? 0x7f, true);
  v.setUint32(0x238, o.cmdlineSize ?? 2047, true);
  v.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x1000000), true);
  v.setUint32(0x260, o.initSize ?? 0x400000, true);
  // Payload: byte i = i & 0xff, XOR 0x5a so it differs from the header.
  const start = (sects + 1) * 512;
  for (let i = 0; i < payloadSize; i++) bytes[start + i] = (i & 0xff) ^ 0x5a;
  return bytes;
}
