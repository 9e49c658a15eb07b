/**
 * The inodes the guest knows: FUSE node ids mapped to `O_PATH` descriptors of host files, with the
 * kernel's lookup count (fuse.h: every entry reply adds one, FORGET takes `nlookup` away; at zero
 * the node id is dead and its descriptor closed). A host file (device + inode number) has one node
 * id at a time, so hard links and repeated lookups share it. Node ids are never reused.
 * @module
 */
import { cString, fsLibc } from './libcFs';

/** A host file the guest holds a node id for. */
export class Inode {
  /** Lookups not yet forgotten; the root never reaches 0. */
  nlookup = 0;
  /** Last directory it was looked up in (undefined for the root), for allowlist paths. */
  parent: Inode | undefined;
  /** Its name there, as a component key (`componentKey` in Allowlist.ts). */
  name: string | undefined;
  private procNameValue: Uint8Array | undefined;
  private procPathValue: Uint8Array | undefined;

  constructor(
    /** FUSE node id. */
    readonly nodeid: number,
    /** `O_PATH | O_NOFOLLOW` descriptor of the file; -1 once forgotten. */
    public fd: number,
    /** `dev:ino` of the host file. */
    readonly key: string,
    /** File type bits of st_mode (S_IFMT), fixed for the inode's life. */
    readonly type: number,
  ) {}

  /** `"<fd>\0"`: the name of the descriptor in /proc/self/fd (for `*at(procfd, name)` calls). */
  get procName(): Uint8Array {
    this.procNameValue ??= cString(String(this.fd));
    return this.procNameValue;
  }

  /** `"/proc/self/fd/<fd>\0"`: the magic link to the file itself (for the path-only xattr calls). */
  get procPath(): Uint8Array {
    this.procPathValue ??= cString(`/proc/self/fd/${this.fd}`);
    return this.procPathValue;
  }

  /** Path components from the share root, or undefined when the chain of parents is unknown. */
  components(): string[] | undefined {
    const out: string[] = [];
    let n: Inode = this;
    for (let depth = 0; depth < 4096; depth++) {
      if (n.nodeid === 1) return out.reverse();
      if (n.parent === undefined || n.name === undefined) return undefined;
      out.push(n.name);
      n = n.parent;
    }
    return undefined;
  }
}

/** Node id → inode, and host file → inode. */
export class InodeTable {
  private readonly byId = new Map<number, Inode>();
  private readonly byKey = new Map<string, Inode>();
  private nextId = 2;

  /** @param root the share's root, node id 1 (FUSE_ROOT_ID), kept until {@link InodeTable.clear} */
  constructor(readonly root: Inode) {
    this.install(root);
  }

  /** Inodes with a node id (including the root). */
  get size(): number {
    return this.byId.size;
  }

  /** The inode of a node id, or undefined. */
  get(nodeid: number): Inode | undefined {
    return this.byId.get(nodeid);
  }

  /** The inode of a host file (`dev:ino`), or undefined. */
  find(key: string): Inode | undefined {
    return this.byKey.get(key);
  }

  /**
   * Count one more lookup of the host file that `fd` (an `O_PATH` descriptor) refers to: the
   * existing inode (and `fd` is closed), or a new node id that takes ownership of `fd`.
   */
  ref(fd: number, key: string, type: number): Inode {
    let inode = this.byKey.get(key);
    if (inode) {
      fsLibc().close(fd);
    } else {
      inode = new Inode(this.nextId++, fd, key, type);
      this.install(inode);
    }
    inode.nlookup++;
    return inode;
  }

  /** FORGET: drop `n` lookups; at zero the node id dies and its descriptor is closed. The root stays. */
  forget(nodeid: number, n: number): void {
    const inode = this.byId.get(nodeid);
    if (!inode || inode === this.root) return;
    inode.nlookup = Math.max(0, inode.nlookup - n);
    if (inode.nlookup === 0) this.drop(inode);
  }

  /** Forget every inode but the root (DESTROY, a new INIT). */
  reset(): void {
    for (const inode of [...this.byId.values()]) if (inode !== this.root) this.drop(inode);
  }

  /** Close every descriptor, the root's too. The table is unusable afterwards. */
  clear(): void {
    this.reset();
    this.drop(this.root);
  }

  private install(inode: Inode): void {
    this.byId.set(inode.nodeid, inode);
    this.byKey.set(inode.key, inode);
  }

  private drop(inode: Inode): void {
    this.byId.delete(inode.nodeid);
    if (this.byKey.get(inode.key) === inode) this.byKey.delete(inode.key);
    if (inode.fd >= 0) fsLibc().close(inode.fd);
    inode.fd = -1;
  }
}
