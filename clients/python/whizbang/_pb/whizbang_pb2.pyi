from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

ACK_APPLIED: Ack
ACK_DURABLE: Ack
ANY: ExpectedVersion
BACKWARD: Direction
BAD_REQUEST: ErrorCode
DESCRIPTOR: _descriptor.FileDescriptor
ENTRY_COMMITTED: EntryKind
ENTRY_GAP: EntryKind
ENTRY_RECOVERED: EntryKind
EQ: CompareOp
EXACT: ExpectedVersion
FORWARD: Direction
FRAME_TOO_LARGE: ErrorCode
FROM_END: StartFrom
FROM_POSITION: StartFrom
FROM_START: StartFrom
GAP_EXPIRED: EntryReason
GAP_RELEASED: EntryReason
GAP_RESTART: EntryReason
GE: CompareOp
GT: CompareOp
IDEMPOTENCY_CONFLICT: ErrorCode
INTERNAL: ErrorCode
INVALID_EXPRESSION: ErrorCode
LE: CompareOp
LEASE_EXPIRED: ErrorCode
LEASE_NOT_FOUND: ErrorCode
LEASE_TOKEN_MISMATCH: ErrorCode
LT: CompareOp
NACK_PARK: NackAction
NACK_RETRY: NackAction
NACK_SKIP: NackAction
NE: CompareOp
NOT_FOUND: ErrorCode
NO_STREAM: ExpectedVersion
OK: ErrorCode
ON_DISCONNECT_KEEP: OnDisconnect
ON_DISCONNECT_RELEASE: OnDisconnect
ON_EXPIRED_FAIL: OnExpired
ON_EXPIRED_RESEQUENCE: OnExpired
PERMISSION_DENIED: ErrorCode
PLAN_ID: PlanStrategy
PLAN_INDEX: PlanStrategy
PLAN_INDEX_UNION: PlanStrategy
PLAN_SCAN: PlanStrategy
QUERY_TOO_EXPENSIVE: ErrorCode
REASON_NONE: EntryReason
RECOVERED_RESEQUENCED: EntryReason
RECOVERED_STAGED: EntryReason
RESOURCE_EXHAUSTED: ErrorCode
SHUTTING_DOWN: ErrorCode
STREAM_DELETED: ErrorCode
STREAM_EXISTS: ExpectedVersion
TARGET_ALL: SubscriptionTarget
TARGET_LEDGER: SubscriptionTarget
TARGET_STREAM: SubscriptionTarget
UNAUTHENTICATED: ErrorCode
UNSUPPORTED_VERSION: ErrorCode
WRONG_EXPECTED_VERSION: ErrorCode

