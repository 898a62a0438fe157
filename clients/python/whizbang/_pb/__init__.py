"""Message classes generated from proto/whizbang.proto by Debian's protoc.

Regenerate them after a change to the proto with clients/python/generate.sh
(tests/test_tables.py fails until you do).
"""
from . import whizbang_pb2

__all__ = ["whizbang_pb2"]
