/**
 * What the control server drives: the parts of a `VirtualMachine` the protocol's commands use.
 * A structural interface, so the server can be tested without KVM and the VM only needs to have
 * these methods.
 * @module
 */
import type { VmStatus } from '../vm/status';

/** The machine the control socket drives. `VirtualMachine` implements it. */
export interface ControlTarget {
  /** `status`. */
  status(): VmStatus;
  /** `suspend`: park every vCPU. */
  pause(): Promise<void>;
  /** `resume`. */
  resume(): void;
  /** `stop`: end the guest. */
  stop(): Promise<unknown>;
  /** `disk_resize`. */
  resizeDisk(index: number, bytes: number): Promise<void>;
}

/** The balloon methods, present on a VM that has them (`balloon`, `balloon_stats`). */
export interface BalloonControl {
  /** Set the balloon's target size in bytes. */
  balloon(bytes: number): unknown;
  /** The guest's memory statistics and the balloon's actual size. */
  balloonStats(): unknown;
}

/** The target has the balloon methods (checked at run time: a VM without them answers an error). */
export function hasBalloon(target: object): target is BalloonControl {
  const t = target as Partial<Record<keyof BalloonControl, unknown>>;
  return typeof t.balloon === 'function' && typeof t.balloonStats === 'function';
}
