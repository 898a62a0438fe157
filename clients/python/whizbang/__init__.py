"""Whizbang's Python client: an asyncio core (``connect``) and a blocking
facade (``Client``). See clients/python/README.md."""
from ._pb import whizbang_pb2 as pb
from .aio import ANY, NO_STREAM, RETRYABLE, STREAM_EXISTS, Connection, Reconnect, connect
from .errors import (BadRequestError, ConnectionClosedError, ConnectionLostError, ErrorCode,
                     FrameTooLargeError, IdempotencyConflictError, InternalError, InvalidExpressionError,
                     InvalidURLError, LeaseExpiredError, LeaseNotFoundError,
                     LeaseTokenMismatchError, NotFoundError, PermissionDeniedError,
                     ProtocolError, QueryTooExpensiveError, ResourceExhaustedError,
                     ShuttingDownError, StreamDeletedError, UnauthenticatedError,
                     UnsupportedVersionError, WhizbangError, WhizbangTimeoutError,
                     WrongExpectedVersionError)
from .ops import (Event, as_op, as_where, create_index, delete, drop_index, fields, py_value,
                  update, upsert, uuid7, value)
from .scram import make_credential
from .subscription import CAUGHT_UP, Subscription
from .sync import Client, SyncSubscription
from .url import ServerURL, parse_url
from .worker import HeldLease, ProjectionWorker

__version__ = "0.1.0"

__all__ = [
    "ANY", "NO_STREAM", "STREAM_EXISTS", "CAUGHT_UP", "Client", "Connection", "Event",
    "HeldLease", "ProjectionWorker", "Reconnect", "RETRYABLE", "ServerURL", "Subscription", "SyncSubscription", "pb",
    "connect", "parse_url", "make_credential", "uuid7", "value", "py_value", "fields", "as_op",
    "as_where", "upsert", "update", "delete", "create_index", "drop_index",
    "ErrorCode", "WhizbangError", "BadRequestError", "UnsupportedVersionError",
    "UnauthenticatedError", "PermissionDeniedError", "FrameTooLargeError", "NotFoundError",
    "WrongExpectedVersionError", "IdempotencyConflictError", "StreamDeletedError",
    "LeaseExpiredError", "LeaseNotFoundError", "LeaseTokenMismatchError",
    "InvalidExpressionError", "QueryTooExpensiveError", "ResourceExhaustedError",
    "ShuttingDownError", "InternalError", "ConnectionClosedError", "ConnectionLostError", "ProtocolError",
    "WhizbangTimeoutError", "InvalidURLError",
]
