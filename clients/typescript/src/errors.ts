// The errors this package throws, all with the same three fields a caller
// branches on: `code` (the server's ErrorCode, docs/PROTOCOL.md §5, or
// undefined when no server code applies), `message`, and `actualVersion`
// (the stream's version with WRONG_EXPECTED_VERSION, else undefined).
//
// - WhizbangError: the server answered with an error (or an answer broke
//   the protocol: INTERNAL, made here). ApplyError, one of them: a commit
//   with ack "applied" whose ops the server could not apply.
// - ConnectionError: the connection cannot be used any more; its code is
//   the server's when the server said why (an Error with request id 0: an
//   administrator's Disconnect, SHUTTING_DOWN...).
// - TimeoutError: a call got no answer within its time limit (name
//   "TimeoutError", as the platform's timeouts are named).
// Arguments this client refuses before sending anything are TypeErrors and
// RangeErrors, and an aborted call rejects with its AbortSignal's reason,
// as Node's own APIs do.
import { ErrorCode, type CommitResult } from "./gen/whizbang_pb.js";

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
  /** The request id it answered; 0n for a connection-level error; -1n for
   * an error this client made of an answer (INTERNAL: a page that did not
   * move on, a Pong with another nonce; an ApplyError). */
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

/** A commit with ack "applied" is durable, but applying its ops failed and
 * made the whole commit a no-op: code and message are the commit's
 * apply_error and apply_error_message; failedOp is the 1-based op that
 * failed (0: none in particular); commit is the whole CommitResult (its
 * sequence is used up). withLease() throws it; commit() returns the
 * result as it is. */
export class ApplyError extends WhizbangError {
  readonly failedOp: number;
  readonly commit: CommitResult;

  constructor(commit: CommitResult) {
    super(
      commit.applyError,
      `the commit at sequence ${commit.sequence} is durable but its ops were not applied` +
        (commit.failedOp > 0 ? ` (op ${commit.failedOp} failed)` : "") +
        `: ${commit.applyErrorMessage}`,
      undefined,
      -1n,
    );
    this.name = "ApplyError";
    this.failedOp = commit.failedOp;
    this.commit = commit;
  }
}

/** The connection broke or was closed: the call may or may not have been
 * carried out (an append that got no answer may have been applied: retry
 * it with the same event ids, and it is answered as a replay). cause is
 * what broke it, when something did: a socket error, a frame this client
 * refused, or the server's connection-level WhizbangError (request id 0),
 * whose code and message are then this error's code and serverMessage. */
export class ConnectionError extends Error {
  /** The server's code when the server said why (request id 0). */
  readonly code: ErrorCode | undefined;
  readonly actualVersion: undefined = undefined;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ConnectionError";
    const cause = options?.cause;
    this.code = cause instanceof WhizbangError || cause instanceof ConnectionError ? cause.code : undefined;
  }

  /** The server's message when the server said why, else "". */
  get serverMessage(): string {
    const cause = this.cause;
    return cause instanceof WhizbangError || cause instanceof ConnectionError ? cause.serverMessage : "";
  }
}

/** A call (or connecting) got no answer within its time limit. The
 * request may still be carried out by the server: retry an append with the
 * same event ids. */
export class TimeoutError extends Error {
  readonly code: undefined = undefined;
  readonly actualVersion: undefined = undefined;

  constructor(message: string) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** withLease()'s waitForWatermarkMs passed before the watermark reached
 * the commit: the commit is durable (commit), only not applied yet. */
export class WatermarkTimeoutError extends TimeoutError {
  constructor(readonly commit: CommitResult, waitedMs: number) {
    super(
      `the commit at sequence ${commit.sequence} is durable, but the watermark did not reach it within ${waitedMs} ms`,
    );
  }
}

/** Any error a call of this package rejects with, besides argument errors
 * and an AbortSignal's reason. */
export type ClientError = WhizbangError | ConnectionError | TimeoutError;

/** Whether err means the connection is gone, so that the same request on a
 * new connection may succeed: a ConnectionError, or a connection-level
 * error of the server (request id 0, after which it closes). */
export function connectionLost(err: unknown): boolean {
  return err instanceof ConnectionError || (err instanceof WhizbangError && err.requestId === 0n);
}
