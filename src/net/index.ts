/**
 * Unix `SOCK_SEQPACKET` sockets on the main event loop (Node's `net` module only does streams):
 * a listener and its connections, through koffi.
 * @module
 */
export { SeqpacketServer } from './SeqpacketServer';
export type { SeqpacketServerOptions, SeqpacketServerEvents } from './SeqpacketServer';
export { SeqpacketConnection, SocketError, MAX_MESSAGE_BYTES } from './SeqpacketConnection';
export type { SeqpacketConnectionEvents } from './SeqpacketConnection';
