// The errors this package throws. A server's answer that is an error
// becomes a WhizbangError carrying the wire's code (docs/PROTOCOL.md §5); a
// connection that cannot be used any more fails what waits on it with a
// ConnectionError. Arguments this client refuses before sending anything
// are TypeErrors and RangeErrors, and a call that timed out or was aborted
// rejects with its AbortSignal's reason, as Node's own APIs do.
import { ErrorCode } from "./gen/whizbang_pb.js";

export { ErrorCode };

/** The name of a code ("WRONG_EXPECTED_VERSION"); a code this client does
 * not know (from a newer server) is named "UNKNOWN_<n>". */
export function errorCodeName(code: number): string {
  const name = (ErrorCode as unknown as Record<number, string>)[code];
  return name !== undefined ? name : `UNKNOWN_${code}`;
}

/** An error the server answered: its code, its message (a sentence for a
 * person; branch on the code, not on it) and, for WRONG_EXPECTED_VERSION,
 * the stream's actual version (-1n when it does not exist). */
export class WhizbangError extends Error {
  readonly code: ErrorCode;
  readonly codeName: string;
  readonly actualVersion: bigint | undefined;
  /** The request id it answered; 0n for a connection-level error. */
  readonly requestId: bigint;

  constructor(code: number, message: string, actualVersion: bigint | undefined, requestId: bigint) {
    super(`${errorCodeName(code)}: ${message}`);
    this.name = "WhizbangError";
    this.code = code;
    this.codeName = errorCodeName(code);
    this.actualVersion = actualVersion;
    this.requestId = requestId;
  }

  /** The server's message as it sent it, without the code's name. */
  get serverMessage(): string {
    return this.message.slice(this.codeName.length + 2);
  }
}

/** The connection broke or was closed: the call may or may not have been
 * carried out (an append that got no answer may have been applied: retry
 * it with the same event ids, and it is answered as a replay). cause is
 * what broke it, when something did: a socket error, a frame this client
 * refused, or the server's connection-level WhizbangError (request id 0). */
export class ConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConnectionError";
  }
}

/** Whether err means the connection is gone, so that the same request on a
 * new connection may succeed: a ConnectionError, or a connection-level
 * error of the server (request id 0, after which it closes). */
export function connectionLost(err: unknown): boolean {
  return err instanceof ConnectionError || (err instanceof WhizbangError && err.requestId === 0n);
}
