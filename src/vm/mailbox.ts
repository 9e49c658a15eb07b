/**
 * The SharedArrayBuffer mailbox between a vCPU worker and the main thread (DESIGN.md, threading
 * model). The worker posts a device access and blocks in Atomics.wait; the main thread, woken by
 * Atomics.waitAsync, serves it on the device bus and answers.
 * @module
 */

/** Int32 slots of the mailbox. */
export const MB = {
  /** Incremented by the worker for each request. */
  REQ_SEQ: 0,
  /** Incremented by the main thread for each answer. */
  RESP_SEQ: 1,
  KIND: 2,
  ADDR_LO: 3,
  ADDR_HI: 4,
  SIZE: 5,
  DATA_LO: 6,
  DATA_HI: 7,
  /** Set by the main thread: 1 = stop. */
  STOP: 8,
  /** Set by the main thread: 1 = pause (the worker parks until it is 0). */
  PAUSE: 9,
  /** The worker's kernel thread id, for tgkill. */
  TID: 10,
  /** Worker state, see {@link VcpuRunState}. */
  STATE: 11,
  /** Count of port accesses to unmapped ports, served in the worker. */
  UNHANDLED: 12,
  /** Incremented by the worker whenever the main thread has something to do (a request or posted writes). */
  WAKE: 13,
  /** Posted-write ring: next slot the worker fills / the main thread drains (free-running counters). */
  POST_HEAD: 14,
  POST_TAIL: 15,
  /** First Int32 of the posted-write ring: POST_SLOTS entries of [port, size, value]. */
  POST_RING: 16,
  LENGTH: 16 + 3 * 256,
} as const;

/** Entries in the posted-write ring. */
export const POST_SLOTS = 256;

/** Flags in the port map shared with the workers (one byte per port). */
export const PORT = {
  /** A device on the main thread serves this port. */
  MAPPED: 1,
  /** Writes may be queued and applied in order later ({@link BusDevice.postedWrites}). */
  POSTED_WRITE: 2,
  /** One-byte reads may be answered from the shadow table when no write is queued. */
  SHADOW_READ: 4,
} as const;

/** What the worker asks of the main thread. */
export const ACCESS = { PIO_READ: 1, PIO_WRITE: 2, MMIO_READ: 3, MMIO_WRITE: 4 } as const;

/** Values of the STATE slot. */
export const VcpuRunState = { STARTING: 0, RUNNING: 1, PAUSED: 2, EXITED: 3 } as const;

/** Data passed to a vCPU worker. */
export interface VcpuWorkerData {
  vcpuId: number;
  fd: number;
  runAddress: number | bigint;
  runSize: number;
  mailbox: SharedArrayBuffer;
  /** 64 Ki entries of {@link PORT} flags. */
  portMap: SharedArrayBuffer;
  /** 64 Ki Int16 entries: the value a one-byte read of the port returns now, or -1 (ask the device). */
  portShadow: SharedArrayBuffer;
  regions: { guestAddress: number; size: number; hostAddress: number | bigint }[];
  /** Apply the PVM emulation-failure recoveries of DESIGN.md. */
  paravirtual: boolean;
}

/** Messages a vCPU worker posts. */
export type VcpuWorkerMessage =
  | { type: 'ready' }
  | { type: 'recovered'; what: string; rip: string }
  | { type: 'exit'; reason: 'stopped' }
  | { type: 'exit'; reason: 'crash'; detail: CrashReport };

/** What kvmkit knows about a guest that crashed. */
export interface CrashReport {
  /** Why this counts as a crash (`KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)`, `triple fault`). */
  reason: string;
  vcpu: number;
  /** General and control registers, hex strings. */
  registers: Record<string, string>;
  /** Up to 16 bytes at RIP, hex, if they could be read. */
  instructionBytes?: string;
  /** Raw exit data, for internal errors. */
  data?: string[];
}
