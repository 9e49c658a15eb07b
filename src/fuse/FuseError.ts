/**
 * The answer to one FUSE request is an errno: the file-system code throws {@link FuseError} and the
 * server turns it into `fuse_out_header.error = -errno`. It never leaves the device.
 * @module
 */
import { errnoName, KvmkitError } from '../errors';

/** A FUSE request fails with `errno` (a positive Linux errno value). */
export class FuseError extends KvmkitError {
  constructor(
    readonly errno: number,
    what?: string,
  ) {
    super(`${what ?? 'FUSE request'} failed: ${errnoName(errno)} (errno ${errno})`);
  }
}

/** Throw a {@link FuseError} with `errno`. */
export function fail(errno: number, what?: string): never {
  throw new FuseError(errno, what);
}
