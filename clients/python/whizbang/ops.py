"""Events, operations and where clauses: what calls take, in the forms a
Python program has at hand.

- An event is an ``Event`` (its id, a UUIDv7, made when the ``Event`` is, so
  that appending the same object again is an idempotent retry).
- An operation is its text form (``'upsert Order "o-1" {total: 5}'``,
  docs/QUERIES.md, which the server parses) or an ``Op`` message, which the
  builders below make from Python values.
- A where clause is its text form (``'status == "Paid" and total >= 100'``),
  a ``Where`` or an ``Expr`` message.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Union

from ._pb import whizbang_pb2 as pb

OpLike = Union[str, pb.Op]
WhereLike = Union[str, pb.Where, pb.Expr]
PyValue = Union[None, bool, int, float, str, bytes]


def uuid7() -> bytes:
    """A UUIDv7 (RFC 9562) as 16 bytes: 48 bits of Unix milliseconds, then
    74 random bits, so ids sort by creation time as the server's own do."""
    ms = time.time_ns() // 1_000_000
    rand = bytearray(os.urandom(10))
    rand[0] = 0x70 | (rand[0] & 0x0F)  # version 7
    rand[2] = 0x80 | (rand[2] & 0x3F)  # variant 10
    return ms.to_bytes(6, "big") + bytes(rand)


@dataclass
class Event:
    """An event to append. ``id`` defaults to a fresh UUIDv7: keep the
    object to retry an append after a lost answer, and the server answers the
    retry as a replay instead of storing the events twice."""

    type: str
    data: bytes = b""
    metadata: bytes = b""
    id: bytes = field(default_factory=uuid7)

    def to_pb(self) -> pb.NewEvent:
        return pb.NewEvent(id=self.id, type=self.type, data=self.data, metadata=self.metadata)


def value(v: PyValue) -> pb.Value:
    """A Python value as a ``Value``: None is null, bool, int (int64), float,
    str and bytes map to their kinds."""
    if v is None:
        return pb.Value(null_value=True)
    if isinstance(v, bool):
        return pb.Value(bool_value=v)
    if isinstance(v, int):
        return pb.Value(int_value=v)
    if isinstance(v, float):
        return pb.Value(double_value=v)
    if isinstance(v, str):
        return pb.Value(string_value=v)
    if isinstance(v, (bytes, bytearray)):
        return pb.Value(bytes_value=bytes(v))
    raise TypeError(f"no Whizbang value for {type(v).__name__}")


def py_value(v: pb.Value) -> PyValue:
    """A ``Value`` as the Python value ``value()`` takes."""
    kind = v.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    return getattr(v, kind)  # type: ignore[no-any-return]


def fields(entity: pb.Entity) -> dict[str, PyValue]:
    """An entity's fields as a dict."""
    return {f.name: py_value(f.value) for f in entity.fields}


def _fields(values: Mapping[str, PyValue]) -> list[pb.Field]:
    return [pb.Field(name=k, value=value(v)) for k, v in values.items()]


def as_where(where: WhereLike) -> pb.Where:
    if isinstance(where, str):
        return pb.Where(text=where)
    if isinstance(where, pb.Expr):
        return pb.Where(expr=where)
    if isinstance(where, pb.Where):
        return where
    raise TypeError(f"a where clause is a str, Where or Expr, not {type(where).__name__}")


def as_op(op: OpLike) -> pb.Op:
    if isinstance(op, str):
        return pb.Op(text=op)
    if isinstance(op, pb.Op):
        return op
    raise TypeError(f"an operation is a str or an Op, not {type(op).__name__}")


def as_ops(ops: Union[OpLike, Iterable[OpLike], None]) -> list[pb.Op]:
    """One op or several, each text or an Op. A string is one op: send
    several as a list (the server refuses ';' in one text op)."""
    if ops is None:
        return []
    if isinstance(ops, (str, pb.Op)):
        return [as_op(ops)]
    return [as_op(o) for o in ops]


def upsert(type: str, id: str, values: Mapping[str, PyValue], *, merge: bool = False) -> pb.Op:
    """``upsert T "id" {...}``: creates the entity or replaces its fields
    (``merge``: sets the ones given and keeps the others)."""
    return pb.Op(upsert=pb.Upsert(type=type, id=id, fields=_fields(values), merge=merge))


def update(type: str, where: WhereLike, *, set: Optional[Mapping[str, PyValue]] = None,
           unset: Iterable[str] = (), inc: Optional[Mapping[str, Union[int, float]]] = None,
           create: Optional[tuple[str, Mapping[str, PyValue]]] = None) -> pb.Op:
    """``update T where C set f = v, unset g, inc n by 1 [create "id" {...}]``."""
    actions = [pb.Action(set=pb.SetAction(field=k, value=value(v))) for k, v in (set or {}).items()]
    actions += [pb.Action(unset=f) for f in unset]
    actions += [pb.Action(increment=pb.IncrementAction(field=k, by=value(v)))
                for k, v in (inc or {}).items()]
    up = pb.Update(type=type, where=as_where(where), actions=actions)
    if create is not None:
        up.create_if_none.CopyFrom(pb.CreateIfNone(id=create[0], fields=_fields(create[1])))
    return pb.Op(update=up)


def delete(type: str, id: Optional[str] = None, *, where: Optional[WhereLike] = None) -> pb.Op:
    """``delete T "id"`` or ``delete T where C``."""
    if (id is None) == (where is None):
        raise ValueError("delete takes an id or a where clause")
    if id is not None:
        return pb.Op(delete=pb.Delete(type=type, id=id))
    return pb.Op(delete=pb.Delete(type=type, where=as_where(where)))  # type: ignore[arg-type]


def create_index(type: str, field_name: str) -> pb.Op:
    return pb.Op(create_index=pb.IndexSpec(type=type, field=field_name))


def drop_index(type: str, field_name: str) -> pb.Op:
    return pb.Op(drop_index=pb.IndexSpec(type=type, field=field_name))

