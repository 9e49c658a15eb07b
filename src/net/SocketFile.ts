/**
 * The file of a listening Unix socket: removed once, when its server closes or, at the latest,
 * when the process exits (a socket file must not outlive its server).
 * @module
 */
import { unlinkSync } from 'node:fs';
import { KvmkitError } from '../errors';

const live = new Set<SocketFile>();
let exitHookInstalled = false;

/** A socket file to remove on close or process exit. */
export class SocketFile {
  #removed = false;

  /**
   * @param path the socket file
   * @param what how errors name it (`control socket`)
   * @param onError where a failed removal is reported (not ENOENT: already gone is fine)
   */
  constructor(
    readonly path: string,
    private readonly what: string,
    private readonly onError: (err: Error) => void,
  ) {
    live.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const f of live) f.remove();
      });
    }
  }

  /** Remove the file (idempotent). */
  remove(): void {
    live.delete(this);
    if (this.#removed) return;
    this.#removed = true;
    try {
      unlinkSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.onError(new KvmkitError(`removing ${this.what} ${this.path} failed`, { cause: e }));
    }
  }
}
