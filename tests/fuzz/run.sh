#!/bin/sh
# Runs a libFuzzer harness for a bounded time on a copy of a corpus, so that
# the checked-in corpus is never modified.
#   run.sh HARNESS CORPUS_DIR ARTIFACT_DIR [SECONDS [LIBFUZZER-OPTION...]]
# SECONDS is the harness's time (default 30); FUZZ_SECONDS, when set,
# overrides it for every harness. Options after it go to libFuzzer and win
# over the defaults here (e.g. -max_len=4096, -dict=FILE). A finding makes
# the harness exit non-zero and leaves its reproducer as
# ARTIFACT_DIR/HARNESS-crash-* (or -leak-*, -timeout-*); rerun it with:
# HARNESS ARTIFACT_DIR/HARNESS-crash-...
set -eu

harness=$1
corpus=$2
artifacts=$3
seconds=${4:-30}
[ $# -ge 4 ] && shift 4 || shift 3
seconds=${FUZZ_SECONDS:-$seconds}

# Undefined behaviour is a finding, not a log line.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS

work=$(mktemp -d "${TMPDIR:-/tmp}/wb-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cp "$corpus"/* "$work"/

"$harness" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts/$(basename "$harness")-" "$@" "$work"
