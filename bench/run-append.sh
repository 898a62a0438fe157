#!/bin/sh
# Runs the reference append benchmark (docs/BENCHMARKS.md): 16 clients with 16
# appends each in flight, 100-byte events, 16 shared streams, fsync on, then
# the raw-LMDB baseline with the server's mean batch size, and prints the
# figures and the ratio server/baseline.
#
# It configures the build directory when it is missing and builds only what it
# runs (whizbang-bench and whizbangd). Environment overrides: BUILD_DIR,
# CLIENTS, PIPELINE, EVENTS, SIZE, STREAMS, ROUNDS. Further arguments go to
# `whizbang-bench append` as they are (for example --json or --data-dir DIR).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
build=${BUILD_DIR:-$src/build}

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$src" >&2
fi
ninja -C "$build" bench/whizbang-bench server/whizbangd >&2

exec "$build/bench/whizbang-bench" append \
	--clients "${CLIENTS:-16}" \
	--pipeline "${PIPELINE:-16}" \
	--events "${EVENTS:-750000}" \
	--size "${SIZE:-100}" \
	--streams "${STREAMS:-16}" \
	--rounds "${ROUNDS:-1}" \
	--whizbangd "$build/server/whizbangd" \
	"$@"
