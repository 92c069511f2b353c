// The address a server binds, checked before it listens: Node takes an empty host for every interface, which nobody
// means by it, and answers a bad port with a RangeError of its own.

import { describeJson, InvalidRequestError } from '../errors.js';

/** Refuses a host that is not a non-blank string and a port that is not a whole number from 0 to 65535. */
export function checkListenAddress(host: unknown, port: unknown): void {
  if (host !== undefined && (typeof host !== 'string' || host.trim() === '')) {
    throw new InvalidRequestError(
      `host must be an address or name of this machine (127.0.0.1 by default, 0.0.0.0 for every interface), got ${describeJson(host)}`,
    );
  }
  if (port !== undefined && !(Number.isInteger(port) && (port as number) >= 0 && (port as number) <= 65535)) {
    throw new InvalidRequestError(`port must be a whole number from 0 to 65535 (0 picks a free port), got ${describeJson(port)}`);
  }
}
