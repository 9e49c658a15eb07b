/**
 * Which paths of a share the guest may see, when an allowlist is configured (crosvm's dynamic path
 * allowlist, docs/book/src/devices/fs.md "Dynamic Path Allowlist"). Paths are relative to the
 * share's root and start with `/`.
 *
 * - An **allowed** path, and everything below it, is fully visible and writable.
 * - The directories **leading to** an allowed path are visible for traversal only: a lookup of the
 *   next component on the way succeeds, their listing shows only those components, and nothing can
 *   be created, removed or renamed in them.
 * - Everything else is invisible: lookups answer ENOENT, listings leave it out.
 * - An empty allowlist shows an empty root.
 *
 * {@link Allowlist.allow} and {@link Allowlist.revoke} are atomic: every path is checked first and
 * a single bad one throws {@link AllowlistError} and changes nothing (crosvm rolls back the same
 * way). Removing a path that was not allowed is an error too, as in crosvm.
 *
 * Names are compared as the bytes the guest sends: a component is kept as the `latin1` string of
 * its UTF-8 bytes ({@link componentKey}), so a guest name matches an allowlist entry exactly when
 * their bytes are equal.
 * @module
 */
import { KvmkitError } from '../errors';

/** An allowlist command named a malformed path or removed a path that was not allowed. Nothing changed. */
export class AllowlistError extends KvmkitError {
  constructor(
    message: string,
    /** The offending path, as given. */
    readonly path: unknown,
  ) {
    super(message);
  }
}

/** What a directory listing may show (see {@link Allowlist.listingFilter}). */
export type ListingFilter =
  | { kind: 'all' }
  | { kind: 'only'; names: ReadonlySet<string> }
  | { kind: 'none' };

/** Access granted to a path. */
const enum Access {
  None = 0,
  Traverse = 1,
  Full = 2,
}

interface Node {
  allowed: boolean;
  children: Map<string, Node>;
}

/** The key of a path component: the `latin1` string of its bytes (guest names are bytes). */
export function componentKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * Split an allowlist path into component keys. `/` alone is the root (no components); `.` and
 * empty components (`//`) are skipped.
 * @throws AllowlistError unless `path` is a string starting with `/`, without `..` components or NUL
 */
export function parseAllowlistPath(path: unknown): string[] {
  if (typeof path !== 'string') throw new AllowlistError(`allowlist path must be a string, got ${JSON.stringify(path) ?? String(path)}`, path);
  if (!path.startsWith('/')) throw new AllowlistError(`allowlist path ${JSON.stringify(path)} must start with / (relative to the share's root)`, path);
  if (path.includes('\0')) throw new AllowlistError(`allowlist path ${JSON.stringify(path)} contains a NUL character`, path);
  const out: string[] = [];
  for (const c of path.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new AllowlistError(`allowlist path ${JSON.stringify(path)} must not contain '..' components`, path);
    out.push(Buffer.from(c, 'utf8').toString('latin1'));
  }
  return out;
}

/** A set of allowed paths and the visibility rules above. */
export class Allowlist {
  private root: Node = { allowed: false, children: new Map() };

  /** @param paths paths allowed from the start */
  constructor(paths: readonly string[] = []) {
    this.allow(paths);
  }

  /**
   * Allow `paths` (and everything below them). Atomic.
   * @throws AllowlistError for a malformed path; nothing changes then
   */
  allow(paths: readonly string[]): void {
    const parsed = checkList(paths).map(parseAllowlistPath);
    for (const comps of parsed) {
      let n = this.root;
      for (const c of comps) {
        let child = n.children.get(c);
        if (!child) {
          child = { allowed: false, children: new Map() };
          n.children.set(c, child);
        }
        n = child;
      }
      n.allowed = true;
    }
  }

  /**
   * Stop allowing `paths`. Paths below a revoked one that were allowed themselves stay allowed (and
   * keep their ancestors traversable). Atomic.
   * @throws AllowlistError for a malformed path or one that is not in the allowlist; nothing changes then
   */
  revoke(paths: readonly string[]): void {
    const parsed = checkList(paths).map((p) => ({ p, comps: parseAllowlistPath(p) }));
    const next = cloneNode(this.root);
    for (const { p, comps } of parsed) {
      const chain: Node[] = [next];
      for (const c of comps) {
        const child = chain[chain.length - 1]!.children.get(c);
        if (!child) break;
        chain.push(child);
      }
      const target = chain.length === comps.length + 1 ? chain[chain.length - 1]! : undefined;
      if (!target?.allowed) throw new AllowlistError(`allowlist path ${JSON.stringify(p)} is not in the allowlist`, p);
      target.allowed = false;
      // Prune nodes that lead nowhere any more, bottom-up.
      for (let i = comps.length; i > 0; i--) {
        const n = chain[i]!;
        if (n.allowed || n.children.size > 0) break;
        chain[i - 1]!.children.delete(comps[i - 1]!);
      }
    }
    this.root = next;
  }

  /** The allowed paths, sorted (as `/a/b`, decoded from UTF-8). */
  paths(): string[] {
    const out: string[] = [];
    const walk = (n: Node, prefix: string[]): void => {
      if (n.allowed) out.push('/' + prefix.map((c) => Buffer.from(c, 'latin1').toString('utf8')).join('/'));
      for (const [name, child] of n.children) walk(child, [...prefix, name]);
    };
    walk(this.root, []);
    return out.sort();
  }

  /** Whether the path (component keys from the root) may be looked up, listed or opened. */
  isVisible(components: readonly string[]): boolean {
    return this.access(components) !== Access.None;
  }

  /** Whether the path may be created, removed, renamed or changed: it is allowed or below an allowed path. */
  isWritable(components: readonly string[]): boolean {
    return this.access(components) === Access.Full;
  }

  /** Which entries a listing of the directory at `components` may show. */
  listingFilter(components: readonly string[]): ListingFilter {
    let n: Node = this.root;
    if (n.allowed) return { kind: 'all' };
    for (const c of components) {
      const child = n.children.get(c);
      if (!child) return { kind: 'none' };
      if (child.allowed) return { kind: 'all' };
      n = child;
    }
    return { kind: 'only', names: new Set(n.children.keys()) };
  }

  private access(components: readonly string[]): Access {
    let n: Node = this.root;
    if (n.allowed) return Access.Full;
    for (const c of components) {
      const child = n.children.get(c);
      if (!child) return Access.None;
      if (child.allowed) return Access.Full;
      n = child;
    }
    // The root is always traversable (it is mounted); an inner node leads to an allowed path.
    return Access.Traverse;
  }
}

function checkList(paths: unknown): readonly unknown[] {
  if (!Array.isArray(paths)) throw new AllowlistError(`allowlist paths must be an array of strings, got ${JSON.stringify(paths) ?? String(paths)}`, paths);
  return paths as readonly unknown[];
}

function cloneNode(n: Node): Node {
  return { allowed: n.allowed, children: new Map([...n.children].map(([k, v]) => [k, cloneNode(v)])) };
}