class AckEvents(_message.Message):
    __slots__ = ["ids", "name"]
    IDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[bytes]
    name: str
    def __init__(self, name: _Optional[str] = ..., ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AckResult(_message.Message):
    __slots__ = ["checkpoint"]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: int
    def __init__(self, checkpoint: _Optional[int] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ["increment", "set", "unset"]
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    increment: IncrementAction
    set: SetAction
    unset: str
    def __init__(self, set: _Optional[_Union[SetAction, _Mapping]] = ..., unset: _Optional[str] = ..., increment: _Optional[_Union[IncrementAction, _Mapping]] = ...) -> None: ...

class AppendEvents(_message.Message):
    __slots__ = ["events", "expected", "expected_version", "stream"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[NewEvent]
    expected: ExpectedVersion
    expected_version: int
    stream: str
    def __init__(self, stream: _Optional[str] = ..., expected: _Optional[_Union[ExpectedVersion, str]] = ..., expected_version: _Optional[int] = ..., events: _Optional[_Iterable[_Union[NewEvent, _Mapping]]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ["first_position", "idempotent_replay", "last_position", "stream_version"]
    FIRST_POSITION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_REPLAY_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    first_position: int
    idempotent_replay: bool
    last_position: int
    stream_version: int
    def __init__(self, first_position: _Optional[int] = ..., last_position: _Optional[int] = ..., stream_version: _Optional[int] = ..., idempotent_replay: bool = ...) -> None: ...

class Authenticate(_message.Message):
    __slots__ = ["auth_data"]
    AUTH_DATA_FIELD_NUMBER: _ClassVar[int]
    auth_data: bytes
    def __init__(self, auth_data: _Optional[bytes] = ...) -> None: ...

class AuthenticateResult(_message.Message):
    __slots__ = ["auth_data", "roles", "user"]
    AUTH_DATA_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    auth_data: bytes
    roles: _containers.RepeatedScalarFieldContainer[str]
    user: str
    def __init__(self, auth_data: _Optional[bytes] = ..., user: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class Backup(_message.Message):
    __slots__ = ["path"]
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class BackupResult(_message.Message):
    __slots__ = ["bytes", "done", "last_position", "micros", "path", "watermark"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    done: bool
    last_position: int
    micros: int
    path: str
    watermark: int
    def __init__(self, path: _Optional[str] = ..., bytes: _Optional[int] = ..., micros: _Optional[int] = ..., done: bool = ..., watermark: _Optional[int] = ..., last_position: _Optional[int] = ...) -> None: ...

class ClientInfo(_message.Message):
    __slots__ = ["age_ms", "bytes_in", "bytes_out", "client_name", "consumers", "id", "identity", "idle_ms", "in_flight", "input_buffer", "leases", "memory", "output_buffer", "peer", "queued_reads", "quota_pauses", "requests", "roles", "self", "subscriptions", "tls", "unix_socket", "user", "writes"]
    AGE_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_BUFFER_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BUFFER_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    QUEUED_READS_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PAUSES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    UNIX_SOCKET_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    age_ms: int
    bytes_in: int
    bytes_out: int
    client_name: str
    consumers: int
    id: int
    identity: str
    idle_ms: int
    in_flight: int
    input_buffer: int
    leases: int
    memory: int
    output_buffer: int
    peer: str
    queued_reads: int
    quota_pauses: int
    requests: int
    roles: _containers.RepeatedScalarFieldContainer[str]
    self: bool
    subscriptions: int
    tls: bool
    unix_socket: bool
    user: str
    writes: int
    def __init__(self, id: _Optional[int] = ..., peer: _Optional[str] = ..., client_name: _Optional[str] = ..., user: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., tls: bool = ..., unix_socket: bool = ..., age_ms: _Optional[int] = ..., idle_ms: _Optional[int] = ..., requests: _Optional[int] = ..., bytes_in: _Optional[int] = ..., bytes_out: _Optional[int] = ..., input_buffer: _Optional[int] = ..., output_buffer: _Optional[int] = ..., in_flight: _Optional[int] = ..., subscriptions: _Optional[int] = ..., leases: _Optional[int] = ..., consumers: _Optional[int] = ..., identity: _Optional[str] = ..., quota_pauses: _Optional[int] = ..., queued_reads: _Optional[int] = ..., writes: _Optional[int] = ..., memory: _Optional[int] = ...) -> None: ...

class ClientList(_message.Message):
    __slots__ = ["clients"]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[ClientInfo]
    def __init__(self, clients: _Optional[_Iterable[_Union[ClientInfo, _Mapping]]] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ["ack", "on_expired", "ops", "sequence", "token"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ON_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ack: Ack
    on_expired: OnExpired
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    sequence: int
    token: int
    def __init__(self, sequence: _Optional[int] = ..., token: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ..., ack: _Optional[_Union[Ack, str]] = ..., on_expired: _Optional[_Union[OnExpired, str]] = ...) -> None: ...

class CommitResult(_message.Message):
    __slots__ = ["apply_error", "apply_error_message", "failed_op", "original_sequence", "resequenced", "results", "sequence", "watermark"]
    APPLY_ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLY_ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_OP_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESEQUENCED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    apply_error: ErrorCode
    apply_error_message: str
    failed_op: int
    original_sequence: int
    resequenced: bool
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    sequence: int
    watermark: int
    def __init__(self, sequence: _Optional[int] = ..., resequenced: bool = ..., original_sequence: _Optional[int] = ..., watermark: _Optional[int] = ..., apply_error: _Optional[_Union[ErrorCode, str]] = ..., apply_error_message: _Optional[str] = ..., failed_op: _Optional[int] = ..., results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ["field", "op", "value"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: CompareOp
    value: Value
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[CompareOp, str]] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class ConsumerConfig(_message.Message):
    __slots__ = ["ack_timeout_ms", "event_types", "max_deliveries", "name", "position", "stream", "stream_prefix", "target"]
    ACK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    MAX_DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ack_timeout_ms: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    max_deliveries: int
    name: str
    position: int
    stream: str
    stream_prefix: str
    target: SubscriptionTarget
    def __init__(self, name: _Optional[str] = ..., target: _Optional[_Union[SubscriptionTarget, str]] = ..., stream: _Optional[str] = ..., stream_prefix: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., position: _Optional[int] = ..., ack_timeout_ms: _Optional[int] = ..., max_deliveries: _Optional[int] = ..., **kwargs) -> None: ...

class ConsumerInfo(_message.Message):
    __slots__ = ["acked", "checkpoint", "config", "delivered", "in_flight", "members", "parked", "redelivered"]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    acked: int
    checkpoint: int
    config: ConsumerConfig
    delivered: int
    in_flight: int
    members: int
    parked: int
    redelivered: int
    def __init__(self, config: _Optional[_Union[ConsumerConfig, _Mapping]] = ..., checkpoint: _Optional[int] = ..., members: _Optional[int] = ..., in_flight: _Optional[int] = ..., parked: _Optional[int] = ..., delivered: _Optional[int] = ..., acked: _Optional[int] = ..., redelivered: _Optional[int] = ...) -> None: ...

class ConsumerList(_message.Message):
    __slots__ = ["consumers"]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[ConsumerInfo]
    def __init__(self, consumers: _Optional[_Iterable[_Union[ConsumerInfo, _Mapping]]] = ...) -> None: ...

class CreateConsumer(_message.Message):
    __slots__ = ["config"]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: ConsumerConfig
    def __init__(self, config: _Optional[_Union[ConsumerConfig, _Mapping]] = ...) -> None: ...

class CreateIfNone(_message.Message):
    __slots__ = ["fields", "id"]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    id: str
    def __init__(self, id: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ...) -> None: ...

class CreateIndex(_message.Message):
    __slots__ = ["field", "type"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    field: str
    type: str
    def __init__(self, type: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class CreateToken(_message.Message):
    __slots__ = ["description", "role", "ttl_ms"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    description: str
    role: str
    ttl_ms: int
    def __init__(self, role: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class CreateTokenResult(_message.Message):
    __slots__ = ["expires_ms", "id", "token"]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    expires_ms: int
    id: str
    token: str
    def __init__(self, token: _Optional[str] = ..., id: _Optional[str] = ..., expires_ms: _Optional[int] = ...) -> None: ...

class Credit(_message.Message):
    __slots__ = ["n", "subscription"]
    N_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    n: int
    subscription: int
    def __init__(self, subscription: _Optional[int] = ..., n: _Optional[int] = ...) -> None: ...

class CreditResult(_message.Message):
    __slots__ = ["credits"]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    credits: int
    def __init__(self, credits: _Optional[int] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ["exploded", "id", "type", "where"]
    EXPLODED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    exploded: Explosion
    id: str
    type: str
    where: Where
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., where: _Optional[_Union[Where, _Mapping]] = ..., exploded: _Optional[_Union[Explosion, _Mapping]] = ...) -> None: ...

class DeleteConsumer(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteConsumerResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteRole(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRoleResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteStream(_message.Message):
    __slots__ = ["hard", "stream"]
    HARD_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    hard: bool
    stream: str
    def __init__(self, stream: _Optional[str] = ..., hard: bool = ...) -> None: ...

class DeleteStreamResult(_message.Message):
    __slots__ = ["last_version"]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    last_version: int
    def __init__(self, last_version: _Optional[int] = ...) -> None: ...

class DeleteUser(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteUserResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Disconnect(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class DisconnectResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DropIndex(_message.Message):
    __slots__ = ["field", "type"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    field: str
    type: str
    def __init__(self, type: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ["created_sequence", "fields", "id", "type", "updated_sequence", "version"]
    CREATED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    created_sequence: int
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    id: str
    type: str
    updated_sequence: int
    version: int
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., version: _Optional[int] = ..., created_sequence: _Optional[int] = ..., updated_sequence: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ["actual_version", "code", "message"]
    ACTUAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    actual_version: int
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., actual_version: _Optional[int] = ...) -> None: ...

class Exists(_message.Message):
    __slots__ = ["field"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    field: str
    def __init__(self, field: _Optional[str] = ...) -> None: ...

class Explain(_message.Message):
    __slots__ = ["type", "where"]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    type: str
    where: Where
    def __init__(self, type: _Optional[str] = ..., where: _Optional[_Union[Where, _Mapping]] = ...) -> None: ...

class Explosion(_message.Message):
    __slots__ = ["count", "created", "examined", "ids", "micros", "plan", "strategy"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXAMINED_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    count: int
    created: bool
    examined: int
    ids: bytes
    micros: int
    plan: str
    strategy: PlanStrategy
    def __init__(self, ids: _Optional[bytes] = ..., count: _Optional[int] = ..., strategy: _Optional[_Union[PlanStrategy, str]] = ..., plan: _Optional[str] = ..., examined: _Optional[int] = ..., micros: _Optional[int] = ..., created: bool = ...) -> None: ...

class Expr(_message.Message):
    __slots__ = ["all_of", "any_of", "compare", "exists", "in_list", "negate", "starts_with"]
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    IN_LIST_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    STARTS_WITH_FIELD_NUMBER: _ClassVar[int]
    all_of: ExprList
    any_of: ExprList
    compare: Compare
    exists: Exists
    in_list: InList
    negate: Expr
    starts_with: StartsWith
    def __init__(self, compare: _Optional[_Union[Compare, _Mapping]] = ..., in_list: _Optional[_Union[InList, _Mapping]] = ..., exists: _Optional[_Union[Exists, _Mapping]] = ..., starts_with: _Optional[_Union[StartsWith, _Mapping]] = ..., all_of: _Optional[_Union[ExprList, _Mapping]] = ..., any_of: _Optional[_Union[ExprList, _Mapping]] = ..., negate: _Optional[_Union[Expr, _Mapping]] = ...) -> None: ...

class ExprList(_message.Message):
    __slots__ = ["terms"]
    TERMS_FIELD_NUMBER: _ClassVar[int]
    terms: _containers.RepeatedCompositeFieldContainer[Expr]
    def __init__(self, terms: _Optional[_Iterable[_Union[Expr, _Mapping]]] = ...) -> None: ...

class Extend(_message.Message):
    __slots__ = ["duration_ms", "sequence", "token"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    sequence: int
    token: int
    def __init__(self, sequence: _Optional[int] = ..., token: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class ExtendResult(_message.Message):
    __slots__ = ["duration_ms", "expires_at_ms"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    expires_at_ms: int
    def __init__(self, expires_at_ms: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class Field(_message.Message):
    __slots__ = ["name", "value"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Value
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class GetEntity(_message.Message):
    __slots__ = ["id", "type"]
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetEntityResult(_message.Message):
    __slots__ = ["entity"]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    entity: Entity
    def __init__(self, entity: _Optional[_Union[Entity, _Mapping]] = ...) -> None: ...

class GetStats(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStreamInfo(_message.Message):
    __slots__ = ["stream"]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: str
    def __init__(self, stream: _Optional[str] = ...) -> None: ...

class GetStreamMetadata(_message.Message):
    __slots__ = ["stream"]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: str
    def __init__(self, stream: _Optional[str] = ...) -> None: ...

class GetWatermark(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Hello(_message.Message):
    __slots__ = ["auth_data", "client_name", "mechanism", "protocol_version", "token"]
    AUTH_DATA_FIELD_NUMBER: _ClassVar[int]
    CLIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    auth_data: bytes
    client_name: str
    mechanism: str
    protocol_version: int
    token: bytes
    def __init__(self, protocol_version: _Optional[int] = ..., client_name: _Optional[str] = ..., token: _Optional[bytes] = ..., mechanism: _Optional[str] = ..., auth_data: _Optional[bytes] = ...) -> None: ...

class HelloResult(_message.Message):
    __slots__ = ["auth_data", "auth_required", "max_append_events", "max_event_size", "max_frame", "max_read_count", "protocol_version", "roles", "server_version", "user"]
    AUTH_DATA_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_APPEND_EVENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENT_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAME_FIELD_NUMBER: _ClassVar[int]
    MAX_READ_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    auth_data: bytes
    auth_required: bool
    max_append_events: int
    max_event_size: int
    max_frame: int
    max_read_count: int
    protocol_version: int
    roles: _containers.RepeatedScalarFieldContainer[str]
    server_version: str
    user: str
    def __init__(self, protocol_version: _Optional[int] = ..., server_version: _Optional[str] = ..., max_frame: _Optional[int] = ..., max_read_count: _Optional[int] = ..., max_append_events: _Optional[int] = ..., max_event_size: _Optional[int] = ..., auth_required: bool = ..., user: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., auth_data: _Optional[bytes] = ...) -> None: ...

class InList(_message.Message):
    __slots__ = ["field", "negated", "values"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    NEGATED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    field: str
    negated: bool
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, field: _Optional[str] = ..., values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., negated: bool = ...) -> None: ...

class IncrementAction(_message.Message):
    __slots__ = ["by", "field"]
    BY_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    by: Value
    field: str
    def __init__(self, field: _Optional[str] = ..., by: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class IndexInfo(_message.Message):
    __slots__ = ["created_sequence", "entries", "field", "type"]
    CREATED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    created_sequence: int
    entries: int
    field: str
    type: str
    def __init__(self, type: _Optional[str] = ..., field: _Optional[str] = ..., entries: _Optional[int] = ..., created_sequence: _Optional[int] = ...) -> None: ...

class IndexList(_message.Message):
    __slots__ = ["indexes"]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    indexes: _containers.RepeatedCompositeFieldContainer[IndexInfo]
    def __init__(self, indexes: _Optional[_Iterable[_Union[IndexInfo, _Mapping]]] = ...) -> None: ...

class IndexResult(_message.Message):
    __slots__ = ["index", "sequence"]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    index: IndexInfo
    sequence: int
    def __init__(self, index: _Optional[_Union[IndexInfo, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class IndexSpec(_message.Message):
    __slots__ = ["field", "type"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    field: str
    type: str
    def __init__(self, type: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class JoinConsumer(_message.Message):
    __slots__ = ["credits", "name"]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    credits: int
    name: str
    def __init__(self, name: _Optional[str] = ..., credits: _Optional[int] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ["count", "duration_ms", "on_disconnect", "operation_id", "projection", "source_position"]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_POSITION_FIELD_NUMBER: _ClassVar[int]
    count: int
    duration_ms: int
    on_disconnect: OnDisconnect
    operation_id: str
    projection: str
    source_position: int
    def __init__(self, projection: _Optional[str] = ..., duration_ms: _Optional[int] = ..., count: _Optional[int] = ..., operation_id: _Optional[str] = ..., source_position: _Optional[int] = ..., on_disconnect: _Optional[_Union[OnDisconnect, str]] = ...) -> None: ...

class LeaseGrant(_message.Message):
    __slots__ = ["duration_ms", "expires_at_ms", "sequence", "token"]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    duration_ms: int
    expires_at_ms: int
    sequence: int
    token: int
    def __init__(self, sequence: _Optional[int] = ..., token: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class LeaseResult(_message.Message):
    __slots__ = ["leases"]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseGrant]
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseGrant, _Mapping]]] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ["applied", "apply_error", "apply_error_message", "failed_op", "kind", "operation_id", "ops", "original_expiry_us", "original_sequence", "projection", "reason", "sequence", "source_position", "time_us"]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    APPLY_ERROR_FIELD_NUMBER: _ClassVar[int]
    APPLY_ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_OP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_EXPIRY_US_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_POSITION_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    apply_error: ErrorCode
    apply_error_message: str
    failed_op: int
    kind: EntryKind
    operation_id: str
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    original_expiry_us: int
    original_sequence: int
    projection: str
    reason: EntryReason
    sequence: int
    source_position: int
    time_us: int
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., reason: _Optional[_Union[EntryReason, str]] = ..., projection: _Optional[str] = ..., operation_id: _Optional[str] = ..., source_position: _Optional[int] = ..., time_us: _Optional[int] = ..., original_expiry_us: _Optional[int] = ..., original_sequence: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ..., applied: bool = ..., apply_error: _Optional[_Union[ErrorCode, str]] = ..., apply_error_message: _Optional[str] = ..., failed_op: _Optional[int] = ...) -> None: ...

class ListClients(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListConsumers(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListIndexes(_message.Message):
    __slots__ = ["type"]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    type: str
    def __init__(self, type: _Optional[str] = ...) -> None: ...

class ListParked(_message.Message):
    __slots__ = ["from_position", "max_count", "name"]
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    from_position: int
    max_count: int
    name: str
    def __init__(self, name: _Optional[str] = ..., from_position: _Optional[int] = ..., max_count: _Optional[int] = ...) -> None: ...

class ListRoles(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListTokens(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListUsers(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class NackEvents(_message.Message):
    __slots__ = ["action", "ids", "name", "reason"]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    action: NackAction
    ids: _containers.RepeatedScalarFieldContainer[bytes]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., ids: _Optional[_Iterable[bytes]] = ..., action: _Optional[_Union[NackAction, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class NackResult(_message.Message):
    __slots__ = ["checkpoint"]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: int
    def __init__(self, checkpoint: _Optional[int] = ...) -> None: ...

class NewEvent(_message.Message):
    __slots__ = ["data", "id", "metadata", "type"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    id: bytes
    metadata: bytes
    type: str
    def __init__(self, id: _Optional[bytes] = ..., type: _Optional[str] = ..., data: _Optional[bytes] = ..., metadata: _Optional[bytes] = ...) -> None: ...

class Op(_message.Message):
    __slots__ = ["create_index", "delete", "drop_index", "text", "update", "upsert"]
    CREATE_INDEX_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    DROP_INDEX_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    UPSERT_FIELD_NUMBER: _ClassVar[int]
    create_index: IndexSpec
    delete: Delete
    drop_index: IndexSpec
    text: str
    update: Update
    upsert: Upsert
    def __init__(self, upsert: _Optional[_Union[Upsert, _Mapping]] = ..., update: _Optional[_Union[Update, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., create_index: _Optional[_Union[IndexSpec, _Mapping]] = ..., drop_index: _Optional[_Union[IndexSpec, _Mapping]] = ..., text: _Optional[str] = ...) -> None: ...

class OpList(_message.Message):
    __slots__ = ["applied", "error_code", "error_message", "failed_op", "ops"]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FAILED_OP_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    error_code: ErrorCode
    error_message: str
    failed_op: int
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    def __init__(self, ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ..., applied: bool = ..., error_code: _Optional[_Union[ErrorCode, str]] = ..., error_message: _Optional[str] = ..., failed_op: _Optional[int] = ...) -> None: ...

class OpResult(_message.Message):
    __slots__ = ["affected", "created", "examined", "matched", "micros", "plan", "strategy"]
    AFFECTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXAMINED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    affected: int
    created: bool
    examined: int
    matched: int
    micros: int
    plan: str
    strategy: PlanStrategy
    def __init__(self, affected: _Optional[int] = ..., matched: _Optional[int] = ..., created: bool = ..., strategy: _Optional[_Union[PlanStrategy, str]] = ..., plan: _Optional[str] = ..., examined: _Optional[int] = ..., micros: _Optional[int] = ...) -> None: ...

class ParkedEvent(_message.Message):
    __slots__ = ["deliveries", "event", "parked_at_us", "reason"]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    PARKED_AT_US_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deliveries: int
    event: RecordedEvent
    parked_at_us: int
    reason: str
    def __init__(self, event: _Optional[_Union[RecordedEvent, _Mapping]] = ..., deliveries: _Optional[int] = ..., reason: _Optional[str] = ..., parked_at_us: _Optional[int] = ...) -> None: ...

class ParkedList(_message.Message):
    __slots__ = ["end", "events", "next_position"]
    END_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_POSITION_FIELD_NUMBER: _ClassVar[int]
    end: bool
    events: _containers.RepeatedCompositeFieldContainer[ParkedEvent]
    next_position: int
    def __init__(self, events: _Optional[_Iterable[_Union[ParkedEvent, _Mapping]]] = ..., next_position: _Optional[int] = ..., end: bool = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ["nonce"]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...

class PlanResult(_message.Message):
    __slots__ = ["estimated_candidates", "max_candidates", "max_scan", "plan", "refused", "strategy", "type_entities"]
    ESTIMATED_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_SCAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    TYPE_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    estimated_candidates: int
    max_candidates: int
    max_scan: int
    plan: str
    refused: bool
    strategy: PlanStrategy
    type_entities: int
    def __init__(self, strategy: _Optional[_Union[PlanStrategy, str]] = ..., plan: _Optional[str] = ..., estimated_candidates: _Optional[int] = ..., type_entities: _Optional[int] = ..., refused: bool = ..., max_scan: _Optional[int] = ..., max_candidates: _Optional[int] = ...) -> None: ...

class Pong(_message.Message):
    __slots__ = ["nonce"]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    def __init__(self, nonce: _Optional[int] = ...) -> None: ...

class ProjectionStats(_message.Message):
    __slots__ = ["adaptive_duration_ms", "apply_wait_ms_max", "apply_wait_ms_mean", "committed", "efficiency", "entries_waiting", "expired", "gaps", "health", "health_reason", "lease_overrun", "leases_active", "projection", "recovered", "released"]
    ADAPTIVE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    APPLY_WAIT_MS_MAX_FIELD_NUMBER: _ClassVar[int]
    APPLY_WAIT_MS_MEAN_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_WAITING_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    LEASES_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LEASE_OVERRUN_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    adaptive_duration_ms: int
    apply_wait_ms_max: int
    apply_wait_ms_mean: float
    committed: int
    efficiency: float
    entries_waiting: int
    expired: int
    gaps: int
    health: str
    health_reason: str
    lease_overrun: int
    leases_active: int
    projection: str
    recovered: int
    released: int
    def __init__(self, projection: _Optional[str] = ..., leases_active: _Optional[int] = ..., committed: _Optional[int] = ..., released: _Optional[int] = ..., expired: _Optional[int] = ..., recovered: _Optional[int] = ..., efficiency: _Optional[float] = ..., adaptive_duration_ms: _Optional[int] = ..., entries_waiting: _Optional[int] = ..., apply_wait_ms_mean: _Optional[float] = ..., apply_wait_ms_max: _Optional[int] = ..., gaps: _Optional[int] = ..., lease_overrun: _Optional[int] = ..., health: _Optional[str] = ..., health_reason: _Optional[str] = ...) -> None: ...

class PutRole(_message.Message):
    __slots__ = ["grants", "name"]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedScalarFieldContainer[str]
    name: str
    def __init__(self, name: _Optional[str] = ..., grants: _Optional[_Iterable[str]] = ...) -> None: ...

class PutRoleResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class PutUser(_message.Message):
    __slots__ = ["credential", "name", "roles"]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    credential: str
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., credential: _Optional[str] = ...) -> None: ...

class PutUserResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class QueryEntities(_message.Message):
    __slots__ = ["after", "limit", "type", "where"]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    after: str
    limit: int
    type: str
    where: Where
    def __init__(self, type: _Optional[str] = ..., where: _Optional[_Union[Where, _Mapping]] = ..., limit: _Optional[int] = ..., after: _Optional[str] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ["end", "entities", "examined", "next_after", "plan", "strategy", "watermark"]
    END_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    EXAMINED_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    end: bool
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    examined: int
    next_after: str
    plan: str
    strategy: PlanStrategy
    watermark: int
    def __init__(self, entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., next_after: _Optional[str] = ..., end: bool = ..., strategy: _Optional[_Union[PlanStrategy, str]] = ..., plan: _Optional[str] = ..., examined: _Optional[int] = ..., watermark: _Optional[int] = ...) -> None: ...

class ReadAll(_message.Message):
    __slots__ = ["direction", "event_types", "from_position", "max_count", "stream_prefix"]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    FROM_POSITION_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    STREAM_PREFIX_FIELD_NUMBER: _ClassVar[int]
    direction: Direction
    event_types: _containers.RepeatedScalarFieldContainer[str]
    from_position: int
    max_count: int
    stream_prefix: str
    def __init__(self, from_position: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., max_count: _Optional[int] = ..., stream_prefix: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadAllResult(_message.Message):
    __slots__ = ["end_of_log", "events", "last_position", "next_position"]
    END_OF_LOG_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    NEXT_POSITION_FIELD_NUMBER: _ClassVar[int]
    end_of_log: bool
    events: _containers.RepeatedCompositeFieldContainer[RecordedEvent]
    last_position: int
    next_position: int
    def __init__(self, events: _Optional[_Iterable[_Union[RecordedEvent, _Mapping]]] = ..., next_position: _Optional[int] = ..., end_of_log: bool = ..., last_position: _Optional[int] = ...) -> None: ...

class ReadLedger(_message.Message):
    __slots__ = ["from_sequence", "max_count"]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    max_count: int
    def __init__(self, from_sequence: _Optional[int] = ..., max_count: _Optional[int] = ...) -> None: ...

class ReadLedgerResult(_message.Message):
    __slots__ = ["end", "entries", "next_sequence", "watermark"]
    END_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    end: bool
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    next_sequence: int
    watermark: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., next_sequence: _Optional[int] = ..., watermark: _Optional[int] = ..., end: bool = ...) -> None: ...

class ReadStream(_message.Message):
    __slots__ = ["direction", "from_version", "max_count", "stream"]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    direction: Direction
    from_version: int
    max_count: int
    stream: str
    def __init__(self, stream: _Optional[str] = ..., from_version: _Optional[int] = ..., direction: _Optional[_Union[Direction, str]] = ..., max_count: _Optional[int] = ...) -> None: ...

class ReadStreamResult(_message.Message):
    __slots__ = ["end_of_stream", "events", "last_version", "next_version"]
    END_OF_STREAM_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    NEXT_VERSION_FIELD_NUMBER: _ClassVar[int]
    end_of_stream: bool
    events: _containers.RepeatedCompositeFieldContainer[RecordedEvent]
    last_version: int
    next_version: int
    def __init__(self, events: _Optional[_Iterable[_Union[RecordedEvent, _Mapping]]] = ..., next_version: _Optional[int] = ..., end_of_stream: bool = ..., last_version: _Optional[int] = ...) -> None: ...

class RecordedEvent(_message.Message):
    __slots__ = ["data", "id", "metadata", "position", "stream", "timestamp_us", "type", "version"]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    id: bytes
    metadata: bytes
    position: int
    stream: str
    timestamp_us: int
    type: str
    version: int
    def __init__(self, id: _Optional[bytes] = ..., stream: _Optional[str] = ..., version: _Optional[int] = ..., position: _Optional[int] = ..., type: _Optional[str] = ..., data: _Optional[bytes] = ..., metadata: _Optional[bytes] = ..., timestamp_us: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ["force", "reason", "sequence", "token"]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    force: bool
    reason: str
    sequence: int
    token: int
    def __init__(self, sequence: _Optional[int] = ..., token: _Optional[int] = ..., reason: _Optional[str] = ..., force: bool = ...) -> None: ...

class ReleaseResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Reload(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ReloadResult(_message.Message):
    __slots__ = ["tls", "tls_not_after"]
    TLS_FIELD_NUMBER: _ClassVar[int]
    TLS_NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    tls: bool
    tls_not_after: int
    def __init__(self, tls: bool = ..., tls_not_after: _Optional[int] = ...) -> None: ...

class ReplayParked(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReplayParkedResult(_message.Message):
    __slots__ = ["replayed"]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ["ack", "append_events", "authenticate", "backup", "commit", "create_consumer", "create_index", "create_token", "credit", "delete_consumer", "delete_role", "delete_stream", "delete_user", "disconnect", "drop_index", "explain", "extend", "get_entity", "get_stats", "get_stream_info", "get_stream_metadata", "get_watermark", "hello", "id", "join_consumer", "lease", "list_clients", "list_consumers", "list_indexes", "list_parked", "list_roles", "list_tokens", "list_users", "nack", "ping", "put_role", "put_user", "query_entities", "read_all", "read_ledger", "read_stream", "release", "reload", "replay_parked", "revoke_token", "scavenge", "set_stream_metadata", "stage", "subscribe", "unsubscribe", "verify", "wait_for_watermark"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    APPEND_EVENTS_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    CREATE_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    CREATE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    DELETE_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELETE_ROLE_FIELD_NUMBER: _ClassVar[int]
    DELETE_STREAM_FIELD_NUMBER: _ClassVar[int]
    DELETE_USER_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    DROP_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    EXTEND_FIELD_NUMBER: _ClassVar[int]
    GET_ENTITY_FIELD_NUMBER: _ClassVar[int]
    GET_STATS_FIELD_NUMBER: _ClassVar[int]
    GET_STREAM_INFO_FIELD_NUMBER: _ClassVar[int]
    GET_STREAM_METADATA_FIELD_NUMBER: _ClassVar[int]
    GET_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    LIST_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    LIST_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    LIST_INDEXES_FIELD_NUMBER: _ClassVar[int]
    LIST_PARKED_FIELD_NUMBER: _ClassVar[int]
    LIST_ROLES_FIELD_NUMBER: _ClassVar[int]
    LIST_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LIST_USERS_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    PUT_ROLE_FIELD_NUMBER: _ClassVar[int]
    PUT_USER_FIELD_NUMBER: _ClassVar[int]
    QUERY_ENTITIES_FIELD_NUMBER: _ClassVar[int]
    READ_ALL_FIELD_NUMBER: _ClassVar[int]
    READ_LEDGER_FIELD_NUMBER: _ClassVar[int]
    READ_STREAM_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    REPLAY_PARKED_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCAVENGE_FIELD_NUMBER: _ClassVar[int]
    SET_STREAM_METADATA_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    ack: AckEvents
    append_events: AppendEvents
    authenticate: Authenticate
    backup: Backup
    commit: Commit
    create_consumer: CreateConsumer
    create_index: CreateIndex
    create_token: CreateToken
    credit: Credit
    delete_consumer: DeleteConsumer
    delete_role: DeleteRole
    delete_stream: DeleteStream
    delete_user: DeleteUser
    disconnect: Disconnect
    drop_index: DropIndex
    explain: Explain
    extend: Extend
    get_entity: GetEntity
    get_stats: GetStats
    get_stream_info: GetStreamInfo
    get_stream_metadata: GetStreamMetadata
    get_watermark: GetWatermark
    hello: Hello
    id: int
    join_consumer: JoinConsumer
    lease: Lease
    list_clients: ListClients
    list_consumers: ListConsumers
    list_indexes: ListIndexes
    list_parked: ListParked
    list_roles: ListRoles
    list_tokens: ListTokens
    list_users: ListUsers
    nack: NackEvents
    ping: Ping
    put_role: PutRole
    put_user: PutUser
    query_entities: QueryEntities
    read_all: ReadAll
    read_ledger: ReadLedger
    read_stream: ReadStream
    release: Release
    reload: Reload
    replay_parked: ReplayParked
    revoke_token: RevokeToken
    scavenge: Scavenge
    set_stream_metadata: SetStreamMetadata
    stage: Stage
    subscribe: Subscribe
    unsubscribe: Unsubscribe
    verify: Verify
    wait_for_watermark: WaitForWatermark
    def __init__(self, id: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., append_events: _Optional[_Union[AppendEvents, _Mapping]] = ..., read_stream: _Optional[_Union[ReadStream, _Mapping]] = ..., read_all: _Optional[_Union[ReadAll, _Mapping]] = ..., get_stream_info: _Optional[_Union[GetStreamInfo, _Mapping]] = ..., get_stats: _Optional[_Union[GetStats, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., extend: _Optional[_Union[Extend, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., stage: _Optional[_Union[Stage, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., read_ledger: _Optional[_Union[ReadLedger, _Mapping]] = ..., get_watermark: _Optional[_Union[GetWatermark, _Mapping]] = ..., wait_for_watermark: _Optional[_Union[WaitForWatermark, _Mapping]] = ..., get_entity: _Optional[_Union[GetEntity, _Mapping]] = ..., query_entities: _Optional[_Union[QueryEntities, _Mapping]] = ..., create_index: _Optional[_Union[CreateIndex, _Mapping]] = ..., drop_index: _Optional[_Union[DropIndex, _Mapping]] = ..., list_indexes: _Optional[_Union[ListIndexes, _Mapping]] = ..., explain: _Optional[_Union[Explain, _Mapping]] = ..., verify: _Optional[_Union[Verify, _Mapping]] = ..., subscribe: _Optional[_Union[Subscribe, _Mapping]] = ..., credit: _Optional[_Union[Credit, _Mapping]] = ..., unsubscribe: _Optional[_Union[Unsubscribe, _Mapping]] = ..., create_consumer: _Optional[_Union[CreateConsumer, _Mapping]] = ..., delete_consumer: _Optional[_Union[DeleteConsumer, _Mapping]] = ..., list_consumers: _Optional[_Union[ListConsumers, _Mapping]] = ..., join_consumer: _Optional[_Union[JoinConsumer, _Mapping]] = ..., ack: _Optional[_Union[AckEvents, _Mapping]] = ..., nack: _Optional[_Union[NackEvents, _Mapping]] = ..., list_parked: _Optional[_Union[ListParked, _Mapping]] = ..., replay_parked: _Optional[_Union[ReplayParked, _Mapping]] = ..., set_stream_metadata: _Optional[_Union[SetStreamMetadata, _Mapping]] = ..., get_stream_metadata: _Optional[_Union[GetStreamMetadata, _Mapping]] = ..., delete_stream: _Optional[_Union[DeleteStream, _Mapping]] = ..., scavenge: _Optional[_Union[Scavenge, _Mapping]] = ..., backup: _Optional[_Union[Backup, _Mapping]] = ..., authenticate: _Optional[_Union[Authenticate, _Mapping]] = ..., put_user: _Optional[_Union[PutUser, _Mapping]] = ..., delete_user: _Optional[_Union[DeleteUser, _Mapping]] = ..., list_users: _Optional[_Union[ListUsers, _Mapping]] = ..., put_role: _Optional[_Union[PutRole, _Mapping]] = ..., delete_role: _Optional[_Union[DeleteRole, _Mapping]] = ..., list_roles: _Optional[_Union[ListRoles, _Mapping]] = ..., create_token: _Optional[_Union[CreateToken, _Mapping]] = ..., revoke_token: _Optional[_Union[RevokeToken, _Mapping]] = ..., list_tokens: _Optional[_Union[ListTokens, _Mapping]] = ..., reload: _Optional[_Union[Reload, _Mapping]] = ..., list_clients: _Optional[_Union[ListClients, _Mapping]] = ..., disconnect: _Optional[_Union[Disconnect, _Mapping]] = ...) -> None: ...

class Response(_message.Message):
    __slots__ = ["ack", "append_events", "authenticate", "backup", "clients", "commit", "consumer", "consumers", "create_token", "credit", "delete_consumer", "delete_role", "delete_stream", "delete_user", "disconnect", "error", "extend", "get_entity", "hello", "id", "index", "indexes", "lease", "nack", "parked", "plan", "pong", "put_role", "put_user", "query", "read_all", "read_ledger", "read_stream", "release", "reload", "replay_parked", "revoke_token", "roles", "scavenge", "stage", "stats", "stream_info", "stream_metadata", "subscribe", "subscription_item", "tokens", "unsubscribe", "users", "verify", "watermark"]
    ACK_FIELD_NUMBER: _ClassVar[int]
    APPEND_EVENTS_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATE_FIELD_NUMBER: _ClassVar[int]
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREDIT_FIELD_NUMBER: _ClassVar[int]
    DELETE_CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DELETE_ROLE_FIELD_NUMBER: _ClassVar[int]
    DELETE_STREAM_FIELD_NUMBER: _ClassVar[int]
    DELETE_USER_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXTEND_FIELD_NUMBER: _ClassVar[int]
    GET_ENTITY_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEXES_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    PUT_ROLE_FIELD_NUMBER: _ClassVar[int]
    PUT_USER_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    READ_ALL_FIELD_NUMBER: _ClassVar[int]
    READ_LEDGER_FIELD_NUMBER: _ClassVar[int]
    READ_STREAM_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    REPLAY_PARKED_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    SCAVENGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    STREAM_INFO_FIELD_NUMBER: _ClassVar[int]
    STREAM_METADATA_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_ITEM_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    UNSUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    ack: AckResult
    append_events: AppendResult
    authenticate: AuthenticateResult
    backup: BackupResult
    clients: ClientList
    commit: CommitResult
    consumer: ConsumerInfo
    consumers: ConsumerList
    create_token: CreateTokenResult
    credit: CreditResult
    delete_consumer: DeleteConsumerResult
    delete_role: DeleteRoleResult
    delete_stream: DeleteStreamResult
    delete_user: DeleteUserResult
    disconnect: DisconnectResult
    error: Error
    extend: ExtendResult
    get_entity: GetEntityResult
    hello: HelloResult
    id: int
    index: IndexResult
    indexes: IndexList
    lease: LeaseResult
    nack: NackResult
    parked: ParkedList
    plan: PlanResult
    pong: Pong
    put_role: PutRoleResult
    put_user: PutUserResult
    query: QueryResult
    read_all: ReadAllResult
    read_ledger: ReadLedgerResult
    read_stream: ReadStreamResult
    release: ReleaseResult
    reload: ReloadResult
    replay_parked: ReplayParkedResult
    revoke_token: RevokeTokenResult
    roles: RoleList
    scavenge: ScavengeResult
    stage: StageResult
    stats: ServerStats
    stream_info: StreamInfo
    stream_metadata: StreamMetadataResult
    subscribe: SubscribeResult
    subscription_item: SubscriptionItem
    tokens: TokenList
    unsubscribe: UnsubscribeResult
    users: UserList
    verify: VerifyResult
    watermark: WatermarkResult
    def __init__(self, id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., hello: _Optional[_Union[HelloResult, _Mapping]] = ..., pong: _Optional[_Union[Pong, _Mapping]] = ..., append_events: _Optional[_Union[AppendResult, _Mapping]] = ..., read_stream: _Optional[_Union[ReadStreamResult, _Mapping]] = ..., read_all: _Optional[_Union[ReadAllResult, _Mapping]] = ..., stream_info: _Optional[_Union[StreamInfo, _Mapping]] = ..., stats: _Optional[_Union[ServerStats, _Mapping]] = ..., lease: _Optional[_Union[LeaseResult, _Mapping]] = ..., extend: _Optional[_Union[ExtendResult, _Mapping]] = ..., release: _Optional[_Union[ReleaseResult, _Mapping]] = ..., stage: _Optional[_Union[StageResult, _Mapping]] = ..., commit: _Optional[_Union[CommitResult, _Mapping]] = ..., read_ledger: _Optional[_Union[ReadLedgerResult, _Mapping]] = ..., watermark: _Optional[_Union[WatermarkResult, _Mapping]] = ..., get_entity: _Optional[_Union[GetEntityResult, _Mapping]] = ..., query: _Optional[_Union[QueryResult, _Mapping]] = ..., index: _Optional[_Union[IndexResult, _Mapping]] = ..., indexes: _Optional[_Union[IndexList, _Mapping]] = ..., plan: _Optional[_Union[PlanResult, _Mapping]] = ..., verify: _Optional[_Union[VerifyResult, _Mapping]] = ..., subscribe: _Optional[_Union[SubscribeResult, _Mapping]] = ..., subscription_item: _Optional[_Union[SubscriptionItem, _Mapping]] = ..., credit: _Optional[_Union[CreditResult, _Mapping]] = ..., unsubscribe: _Optional[_Union[UnsubscribeResult, _Mapping]] = ..., consumer: _Optional[_Union[ConsumerInfo, _Mapping]] = ..., delete_consumer: _Optional[_Union[DeleteConsumerResult, _Mapping]] = ..., consumers: _Optional[_Union[ConsumerList, _Mapping]] = ..., ack: _Optional[_Union[AckResult, _Mapping]] = ..., nack: _Optional[_Union[NackResult, _Mapping]] = ..., parked: _Optional[_Union[ParkedList, _Mapping]] = ..., replay_parked: _Optional[_Union[ReplayParkedResult, _Mapping]] = ..., stream_metadata: _Optional[_Union[StreamMetadataResult, _Mapping]] = ..., delete_stream: _Optional[_Union[DeleteStreamResult, _Mapping]] = ..., scavenge: _Optional[_Union[ScavengeResult, _Mapping]] = ..., backup: _Optional[_Union[BackupResult, _Mapping]] = ..., authenticate: _Optional[_Union[AuthenticateResult, _Mapping]] = ..., put_user: _Optional[_Union[PutUserResult, _Mapping]] = ..., delete_user: _Optional[_Union[DeleteUserResult, _Mapping]] = ..., users: _Optional[_Union[UserList, _Mapping]] = ..., put_role: _Optional[_Union[PutRoleResult, _Mapping]] = ..., delete_role: _Optional[_Union[DeleteRoleResult, _Mapping]] = ..., roles: _Optional[_Union[RoleList, _Mapping]] = ..., create_token: _Optional[_Union[CreateTokenResult, _Mapping]] = ..., revoke_token: _Optional[_Union[RevokeTokenResult, _Mapping]] = ..., tokens: _Optional[_Union[TokenList, _Mapping]] = ..., reload: _Optional[_Union[ReloadResult, _Mapping]] = ..., clients: _Optional[_Union[ClientList, _Mapping]] = ..., disconnect: _Optional[_Union[DisconnectResult, _Mapping]] = ...) -> None: ...

class RevokeToken(_message.Message):
    __slots__ = ["id"]
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeTokenResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class RoleInfo(_message.Message):
    __slots__ = ["builtin", "grants", "name"]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    builtin: bool
    grants: _containers.RepeatedScalarFieldContainer[str]
    name: str
    def __init__(self, name: _Optional[str] = ..., grants: _Optional[_Iterable[str]] = ..., builtin: bool = ...) -> None: ...

class RoleList(_message.Message):
    __slots__ = ["roles"]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[RoleInfo]
    def __init__(self, roles: _Optional[_Iterable[_Union[RoleInfo, _Mapping]]] = ...) -> None: ...

class Scavenge(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ScavengeResult(_message.Message):
    __slots__ = ["bytes_reclaimed", "done", "events_examined", "events_removed", "last_position", "micros", "position"]
    BYTES_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_EXAMINED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    bytes_reclaimed: int
    done: bool
    events_examined: int
    events_removed: int
    last_position: int
    micros: int
    position: int
    def __init__(self, events_examined: _Optional[int] = ..., events_removed: _Optional[int] = ..., bytes_reclaimed: _Optional[int] = ..., micros: _Optional[int] = ..., position: _Optional[int] = ..., last_position: _Optional[int] = ..., done: bool = ...) -> None: ...

class ServerStats(_message.Message):
    __slots__ = ["apply_failures", "apply_wait_ms_max", "apply_wait_ms_mean", "auth_failures", "auth_throttled", "batch_events", "batch_requests", "batch_requests_max", "batches", "cascade_level", "commit_us_total", "connections_current", "connections_total", "entries_applied", "entries_waiting", "errors_total", "exploded_ids", "explosion_us_total", "explosions", "gaps", "health", "health_reason", "last_position", "lease_ceiling", "lease_efficiency", "lease_overrun", "leases_active", "leases_committed", "leases_expired", "leases_recovered", "leases_released", "log_lines_suppressed", "map_grow_count", "map_size", "map_used", "memory_budget", "memory_consumers", "memory_disconnects", "memory_held", "memory_input", "memory_output", "memory_pauses", "memory_queued_reads", "memory_writes", "next_sequence", "output_budget", "output_buffered", "projections", "queries", "quota_pauses", "quota_refusals", "requests_total", "server_version", "throttled", "tls", "tls_cert_days_left", "uptime_ms", "watermark"]
    APPLY_FAILURES_FIELD_NUMBER: _ClassVar[int]
    APPLY_WAIT_MS_MAX_FIELD_NUMBER: _ClassVar[int]
    APPLY_WAIT_MS_MEAN_FIELD_NUMBER: _ClassVar[int]
    AUTH_FAILURES_FIELD_NUMBER: _ClassVar[int]
    AUTH_THROTTLED_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    BATCH_EVENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_REQUESTS_MAX_FIELD_NUMBER: _ClassVar[int]
    CASCADE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_US_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_CURRENT_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_WAITING_FIELD_NUMBER: _ClassVar[int]
    ERRORS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EXPLODED_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLOSIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLOSION_US_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GAPS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    LEASES_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LEASES_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    LEASES_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    LEASES_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    LEASES_RELEASED_FIELD_NUMBER: _ClassVar[int]
    LEASE_CEILING_FIELD_NUMBER: _ClassVar[int]
    LEASE_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    LEASE_OVERRUN_FIELD_NUMBER: _ClassVar[int]
    LOG_LINES_SUPPRESSED_FIELD_NUMBER: _ClassVar[int]
    MAP_GROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAP_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_DISCONNECTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_HELD_FIELD_NUMBER: _ClassVar[int]
    MEMORY_INPUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PAUSES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_QUEUED_READS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_WRITES_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BUDGET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BUFFERED_FIELD_NUMBER: _ClassVar[int]
    PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_PAUSES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_REFUSALS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    THROTTLED_FIELD_NUMBER: _ClassVar[int]
    TLS_CERT_DAYS_LEFT_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    apply_failures: int
    apply_wait_ms_max: int
    apply_wait_ms_mean: float
    auth_failures: int
    auth_throttled: int
    batch_events: int
    batch_requests: int
    batch_requests_max: int
    batches: int
    cascade_level: int
    commit_us_total: int
    connections_current: int
    connections_total: int
    entries_applied: int
    entries_waiting: int
    errors_total: int
    exploded_ids: int
    explosion_us_total: int
    explosions: int
    gaps: int
    health: str
    health_reason: str
    last_position: int
    lease_ceiling: int
    lease_efficiency: float
    lease_overrun: int
    leases_active: int
    leases_committed: int
    leases_expired: int
    leases_recovered: int
    leases_released: int
    log_lines_suppressed: int
    map_grow_count: int
    map_size: int
    map_used: int
    memory_budget: int
    memory_consumers: int
    memory_disconnects: int
    memory_held: int
    memory_input: int
    memory_output: int
    memory_pauses: int
    memory_queued_reads: int
    memory_writes: int
    next_sequence: int
    output_budget: int
    output_buffered: int
    projections: _containers.RepeatedCompositeFieldContainer[ProjectionStats]
    queries: int
    quota_pauses: int
    quota_refusals: int
    requests_total: int
    server_version: str
    throttled: int
    tls: bool
    tls_cert_days_left: int
    uptime_ms: int
    watermark: int
    def __init__(self, server_version: _Optional[str] = ..., uptime_ms: _Optional[int] = ..., connections_current: _Optional[int] = ..., connections_total: _Optional[int] = ..., requests_total: _Optional[int] = ..., errors_total: _Optional[int] = ..., batches: _Optional[int] = ..., batch_requests: _Optional[int] = ..., batch_events: _Optional[int] = ..., commit_us_total: _Optional[int] = ..., batch_requests_max: _Optional[int] = ..., last_position: _Optional[int] = ..., map_size: _Optional[int] = ..., map_used: _Optional[int] = ..., map_grow_count: _Optional[int] = ..., leases_active: _Optional[int] = ..., leases_committed: _Optional[int] = ..., leases_released: _Optional[int] = ..., leases_expired: _Optional[int] = ..., leases_recovered: _Optional[int] = ..., lease_efficiency: _Optional[float] = ..., entries_waiting: _Optional[int] = ..., apply_wait_ms_mean: _Optional[float] = ..., apply_wait_ms_max: _Optional[int] = ..., gaps: _Optional[int] = ..., lease_overrun: _Optional[int] = ..., watermark: _Optional[int] = ..., next_sequence: _Optional[int] = ..., lease_ceiling: _Optional[int] = ..., cascade_level: _Optional[int] = ..., health: _Optional[str] = ..., health_reason: _Optional[str] = ..., projections: _Optional[_Iterable[_Union[ProjectionStats, _Mapping]]] = ..., entries_applied: _Optional[int] = ..., apply_failures: _Optional[int] = ..., explosions: _Optional[int] = ..., exploded_ids: _Optional[int] = ..., explosion_us_total: _Optional[int] = ..., queries: _Optional[int] = ..., auth_failures: _Optional[int] = ..., auth_throttled: _Optional[int] = ..., tls: bool = ..., tls_cert_days_left: _Optional[int] = ..., log_lines_suppressed: _Optional[int] = ..., output_buffered: _Optional[int] = ..., output_budget: _Optional[int] = ..., throttled: _Optional[int] = ..., quota_pauses: _Optional[int] = ..., quota_refusals: _Optional[int] = ..., memory_budget: _Optional[int] = ..., memory_held: _Optional[int] = ..., memory_input: _Optional[int] = ..., memory_output: _Optional[int] = ..., memory_queued_reads: _Optional[int] = ..., memory_writes: _Optional[int] = ..., memory_pauses: _Optional[int] = ..., memory_disconnects: _Optional[int] = ..., memory_consumers: _Optional[int] = ...) -> None: ...

class SetAction(_message.Message):
    __slots__ = ["field", "value"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    value: Value
    def __init__(self, field: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class SetStreamMetadata(_message.Message):
    __slots__ = ["metadata", "stream"]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    metadata: StreamMetadata
    stream: str
    def __init__(self, stream: _Optional[str] = ..., metadata: _Optional[_Union[StreamMetadata, _Mapping]] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ["ops", "sequence", "token"]
    OPS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    sequence: int
    token: int
    def __init__(self, sequence: _Optional[int] = ..., token: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ...) -> None: ...

class StageResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class StartsWith(_message.Message):
    __slots__ = ["field", "prefix"]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    field: str
    prefix: str
    def __init__(self, field: _Optional[str] = ..., prefix: _Optional[str] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ["created_us", "deleted", "event_count", "first_position", "last_position", "last_version", "metadata", "stream", "tombstoned", "updated_us"]
    CREATED_US_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    FIRST_POSITION_FIELD_NUMBER: _ClassVar[int]
    LAST_POSITION_FIELD_NUMBER: _ClassVar[int]
    LAST_VERSION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TOMBSTONED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_US_FIELD_NUMBER: _ClassVar[int]
    created_us: int
    deleted: bool
    event_count: int
    first_position: int
    last_position: int
    last_version: int
    metadata: StreamMetadata
    stream: str
    tombstoned: bool
    updated_us: int
    def __init__(self, stream: _Optional[str] = ..., last_version: _Optional[int] = ..., event_count: _Optional[int] = ..., first_position: _Optional[int] = ..., last_position: _Optional[int] = ..., created_us: _Optional[int] = ..., updated_us: _Optional[int] = ..., deleted: bool = ..., tombstoned: bool = ..., metadata: _Optional[_Union[StreamMetadata, _Mapping]] = ...) -> None: ...

class StreamMetadata(_message.Message):
    __slots__ = ["max_age_ms", "max_count", "truncate_before"]
    MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    max_age_ms: int
    max_count: int
    truncate_before: int
    def __init__(self, max_count: _Optional[int] = ..., max_age_ms: _Optional[int] = ..., truncate_before: _Optional[int] = ...) -> None: ...

class StreamMetadataResult(_message.Message):
    __slots__ = ["metadata", "stream"]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    metadata: StreamMetadata
    stream: str
    def __init__(self, stream: _Optional[str] = ..., metadata: _Optional[_Union[StreamMetadata, _Mapping]] = ...) -> None: ...

class Subscribe(_message.Message):
    __slots__ = ["credits", "event_types", "position", "stream", "stream_prefix", "target"]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STREAM_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    credits: int
    event_types: _containers.RepeatedScalarFieldContainer[str]
    position: int
    stream: str
    stream_prefix: str
    target: SubscriptionTarget
    def __init__(self, target: _Optional[_Union[SubscriptionTarget, str]] = ..., stream: _Optional[str] = ..., position: _Optional[int] = ..., stream_prefix: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., credits: _Optional[int] = ..., **kwargs) -> None: ...

class SubscribeResult(_message.Message):
    __slots__ = ["start", "subscription"]
    START_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    start: int
    subscription: int
    def __init__(self, subscription: _Optional[int] = ..., start: _Optional[int] = ...) -> None: ...

class SubscriptionItem(_message.Message):
    __slots__ = ["caught_up", "delivery", "entry", "event", "subscription"]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    caught_up: bool
    delivery: int
    entry: LedgerEntry
    event: RecordedEvent
    subscription: int
    def __init__(self, subscription: _Optional[int] = ..., event: _Optional[_Union[RecordedEvent, _Mapping]] = ..., entry: _Optional[_Union[LedgerEntry, _Mapping]] = ..., caught_up: bool = ..., delivery: _Optional[int] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ["created_ms", "description", "expires_ms", "id", "revoked", "role"]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    created_ms: int
    description: str
    expires_ms: int
    id: str
    revoked: bool
    role: str
    def __init__(self, id: _Optional[str] = ..., role: _Optional[str] = ..., description: _Optional[str] = ..., created_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ..., revoked: bool = ...) -> None: ...

class TokenList(_message.Message):
    __slots__ = ["tokens"]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class Unsubscribe(_message.Message):
    __slots__ = ["subscription"]
    SUBSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    subscription: int
    def __init__(self, subscription: _Optional[int] = ...) -> None: ...

class UnsubscribeResult(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Update(_message.Message):
    __slots__ = ["actions", "create_if_none", "exploded", "type", "where"]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_NONE_FIELD_NUMBER: _ClassVar[int]
    EXPLODED_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    create_if_none: CreateIfNone
    exploded: Explosion
    type: str
    where: Where
    def __init__(self, type: _Optional[str] = ..., where: _Optional[_Union[Where, _Mapping]] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., create_if_none: _Optional[_Union[CreateIfNone, _Mapping]] = ..., exploded: _Optional[_Union[Explosion, _Mapping]] = ...) -> None: ...

class Upsert(_message.Message):
    __slots__ = ["fields", "id", "merge", "type"]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[Field]
    id: str
    merge: bool
    type: str
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[Field, _Mapping]]] = ..., merge: bool = ...) -> None: ...

class UserInfo(_message.Message):
    __slots__ = ["has_password", "name", "roles"]
    HAS_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    has_password: bool
    name: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., has_password: bool = ...) -> None: ...

class UserList(_message.Message):
    __slots__ = ["users"]
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[UserInfo]
    def __init__(self, users: _Optional[_Iterable[_Union[UserInfo, _Mapping]]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["bool_value", "bytes_value", "double_value", "int_value", "null_value", "string_value"]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    bytes_value: bytes
    double_value: float
    int_value: int
    null_value: bool
    string_value: str
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: bool = ..., bytes_value: _Optional[bytes] = ..., null_value: bool = ...) -> None: ...

class Verify(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class VerifyResult(_message.Message):
    __slots__ = ["entities", "entries_replayed", "first_difference", "live_digest", "match", "micros", "replay_digest", "watermark"]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_REPLAYED_FIELD_NUMBER: _ClassVar[int]
    FIRST_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    MICROS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    entities: int
    entries_replayed: int
    first_difference: str
    live_digest: bytes
    match: bool
    micros: int
    replay_digest: bytes
    watermark: int
    def __init__(self, match: bool = ..., live_digest: _Optional[bytes] = ..., replay_digest: _Optional[bytes] = ..., watermark: _Optional[int] = ..., entries_replayed: _Optional[int] = ..., entities: _Optional[int] = ..., first_difference: _Optional[str] = ..., micros: _Optional[int] = ...) -> None: ...

class WaitForWatermark(_message.Message):
    __slots__ = ["sequence", "timeout_ms"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    timeout_ms: int
    def __init__(self, sequence: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WatermarkResult(_message.Message):
    __slots__ = ["next_sequence", "reached", "watermark"]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REACHED_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    next_sequence: int
    reached: bool
    watermark: int
    def __init__(self, watermark: _Optional[int] = ..., reached: bool = ..., next_sequence: _Optional[int] = ...) -> None: ...

class Where(_message.Message):
    __slots__ = ["expr", "text"]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    expr: Expr
    text: str
    def __init__(self, expr: _Optional[_Union[Expr, _Mapping]] = ..., text: _Optional[str] = ...) -> None: ...

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ExpectedVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CompareOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class PlanStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OnDisconnect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Ack(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OnExpired(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class EntryReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class SubscriptionTarget(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class StartFrom(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class NackAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
