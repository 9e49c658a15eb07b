/**
 * crosvm-style option syntax (`--block disk.img,ro,id=X`) and JSON config files turned into kvmkit
 * options.
 * @module
 */
export { parseBlockOption, parseBlockObject, splitKeyValues, BLOCK_OPTION_KEYS, BLOCK_OPTION_HELP } from './blockOption';
export type { KeyValue } from './blockOption';
export { parseCpusOption, parseMemOption } from './machineOptions';
export { parseSerialOption, parseSerialObject, DEFAULT_SERIAL, SERIAL_OPTION_HELP } from './serialOption';
export type { SerialOptions, SerialType } from './serialOption';
export { parseSharedDirOption, SHARED_DIR_OPTION_HELP } from './sharedDirOption';
export type { SharedDirOptions, SharedDirCache } from './sharedDirOption';
export { emptyConfig, mergeConfig } from './KvmkitConfig';
export type { KvmkitConfig } from './KvmkitConfig';
export { loadConfigFiles, parseConfig, CONFIG_KEYS } from './configFile';
export type { ConfigObject, BlockConfigEntry, SerialConfigEntry, LoadConfigOptions } from './configFile';
export { ConfigFileError } from './ConfigFileError';
export { toVmOptions, vmOptionsFromConfig } from './vmOptionsFromConfig';
