"""Errors: one class per server error code (docs/PROTOCOL.md §5), and the
few this client raises itself.

Every error is a ``WhizbangError`` with ``code`` (the server's ``ErrorCode``,
or ``None`` for an error raised here), ``message`` (the server's sentence, for
a person: branch on the class or the code, never on the text) and
``actual_version`` (``WRONG_EXPECTED_VERSION`` only: the stream's last
version, -1 when it does not exist).
"""
from __future__ import annotations

import enum
from typing import Optional

from ._pb import whizbang_pb2 as pb


class ErrorCode(enum.IntEnum):
    """The server's error codes; tests check it against the proto's enum."""

    OK = 0
    BAD_REQUEST = 1
    UNSUPPORTED_VERSION = 2
    UNAUTHENTICATED = 3
    PERMISSION_DENIED = 4
    FRAME_TOO_LARGE = 5
    NOT_FOUND = 6
    WRONG_EXPECTED_VERSION = 7
    IDEMPOTENCY_CONFLICT = 8
    STREAM_DELETED = 9
    LEASE_EXPIRED = 10
    LEASE_NOT_FOUND = 11
    LEASE_TOKEN_MISMATCH = 12
    INVALID_EXPRESSION = 13
    QUERY_TOO_EXPENSIVE = 14
    RESOURCE_EXHAUSTED = 15
    SHUTTING_DOWN = 16
    INTERNAL = 17


class WhizbangError(Exception):
    """The base of every error this package raises."""

    code: Optional[int] = None

    def __init__(self, message: str, *, code: Optional[int] = None,
                 actual_version: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.actual_version = actual_version

    def __str__(self) -> str:
        if self.code is None:
            return self.message
        try:
            name = ErrorCode(self.code).name
        except ValueError:
            name = f"code {self.code}"
        return f"{name}: {self.message}"


class BadRequestError(WhizbangError):
    code = ErrorCode.BAD_REQUEST


class UnsupportedVersionError(WhizbangError):
    code = ErrorCode.UNSUPPORTED_VERSION


class UnauthenticatedError(WhizbangError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(WhizbangError):
    code = ErrorCode.PERMISSION_DENIED


class FrameTooLargeError(WhizbangError):
    code = ErrorCode.FRAME_TOO_LARGE


class NotFoundError(WhizbangError):
    code = ErrorCode.NOT_FOUND


class WrongExpectedVersionError(WhizbangError):
    code = ErrorCode.WRONG_EXPECTED_VERSION


class IdempotencyConflictError(WhizbangError):
    code = ErrorCode.IDEMPOTENCY_CONFLICT


class StreamDeletedError(WhizbangError):
    code = ErrorCode.STREAM_DELETED


class LeaseExpiredError(WhizbangError):
    code = ErrorCode.LEASE_EXPIRED


class LeaseNotFoundError(WhizbangError):
    code = ErrorCode.LEASE_NOT_FOUND


class LeaseTokenMismatchError(WhizbangError):
    code = ErrorCode.LEASE_TOKEN_MISMATCH


class InvalidExpressionError(WhizbangError):
    code = ErrorCode.INVALID_EXPRESSION


class QueryTooExpensiveError(WhizbangError):
    code = ErrorCode.QUERY_TOO_EXPENSIVE


class ResourceExhaustedError(WhizbangError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class ShuttingDownError(WhizbangError):
    code = ErrorCode.SHUTTING_DOWN


class InternalError(WhizbangError):
    """INTERNAL, a code this client does not know (handled like INTERNAL, as
    §5 asks; ``code`` keeps the number), or an answer that breaks the
    protocol's request → answer table (a server bug, §2)."""

    code = ErrorCode.INTERNAL


class ConnectionClosedError(WhizbangError):
    """The connection is gone: closed by either side, reset, or failed
    (``__cause__`` says why). Calls in flight get it; so does every later call."""


class ConnectionLostError(ConnectionClosedError):
    """With ``reconnect``: the connection broke while this call was in
    flight, and the call is not one that may be sent again (a ``lease``, a
    ``create_consumer``, a ``request(...)``...): it may or may not have been
    carried out. The connection itself is made again by the next call.
    ``__cause__`` says why it broke."""


class ProtocolError(ConnectionClosedError):
    """The server sent what the protocol does not allow (a frame above this
    client's bound, bytes that do not decode as a Response): the connection
    is dropped, since nothing after it can be trusted."""


class WhizbangTimeoutError(WhizbangError, TimeoutError):
    """A call got no answer within its timeout. The request may still take
    effect on the server: retry appends with the same event ids."""


class InvalidURLError(WhizbangError, ValueError):
    """A connection URL that docs/PROTOCOL.md's grammar refuses."""


_BY_CODE: dict[int, type[WhizbangError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (BadRequestError, UnsupportedVersionError, UnauthenticatedError,
                PermissionDeniedError, FrameTooLargeError, NotFoundError,
                WrongExpectedVersionError, IdempotencyConflictError, StreamDeletedError,
                LeaseExpiredError, LeaseNotFoundError, LeaseTokenMismatchError,
                InvalidExpressionError, QueryTooExpensiveError, ResourceExhaustedError,
                ShuttingDownError, InternalError)
}


def error_class(code: int) -> type[WhizbangError]:
    """The class raised for a server code; ``InternalError`` for one this
    client does not know."""
    return _BY_CODE.get(code, InternalError)


def from_pb(err: pb.Error, context: str = "") -> WhizbangError:
    """The exception for an ``Error`` message of a Response."""
    code = int(err.code)
    message = err.message if not context else f"{context}: {err.message}"
    actual = err.actual_version if code == ErrorCode.WRONG_EXPECTED_VERSION else None
    return error_class(code)(message, code=code, actual_version=actual)
