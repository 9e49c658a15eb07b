/**
 * Typed errors. Every error kvmkit throws extends {@link KvmkitError} and says what was wrong and
 * how to fix it; lower-level failures are attached as `cause`.
 * @module
 */

/** Base class of every error thrown by kvmkit. */
export class KvmkitError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A user-supplied option broke a rule. `option` names it, `rule` states the rule. */
export class ConfigError extends KvmkitError {
  constructor(
    readonly option: string,
    readonly rule: string,
    readonly value?: unknown,
    options?: { cause?: unknown },
  ) {
    super(`${option} ${rule}${value === undefined ? '' : `, got ${formatValue(value)}`}`, options);
  }
}

/** A KVM ioctl (or another libc call on a KVM object) failed. */
export class KvmError extends KvmkitError {
  constructor(
    readonly ioctl: string,
    readonly errno: number,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? `${ioctl} failed: ${errnoName(errno)} (errno ${errno})`, options);
  }
}

/** A guest-physical access fell outside guest RAM. Host memory was not touched. */
export class GuestMemoryError extends KvmkitError {
  constructor(
    readonly address: bigint,
    readonly length: number,
    message?: string,
  ) {
    super(message ?? `guest address 0x${address.toString(16)} (+${length}) is outside guest RAM`);
  }
}

/** A kernel, initrd or other boot file is missing or malformed. */
export class BootImageError extends KvmkitError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An operation was called in a VM state that does not allow it (e.g. `pause()` before `start()`). */
export class VmStateError extends KvmkitError {}

/** A wait (e.g. `serial.waitFor`) ran out of time. */
export class TimeoutError extends KvmkitError {}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  try {
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  } catch {
    return String(v);
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES',
  14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 24: 'EMFILE', 25: 'ENOTTY',
  28: 'ENOSPC', 38: 'ENOSYS', 95: 'EOPNOTSUPP',
};

/** Symbolic name of a Linux errno value (`EINVAL`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
