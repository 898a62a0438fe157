"""Framing (docs/PROTOCOL.md §1): every frame is a 4-byte big-endian length,
then that many bytes of protobuf.

``FrameDecoder`` is pure: bytes in, complete payloads out, no I/O, so it can
be tested at every split offset. It checks a frame's length against its bound
as soon as the 4 header bytes are there, before it waits for (or keeps) the
body.
"""
from __future__ import annotations

import struct

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

# The largest frame this client accepts from a server unless told otherwise
# (libwhizbang's default too). The server keeps its answers within its own
# max_frame (4 MiB by default); a frame above this is a broken connection.
DEFAULT_MAX_INCOMING = 64 << 20


class FrameTooLarge(Exception):
    """A frame header announced more bytes than the decoder's bound."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame of {size} bytes, above this client's limit of {limit} bytes")
        self.size = size
        self.limit = limit


def encode(payload: bytes) -> bytes:
    """One frame: the header, then the payload."""
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Cuts a byte stream into frame payloads.

    ``feed(data)`` appends ``data`` and returns the payloads of every frame it
    completed, in order; the bytes of an incomplete frame stay buffered for the
    next call. It raises ``FrameTooLarge`` for a header above ``max_frame``
    (the decoder is then unusable: the stream has no next frame boundary).
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_INCOMING) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete (0 at a frame boundary)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > self.max_frame:
                raise FrameTooLarge(size, self.max_frame)
            if end - pos - HEADER_SIZE < size:
                break
            start = pos + HEADER_SIZE
            out.append(bytes(buf[start:start + size]))
            pos = start + size
        if pos:
            del buf[:pos]
        return out
