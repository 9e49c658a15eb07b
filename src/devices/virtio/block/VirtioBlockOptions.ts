/**
 * The options of a virtio-blk device and their rules, shared by `new VirtioBlock()` and the
 * crosvm-style `--block` parser (config/blockOption.ts). Errors name the crosvm option
 * (`block_size`, `o_direct`) so both spellings of a machine get the same message.
 * @module
 */
import { ConfigError } from '../../../errors';
import { checkBlockSize } from '../../../disk/RawDiskImage';

/** Options of `new VirtioBlock()`, the same as crosvm's `--block` (docs: crosvm `--block`). */
export interface VirtioBlockOptions {
  /** Disk image file (raw). */
  path: string;
  /** Read-only: VIRTIO_BLK_F_RO, writes fail with IOERR, the file is opened O_RDONLY. Default false. */
  ro?: boolean;
  /**
   * This disk is the guest's root file system: the VM adds `root=/dev/vdX ro|rw` to the kernel
   * command line (X from the disk's position among the block devices). At most one per VM.
   */
  root?: boolean;
  /** DISCARD and WRITE_ZEROES supported, holes allowed; false allocates the whole image at start. Default true. */
  sparse?: boolean;
  /** Open the image with O_DIRECT (crosvm `o_direct`). Default false. */
  directIo?: boolean;
  /** Logical block size the guest sees (blk_size): a power of two >= 512. Default 512. */
  blockSize?: number;
  /** Serial number the guest reads with GET_ID (`/sys/block/vdX/serial`): at most 20 printable ASCII characters. */
  id?: string;
}

/** Options after validation, with defaults filled in. */
export interface ResolvedBlockOptions {
  path: string;
  ro: boolean;
  root: boolean;
  sparse: boolean;
  directIo: boolean;
  blockSize: number;
  id: string | undefined;
}

/** Longest serial (virtio 1.2 §5.2.6: "a NUL-padded ASCII string up to 20 bytes long"). */
export const MAX_ID_LENGTH = 20;

/**
 * Check `options` and fill in the defaults.
 * @throws ConfigError naming the option, e.g. `block_size must be a power of two >= 512, got 1000`
 */
export function resolveBlockOptions(options: VirtioBlockOptions): ResolvedBlockOptions {
  if (typeof options !== 'object' || options === null) throw new ConfigError('block', 'options must be an object', options);
  const { path, id } = options;
  if (typeof path !== 'string' || path === '') throw new ConfigError('path', 'is required: the disk image file', path);
  const bool = (name: string, v: unknown, dflt: boolean): boolean => {
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new ConfigError(name, 'must be true or false', v);
    return v;
  };
  if (id !== undefined && (typeof id !== 'string' || id.length > MAX_ID_LENGTH || !/^[\x20-\x7e]*$/.test(id))) {
    throw new ConfigError('id', `must be at most ${MAX_ID_LENGTH} printable ASCII characters`, id);
  }
  return {
    path,
    ro: bool('ro', options.ro, false),
    root: bool('root', options.root, false),
    sparse: bool('sparse', options.sparse, true),
    directIo: bool('o_direct', options.directIo, false),
    blockSize: checkBlockSize('block_size', options.blockSize ?? 512),
    id,
  };
}
