"""Message classes generated from proto/whizbang.proto by Debian's protoc.

Regenerate after a change to the proto (tests/test_generated.py fails until
you do):

    protoc -I proto --python_out=clients/python/whizbang/_pb \
        --pyi_out=clients/python/whizbang/_pb whizbang.proto
"""
from . import whizbang_pb2

__all__ = ["whizbang_pb2"]
