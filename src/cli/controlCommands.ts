/**
 * crosvm's control commands: `kvmkit stop|suspend|resume|status SOCK`, `kvmkit balloon SIZE SOCK`,
 * `kvmkit balloon_stats SOCK`, `kvmkit disk resize INDEX SIZE SOCK`, each one request on the control
 * socket of a VM started with `kvmkit run -s SOCK`.
 * @module
 */
import { InvalidArgumentError, type Command } from 'commander';
import { ConfigError } from '../errors';
import { ControlClient, ControlRequestError } from '../control/ControlClient';
import type { ControlRequest } from '../control/protocol';
import { parseByteSize, parseIndex } from './sizeArgument';

const SOCK_HELP = 'VM control socket path (the -s/--socket of kvmkit run)';
const TIMEOUT_HELP = 'seconds to wait for the answer';

function argument<T>(parse: (what: string, text: string) => T, what: string): (text: string) => T {
  return (text) => {
    try {
      return parse(what, text);
    } catch (e) {
      if (e instanceof ConfigError) throw new InvalidArgumentError(e.message);
      throw e;
    }
  };
}

function seconds(text: string): number {
  const n = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || n <= 0) throw new InvalidArgumentError(`--timeout must be a positive number of seconds, got ${JSON.stringify(text)}`);
  return n;
}

/** The commands whose answer is their output; the others are quiet on success, as crosvm's are. */
const PRINTS_RESULT: readonly ControlRequest['command'][] = ['status', 'balloon_stats'];

/**
 * Send `request` on a connection of its own and return its result; connecting and the answer each
 * get `timeoutMs` (a Unix socket connects at once or fails at once).
 * @throws ControlRequestError `COMMAND failed: MESSAGE` when the VM refuses it; the client's
 *   ControlConnectionError (`no kvmkit VM listens on SOCK (ENOENT)`) or ControlTimeoutError
 *   (`no answer to COMMAND from SOCK within N ms`) otherwise
 */
export async function controlRequest(socket: string, request: ControlRequest, timeoutMs: number): Promise<unknown> {
  const client = await ControlClient.connect(socket, { timeoutMs, requestTimeoutMs: timeoutMs });
  try {
    return await client.request(request);
  } catch (e) {
    if (e instanceof ControlRequestError) throw new ControlRequestError(`${request.command} failed: ${e.message}`, { cause: e });
    throw e;
  } finally {
    client.close();
  }
}

/** Send `request`; print its result as JSON for the query commands. */
async function send(socket: string, request: ControlRequest, opts: { timeout: number }): Promise<void> {
  const result = await controlRequest(socket, request, opts.timeout * 1000);
  if (PRINTS_RESULT.includes(request.command)) process.stdout.write(`${JSON.stringify(result ?? null, null, 2)}\n`);
}

/** One subcommand taking SOCK (and `--timeout`). */
function controlCommand(parent: Command, name: string, description: string): Command {
  return parent.command(name).description(description).option('--timeout <SECONDS>', TIMEOUT_HELP, seconds, 10);
}

/** Add the control subcommands to `program`. */
export function addControlCommands(program: Command): void {
  const simple: [ControlRequest['command'] & ('stop' | 'suspend' | 'resume' | 'status' | 'balloon_stats'), string][] = [
    ['stop', 'stop the VM listening on VM_SOCKET (the guest is stopped, `kvmkit run` exits 0)'],
    ['suspend', 'pause the VM\'s vCPUs'],
    ['resume', 'resume a suspended VM (no-op when running)'],
    ['status', 'print the VM\'s state as JSON'],
    ['balloon_stats', 'print the virtio-balloon statistics (guest memory figures and the balloon\'s actual size) as JSON'],
  ];
  for (const [command, description] of simple) {
    controlCommand(program, command, description)
      .argument('<VM_SOCKET>', SOCK_HELP)
      .action((socket: string, opts: { timeout: number }) => send(socket, { command } as ControlRequest, opts));
  }
  controlCommand(program, 'balloon', 'set the balloon size of the VM to SIZE bytes (rounded down to a multiple of 4096)')
    .argument('<SIZE>', 'amount of bytes (K, M, G, T suffixes are powers of 1024)', argument(parseByteSize, 'SIZE'))
    .argument('<VM_SOCKET>', SOCK_HELP)
    .action((bytes: number, socket: string, opts: { timeout: number }) => send(socket, { command: 'balloon', bytes }, opts));
  const disk = program.command('disk').description('manage attached virtual disk devices');
  controlCommand(disk, 'resize', 'resize disk DISK_INDEX (0-based, counting every --block in order) to NEW_SIZE bytes')
    .argument('<DISK_INDEX>', 'disk index', argument(parseIndex, 'DISK_INDEX'))
    .argument('<NEW_SIZE>', 'new disk size in bytes (K, M, G, T suffixes are powers of 1024)', argument(parseByteSize, 'NEW_SIZE'))
    .argument('<VM_SOCKET>', SOCK_HELP)
    .action((index: number, bytes: number, socket: string, opts: { timeout: number }) => send(socket, { command: 'disk_resize', index, bytes }, opts));
}
