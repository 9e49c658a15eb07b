/**
 * The page frame numbers of a balloon inflate or deflate buffer (virtio 1.2 §5.5.6: an array of
 * le32 PFNs of 4 KiB pages), decoded into runs of consecutive frames so a run costs one
 * `madvise`. The buffer is guest-controlled: any length, any values.
 * @module
 */
import { BALLOON_PFN_SIZE } from './constants';

/** Consecutive page frames `first`, `first + 1`, …, `first + count - 1`. */
export interface PageRun {
  readonly first: number;
  readonly count: number;
}

/**
 * Decode the le32 page frame numbers in `views` (the readable buffers of one chain, in order; a
 * number may straddle two buffers) into runs of consecutive frames, in the order given. Trailing
 * bytes that do not make a whole number are ignored. A frame listed twice stays listed twice.
 */
export function pageFrameRuns(views: readonly Uint8Array[]): PageRun[] {
  const runs: { first: number; count: number }[] = [];
  const push = (pfn: number): void => {
    const last = runs[runs.length - 1];
    if (last && last.first + last.count === pfn) last.count++;
    else runs.push({ first: pfn, count: 1 });
  };
  const carry = new Uint8Array(BALLOON_PFN_SIZE);
  let carried = 0;
  for (const v of views) {
    let i = 0;
    while (carried > 0 && carried < BALLOON_PFN_SIZE && i < v.length) carry[carried++] = v[i++]!;
    if (carried === BALLOON_PFN_SIZE) {
      push((carry[0]! | (carry[1]! << 8) | (carry[2]! << 16) | (carry[3]! << 24)) >>> 0);
      carried = 0;
    }
    for (; i + BALLOON_PFN_SIZE <= v.length; i += BALLOON_PFN_SIZE) {
      push((v[i]! | (v[i + 1]! << 8) | (v[i + 2]! << 16) | (v[i + 3]! << 24)) >>> 0);
    }
    while (i < v.length) carry[carried++] = v[i++]!;
  }
  return runs;
}
