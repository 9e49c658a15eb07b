/**
 * crosvm-style option syntax (`--block disk.img,ro,id=X`) turned into kvmkit options.
 * @module
 */
export { parseBlockOption, splitKeyValues, BLOCK_OPTION_KEYS } from './blockOption';
export type { KeyValue } from './blockOption';
