#!/bin/sh
# No client can hurt another (issue 13, docs/BENCHMARKS.md "Noisy neighbours"):
# the reference append load, 16 clients with 16 appends each in flight,
# 100-byte events over 16 streams, measured alone ("quiet"), then beside each
# hostile load in turn, then alone again, all on one whizbangd that the run
# spawns. It prints per phase the steady load's events/s, its ratio to quiet,
# p50/p99/p99.9/max latency, PASS or FAIL against the goal (at least 0.8 x
# quiet and p99.9 at most 50 ms), the server's memory and log growth, what
# each hostile client got (its refusals by code) and what a probe client got
# beside it; last, "noisy-neighbour: N of M hostile loads within the goal".
#
# It exits non-zero only when the run fails (a server that does not start or
# dies, a set-up that fails), not on a FAIL row: it is a benchmark.
#
# It configures the build directory when it is missing and builds only what it
# runs (whizbang-bench and whizbangd). Environment overrides: BUILD_DIR,
# SECONDS_PER_PHASE (default 5), LOADS (a comma-separated list; default every
# hostile load: explode,where,explain,idle,frames,subscribers,leases,groups,
# garbage; also the controls none and sigstop), ENTITIES (Order entities the
# explosion rewrites, default 200k), SCAN_ENTITIES (unindexed entities the
# large clause scans, default 1000), TERMS (the clause's terms, default
# 62464), CLIENTS, PIPELINE, SIZE, STREAMS. Further arguments go to
# `whizbang-bench noisy` as they are (for example --data-dir DIR, or
# --server-arg --max-connections=64).
set -eu

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

exec "$bench" noisy \
	--seconds "${SECONDS_PER_PHASE:-5}" \
	--loads "${LOADS:-explode,where,explain,idle,frames,subscribers,leases,groups,garbage}" \
	--entities "${ENTITIES:-200k}" \
	--scan-entities "${SCAN_ENTITIES:-1000}" \
	--terms "${TERMS:-62464}" \
	--clients "${CLIENTS:-16}" \
	--pipeline "${PIPELINE:-16}" \
	--size "${SIZE:-100}" \
	--streams "${STREAMS:-16}" \
	--whizbangd "$whizbangd" \
	"$@"
