/**
 * Architecture layouts behind one seam ({@link ArchLayout}); `layoutFor` picks one by name.
 * @module
 */
import type { ArchLayout, ArchName } from './ArchLayout';
import { Aarch64Layout } from './aarch64';
import { X86Layout } from './x86_64';

export type { ArchLayout, ArchName } from './ArchLayout';

/** The layout builder for `arch`. */
export function layoutFor(arch: ArchName): ArchLayout {
  return arch === 'aarch64' ? new Aarch64Layout() : new X86Layout();
}
