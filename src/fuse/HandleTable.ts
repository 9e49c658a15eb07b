/**
 * Open files and directories of the guest: FUSE file handles (`fh`) mapped to host descriptors.
 * A handle belongs to the node id that opened it and to one kind (file or directory); using it
 * with another node id or kind is EBADF, as in crosvm. Handles are never reused. A handle in use
 * by an asynchronous I/O is pinned: releasing it closes the descriptor only when the I/O is done,
 * so a descriptor number is never closed (and reused) under a running system call.
 * @module
 */
import { fail } from './FuseError';
import { E, fsLibc } from './libcFs';

/** One open file or directory. */
export interface Handle {
  readonly fh: number;
  readonly nodeid: number;
  readonly fd: number;
  readonly dir: boolean;
  /** Asynchronous I/O running on the descriptor. */
  pins: number;
  /** Released by the guest; closed when the last pin goes. */
  released: boolean;
}

/** fh → open descriptor. */
export class HandleTable {
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;

  /** Handles the guest has not released. */
  get size(): number {
    return this.handles.size;
  }

  /** Register `fd`, opened for `nodeid`; returns the new fh. */
  add(nodeid: number, fd: number, dir: boolean): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { fh, nodeid, fd, dir, pins: 0, released: false });
    return fh;
  }

  /**
   * The handle `fh` of `nodeid`, of the given kind.
   * @throws FuseError EBADF for an unknown handle, another node id's handle or the wrong kind
   */
  get(fh: number, nodeid: number, dir: boolean): Handle {
    const h = this.handles.get(fh);
    if (!h || h.nodeid !== nodeid || h.dir !== dir) fail(E.BADF, `handle ${fh} of node ${nodeid}`);
    return h;
  }

  /** RELEASE / RELEASEDIR. @throws FuseError EBADF as {@link HandleTable.get} */
  release(fh: number, nodeid: number, dir: boolean): void {
    const h = this.get(fh, nodeid, dir);
    this.handles.delete(fh);
    h.released = true;
    if (h.pins === 0) fsLibc().close(h.fd);
  }

  /** Keep `h`'s descriptor open until {@link HandleTable.unpin}. */
  pin(h: Handle): void {
    h.pins++;
  }

  /** The I/O that pinned `h` is over; closes the descriptor if `h` was released meanwhile. */
  unpin(h: Handle): void {
    h.pins--;
    if (h.pins === 0 && h.released) fsLibc().close(h.fd);
  }

  /** Release every handle (DESTROY, a new INIT, device reset). */
  reset(): void {
    for (const h of [...this.handles.values()]) this.release(h.fh, h.nodeid, h.dir);
  }
}
