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

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

exec "$bench" append \
	--clients "${CLIENTS:-16}" \
	--pipeline "${PIPELINE:-16}" \
	--events "${EVENTS:-750000}" \
	--size "${SIZE:-100}" \
	--streams "${STREAMS:-16}" \
	--rounds "${ROUNDS:-1}" \
	--whizbangd "$whizbangd" \
	"$@"
