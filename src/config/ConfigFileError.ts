/**
 * The error of a config file: a {@link ConfigError} whose message starts with the file.
 * @module
 */
import { ConfigError } from '../errors';

/**
 * A config file (or an object given as one) broke a rule:
 * `vm.json: mem must be an integer number of MiB from 16 to 1048576, got "x"`.
 * `option` is the key's path in the file (`block[1].block-size`), empty for the file as a whole.
 */
export class ConfigFileError extends ConfigError {
  constructor(
    /** The file as the user named it, with the include chain (`net.json (included from vm.json)`). */
    readonly file: string,
    key: string,
    rule: string,
    value?: unknown,
    options?: { cause?: unknown },
  ) {
    super(key, rule, value, options);
    this.message = `${file}: ${this.message.trimStart()}`;
  }
}
