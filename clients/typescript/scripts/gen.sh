#!/bin/sh
# Generates the message classes from proto/whizbang.proto into OUT_DIR
# (src/gen by `npm run gen`) with Debian's protoc and the pinned
# @bufbuild/protoc-gen-es. The output is checked in; test/gen.test.mjs runs
# this into a temporary directory and fails when the two differ.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: gen.sh OUT_DIR}
mkdir -p "$out"
exec protoc -I "$here/../../proto" \
	--plugin=protoc-gen-es="$here/node_modules/.bin/protoc-gen-es" \
	--es_out="$out" --es_opt=target=ts \
	whizbang.proto
