#!/bin/sh
# No client can hurt another (issue 13, docs/BENCHMARKS.md "Noisy neighbours"):
# the reference append load, 16 clients with 16 appends each in flight,
# 100-byte events over 16 streams, measured beside each hostile load in turn,
# all on one whizbangd that the run spawns (with --map-size=16G, so that the
# map does not grow during a measurement; in durability=log that much disk is
# reserved). Each hostile load gets ROUNDS rounds of a quiet phase (the
# steady load alone) and then the hostile phase, whose ratio is against that
# quiet phase: on a small shared machine the load alone drifts by tens of
# percent between phases, and a ratio against one quiet phase at the start
# was noise. It prints every round's figures (events/s quiet and hostile,
# their ratio, p99.9), then per load the median ratio (and its range), the
# median and the highest p99.9, p50/p99 medians, PASS or FAIL on the medians
# (at least 0.8 x quiet and p99.9 at most 50 ms), the server's memory and log
# growth, what the hostile client got over its rounds and what a probe client
# got beside it; last, "noisy-neighbour: N of M hostile loads within the
# goal". A "quiet again" phase at the end shows where the machine ended up.
#
# It exits non-zero only when the run fails (a server that does not start or
# dies, a set-up that fails), not on a FAIL row: it is a benchmark.
#
# It configures the build directory when it is missing and builds only what it
# runs (whizbang-bench and whizbangd). Environment overrides: BUILD_DIR,
# SECONDS_PER_PHASE (default 5), ROUNDS (default 3; the default run is then
# 9 loads x 3 rounds x 2 phases x 5 s, about eight minutes with the set-up
# and the pauses between phases), LOADS (a comma-separated list; default every
# hostile load: explode,where,explain,idle,frames,subscribers,leases,groups,
# garbage; also the controls none and sigstop), ENTITIES (Order entities the
# explosion rewrites, default 200k), SCAN_ENTITIES (unindexed entities the
# large clause scans, default 1000), TERMS (the clause's terms, default
# 62464), CLIENTS, PIPELINE, SIZE, STREAMS. Further arguments go to
# `whizbang-bench noisy` as they are (for example --data-dir DIR, or
# --server-arg --max-connections=64; --server-arg --map-size=SIZE replaces
# the 16G map).
set -eu

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

exec "$bench" noisy \
	--seconds "${SECONDS_PER_PHASE:-5}" \
	--rounds "${ROUNDS:-3}" \
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
