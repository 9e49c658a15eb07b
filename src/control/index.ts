/**
 * The control socket: a Unix socket speaking newline-delimited JSON (see README.md here), served
 * by a VM started with the `socket` option, and a typed client for it.
 * @module
 */
export { ControlServer } from './ControlServer';
export type { ControlServerOptions } from './ControlServer';
export { ControlClient, ControlRequestError, ControlConnectionError, ControlTimeoutError } from './ControlClient';
export type { ControlClientOptions, ControlRequestOptions } from './ControlClient';
export { CONTROL_COMMANDS, MAX_REQUEST_LINE, parseRequest, encodeResponse } from './protocol';
export type { ControlCommand, ControlRequest, ControlResponse, ParsedRequest } from './protocol';
export type { ControlTarget, BalloonControl } from './ControlTarget';
export { MAX_SOCKET_PATH } from './socketPath';
