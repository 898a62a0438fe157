#!/bin/sh
# Runs the reference subscription benchmark (docs/BENCHMARKS.md,
# "Subscriptions"): a spawned whizbangd holding 1 000 000 events of 100
# bytes, a catch-up of all of them by 1 subscriber and by 16 at once, beside
# a raw LMDB cursor pass over the same events (3 alternating rounds,
# medians), then the live latency of 2000 single appends from their
# acknowledgement to the delivery of their event.
# Environment overrides: BUILD_DIR, EVENTS, SUBSCRIBERS, WINDOW, ROUNDS, LIVE.
# Further arguments go to `whizbang-bench subscribe` (for example --json).
set -eu

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

exec "$bench" subscribe \
	--events "${EVENTS:-1000000}" \
	--subscribers "${SUBSCRIBERS:-16}" \
	--window "${WINDOW:-4096}" \
	--rounds "${ROUNDS:-3}" \
	--live "${LIVE:-2000}" \
	"$@"
