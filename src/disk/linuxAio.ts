/**
 * Linux native AIO system calls (`io_setup`, `io_destroy`, `io_submit`, `io_getevents`) and the
 * structures they take, for AioEngine. Without O_DIRECT, AIO reads and writes block inside
 * `io_submit`, so only O_DIRECT images use it. Numbers and layouts are from
 * include/uapi/linux/aio_abi.h and the architectures' syscall tables; glibc has no wrappers, so
 * the calls go through `syscall(2)`.
 * @module
 */
import koffi from 'koffi';

/** System call numbers: arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h (aarch64). */
export const AIO_SYSCALLS = process.arch === 'arm64'
  ? { setup: 0, destroy: 1, submit: 2, getevents: 4 }
  : { setup: 206, destroy: 207, submit: 209, getevents: 208 };

/** enum IOCB_CMD_* (aio_abi.h). */
export const IOCB_CMD = { PREAD: 0, PWRITE: 1, FDSYNC: 3, PREADV: 7, PWRITEV: 8 } as const;

/**
 * struct iocb (aio_abi.h, little-endian field order): aio_data u64 @0, aio_key u32 @8,
 * aio_rw_flags @12, aio_lio_opcode u16 @16, aio_reqprio @18, aio_fildes u32 @20, aio_buf u64 @24,
 * aio_nbytes u64 @32, aio_offset s64 @40, aio_reserved2 @48, aio_flags u32 @56, aio_resfd u32 @60.
 */
export const IOCB = { size: 64, data: 0, opcode: 16, fildes: 20, buf: 24, nbytes: 32, offset: 40 } as const;

/** struct io_event (aio_abi.h): data u64 @0, obj u64 @8, res s64 @16, res2 s64 @24. */
export const IO_EVENT = { size: 32, data: 0, res: 16 } as const;

/** `syscall(2)` as koffi declares it: variadic, each argument given as (type, value). */
export const SYSCALL_PROTOTYPE = 'long syscall(long number, ...)';

type Syscall = (nr: number, ...typedArgs: unknown[]) => number;
let syscallFn: Syscall | undefined;
function syscall(): Syscall {
  syscallFn ??= koffi.load('libc.so.6').func(SYSCALL_PROTOTYPE) as Syscall;
  return syscallFn;
}

/**
 * Create an AIO context for up to `maxEvents` requests in flight.
 * @returns the context id (a BigInt), or the errno when the kernel refuses (ENOSYS without
 *   CONFIG_AIO, EAGAIN past /proc/sys/fs/aio-max-nr): the caller then uses blocking threads
 */
export function aioSetup(maxEvents: number): { ctx: bigint } | { errno: number } {
  const out = new Uint8Array(8); // aio_context_t, must be 0 on entry
  const r = syscall()(AIO_SYSCALLS.setup, 'unsigned int', maxEvents, 'void *', out);
  if (r < 0) return { errno: koffi.errno() };
  return { ctx: new DataView(out.buffer).getBigUint64(0, true) };
}

/** Destroy a context made by {@link aioSetup} (after every request completed). */
export function aioDestroy(ctx: bigint): void {
  syscall()(AIO_SYSCALLS.destroy, 'uint64_t', ctx);
}
