#!/bin/sh
# Generates whizbang/_pb (or OUT_DIR) from proto/whizbang.proto with Debian's
# protoc: the message classes and their type stub. Run it after a change to
# the proto; tests/test_tables.py runs it into a temporary directory and
# fails when the checked-in files differ.
#
# One fix-up of the stub: ClientInfo has a field named `self` (19), and
# protoc 3.21 writes it as a keyword parameter of __init__ beside the method's
# own `self`, which type checkers refuse as a syntax error (the whole stub
# with it). The parameter goes; the attribute stays. Nothing builds a
# ClientInfo on the client side.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/whizbang/_pb}
protoc -I "$here/../../proto" --python_out="$out" --pyi_out="$out" whizbang.proto
sed -i 's/, self: bool = \.\.\.//' "$out/whizbang_pb2.pyi"
