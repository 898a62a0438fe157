#!/bin/sh
# Runs the reference explosion benchmark (docs/BENCHMARKS.md, "Explosion"):
# a store of 1 000 000 Order entities built through the ledger and
# proj_apply (1000 upserts per ledger entry, customer_id indexed, 100
# entities per customer_id), then 2000 indexed explosions in read
# transactions, 500 update-by-where applies (aborted), 5 rounds of a full
# scan alternating with a raw LMDB cursor pass over the same records, and a
# replay of the ledger into a scratch store, and prints the figures, the
# goals and a summary line.
#
# The store (a few hundred MB) goes under $TMPDIR, or /tmp, and is removed at
# the end. The build is optimized: the script configures the build directory
# when it is missing (the project's default, debugoptimized: -O2 -g), warns
# when an existing one is not optimized, and builds only whizbang-bench.
# Environment overrides: BUILD_DIR, ENTITIES, PER_ENTRY, MATCH, EXPLOSIONS,
# APPLIES, ROUNDS. Further arguments go to `whizbang-bench explode` as they
# are (for example --json, --index-after or --data-dir DIR).
set -eu

. "$(dirname "$0")/lib.sh"
opt=$(meson configure "$build" 2>/dev/null | awk '$1 == "optimization" { print $2; exit }')
case "$opt" in
0 | g | plain | "")
	echo "run-explode.sh: warning: $build is built with optimization '$opt';" \
		"the figures mean little (meson configure $build -Dbuildtype=debugoptimized)" >&2
	;;
esac
bench_build bench/whizbang-bench

exec "$bench" explode \
	--entities "${ENTITIES:-1000000}" \
	--per-entry "${PER_ENTRY:-1000}" \
	--match "${MATCH:-100}" \
	--explosions "${EXPLOSIONS:-2000}" \
	--applies "${APPLIES:-500}" \
	--rounds "${ROUNDS:-5}" \
	"$@"
