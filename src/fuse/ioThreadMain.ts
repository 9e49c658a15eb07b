/**
 * The body of a FUSE I/O thread: waits in its mailbox (a SharedArrayBuffer) for one system call,
 * runs it synchronously through koffi on the caller's buffers (guest RAM addresses, no copy) and
 * posts the result. Shipped to the thread as source text (`new Worker(source, { eval: true })`),
 * so it must be self-contained: it closes over nothing and gets `require` from its caller.
 *
 * Mailbox layout (see IoThreads.ts): Int32 `state` at byte 0 (IDLE, BUSY, DONE, STOP), then
 * Float64 arguments from byte 8: op, fd, a, b, c, d, and the result (bytes or -errno) last.
 * @module
 */

/** `require` of the worker's CommonJS scope. */
export type NodeRequire = (id: string) => unknown;

/** Run the mailbox loop until STOP. Called in the worker thread only. */
export function ioThreadMain(nodeRequire: NodeRequire): void {
  const threads = nodeRequire('node:worker_threads') as typeof import('node:worker_threads');
  const d = threads.workerData as { koffiPath: string; sab: SharedArrayBuffer; codes: Record<string, number> };
  const koffi = nodeRequire(d.koffiPath) as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  type Fn = (...args: number[]) => number;
  const preadv = lib.func('intptr_t preadv(int fd, uintptr_t iov, int iovcnt, int64_t offset)') as Fn;
  const pwritev = lib.func('intptr_t pwritev(int fd, uintptr_t iov, int iovcnt, int64_t offset)') as Fn;
  const fsync = lib.func('int fsync(int fd)') as Fn;
  const fdatasync = lib.func('int fdatasync(int fd)') as Fn;
  const fallocate = lib.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as Fn;
  const K = d.codes;
  const state = new Int32Array(d.sab, 0, 1);
  const a = new Float64Array(d.sab, 8, 7);
  for (;;) {
    const s = Atomics.load(state, 0);
    if (s === K.STOP) return;
    if (s !== K.BUSY) {
      Atomics.wait(state, 0, s); // until the main thread publishes work (or STOP)
      continue;
    }
    const op = a[0]!;
    const fd = a[1]!;
    let r: number;
    if (op === K.PREADV) r = preadv(fd, a[2]!, a[3]!, a[4]!);
    else if (op === K.PWRITEV) r = pwritev(fd, a[2]!, a[3]!, a[4]!);
    else if (op === K.FSYNC) r = fsync(fd);
    else if (op === K.FDATASYNC) r = fdatasync(fd);
    else if (op === K.FALLOCATE) r = fallocate(fd, a[2]!, a[3]!, a[4]!);
    else r = -K.ENOSYS;
    if (r === -1) r = -koffi.errno();
    a[6] = r;
    Atomics.store(state, 0, K.DONE);
    Atomics.notify(state, 0);
  }
}
