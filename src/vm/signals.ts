/**
 * The vCPU kick signal (DESIGN.md, "Stopping"): a real-time signal with a harmless native handler,
 * blocked in vCPU threads outside KVM_RUN and consumed with sigtimedwait.
 * @module
 */
import { KICK_SIGNAL, libc } from '../hypervisor/kvm/libc';

let installed = false;

/** A sigset_t (128 bytes, glibc x86_64) with the given signals set. */
export function sigsetWith(...signals: number[]): Uint8Array {
  const set = new Uint8Array(128);
  for (const s of signals) set[(s - 1) >> 3] |= 1 << ((s - 1) & 7);
  return set;
}

/**
 * Install a handler for the kick signal (process-wide). Its handler is libc's `getpid`: native,
 * re-entrant, ignores its argument. Without a handler the signal's default action kills the process.
 */
export function installKickHandler(): void {
  if (installed) return;
  const c = libc();
  const handler = c.dlsym(0, 'getpid'); // RTLD_DEFAULT
  if (!handler) throw new Error('dlsym(getpid) failed');
  // struct sigaction (glibc x86_64): sa_handler @0, sa_mask @8 (128 bytes), sa_flags @136, sa_restorer @144
  const act = new Uint8Array(152);
  new DataView(act.buffer).setBigUint64(0, BigInt(handler), true);
  if (c.sigaction(KICK_SIGNAL, act, null) !== 0) throw new Error(`sigaction failed: errno ${c.errno()}`);
  installed = true;
}
