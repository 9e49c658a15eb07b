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
  LENGTH: 16,
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
  /** 64 Ki entries, 1 where a port is served by a device on the main thread. */
  portMap: SharedArrayBuffer;
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
