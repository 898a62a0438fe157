#!/bin/sh
# Runs the reference lease benchmark (docs/BENCHMARKS.md, "Leases"): 16
# clients with 16 lease -> commit cycles each in flight, with no slow leases
# (F=0), with 1 % of the leases held 100 ms before their commit (F=0.01
# M=100), and the same with the held leases beside the 16 cycles in flight
# rather than in their place (--slow-beside: the fast cycles then see the
# concurrency of F=0). Each run starts its own whizbangd and ends with the
# append load against that server, whose events/s is printed beside the
# cycles/s.
#
# The three configurations alternate for ROUNDS rounds (default 3), so that
# a disk or a neighbour that is slow for a few seconds hits one run, not one
# configuration; the table shows each figure's median over the rounds, and
# the fast-commit p99 of every round.
#
# It configures the build directory when it is missing and builds only what it
# runs (whizbang-bench and whizbangd). Needs jq. Environment overrides:
# BUILD_DIR, CLIENTS, PIPELINE, CYCLES, APPEND_EVENTS, SLOW_FRACTION, SLOW_MS,
# ROUNDS, and JSON_DIR (a directory that keeps each run's JSON object as
# <configuration>-<round>.json). Further arguments go to every
# `whizbang-bench lease` as they are (for example --data-dir DIR).
set -eu

clients=${CLIENTS:-16}
pipeline=${PIPELINE:-16}
cycles=${CYCLES:-300000}
append=${APPEND_EVENTS:-100000}
fraction=${SLOW_FRACTION:-0.01}
slow_ms=${SLOW_MS:-100}
rounds=${ROUNDS:-3}

if ! command -v jq >/dev/null 2>&1; then
	echo "run-lease.sh: jq is needed to compare the runs (apt-get install jq)" >&2
	exit 2
fi
. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

out=${JSON_DIR:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# run NAME ROUND ARGS...: one run; its JSON object is appended to
# $tmp/NAME.json.
run() {
	name=$1
	round=$2
	shift 2
	echo "run-lease.sh: round $round, $name: whizbang-bench lease --clients $clients" \
		"--pipeline $pipeline --cycles $cycles --append-events $append $*" >&2
	if ! "$bench" lease --clients "$clients" --pipeline "$pipeline" \
		--cycles "$cycles" --append-events "$append" \
		--whizbangd "$whizbangd" --json "$@" >"$tmp/run.json"; then
		echo "run-lease.sh: round $round, $name: the run FAILED (see above)" >&2
		failed=1
	fi
	cat "$tmp/run.json" >>"$tmp/$name.json"
	if [ -n "$out" ]; then
		mkdir -p "$out"
		cp "$tmp/run.json" "$out/$name-$round.json"
	fi
}

r=1
while [ "$r" -le "$rounds" ]; do
	run f0 "$r" --slow-fraction 0 "$@"
	run slow "$r" --slow-fraction "$fraction" --slow-ms "$slow_ms" "$@"
	run beside "$r" --slow-fraction "$fraction" --slow-ms "$slow_ms" --slow-beside "$@"
	r=$((r + 1))
done

# One line per figure, one column per configuration: the median over the
# rounds (of an odd number of rounds, the middle one; of an even number, the
# upper middle one).
jq -r -n --slurpfile a "$tmp/f0.json" --slurpfile b "$tmp/slow.json" \
	--slurpfile c "$tmp/beside.json" --arg f "$fraction" --arg m "$slow_ms" \
	--arg rounds "$rounds" '
def med(f): [.[] | f] | if length == 0 or .[0] == null then null else sort | .[length / 2 | floor] end;
def n0: if . == null then "-" else round | tostring end;
def ms: if . == null then "-" else (. / 10 | round) / 100 | tostring end;
def d1: if . == null then "-" else (. * 10 | round) / 10 | tostring end;
def d2: if . == null then "-" else (. * 100 | round) / 100 | tostring end;
def lat(k): if med(.cycles[k].n) == 0 then "-" else "\(med(.cycles[k].p50) | ms) / \(med(.cycles[k].p99) | ms)" end;
def row(title; f): [title, ($a | f), ($b | f), ($c | f)] | join("\t");
"medians of \($rounds) round(s); latencies in ms",
"\t" + (["F=0", "F=\($f) M=\($m)", "F=\($f) M=\($m) beside"] | join("\t")),
row("cycles/s"; med(.cycles.cycles_per_s) | n0),
row("append events/s (same server)"; med(.append.events_per_s) | n0),
row("fast commit p50 / p99"; lat("commit_fast_us")),
row("fast commit p99.9 / max"; "\(med(.cycles.commit_fast_us.p999) | ms) / \(med(.cycles.commit_fast_us.max) | ms)"),
row("fast commit p99, each round"; [.[] | .cycles.commit_fast_us.p99 | ms] | join(" ")),
row("fast commit p50, in batches"; med(.cycles.commit_fast_us.p50 / 1000 / .server_stats.mean_batch_ms) | d1),
row("slow commit p50 / p99"; lat("commit_slow_us")),
row("lease p50 / p99"; lat("lease_us")),
row("slow hold p50 / max"; lat("slow_hold_us") as $x | if $x == "-" then $x else "\(med(.cycles.slow_hold_us.p50) | ms) / \(med(.cycles.slow_hold_us.max) | ms)" end),
row("slots holding a slow lease"; med(.watermark.holding_mean) | d1),
row("watermark lag mean / max"; "\(med(.watermark.lag_mean) | n0) / \(med(.watermark.lag_max))"),
row("watermark lag mean, ms"; med(.watermark.lag_mean_ms) | d1),
row("watermark held by slow, %"; med(.watermark.held_by_slow_fraction) * 100 | round | tostring),
row("entries waiting mean / max"; "\(med(.watermark.entries_waiting_mean) | n0) / \(med(.watermark.entries_waiting_max))"),
row("apply wait mean / max"; "\(med(.server_stats.apply_wait_ms_mean) | d2) / \(med(.server_stats.apply_wait_ms_max))"),
row("batch: requests, ms"; "\(med(.server_stats.mean_requests_per_batch) | d1), \(med(.server_stats.mean_batch_ms) | d2)"),
row("ok"; all(.[]; .ok) | tostring),
"",
"fast-commit p99 with slow leases / without: \(($b | med(.cycles.commit_fast_us.p99)) / ($a | med(.cycles.commit_fast_us.p99)) | d2) (held in place), \(($c | med(.cycles.commit_fast_us.p99)) / ($a | med(.cycles.commit_fast_us.p99)) | d2) (held beside)"
' | awk -F '\t' '{ if (NF > 1) printf "%-30s %-18s %-18s %-18s\n", $1, $2, $3, $4; else print }'

exit $failed
