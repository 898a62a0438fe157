#!/bin/sh
# TLS with SCRAM-SHA-256 logins against plaintext (issue 12, docs/BENCHMARKS.md
# "TLS"): the reference append load, 16 clients with 16 appends each in
# flight, 100-byte events over 16 streams, once over plaintext with no login
# and once over TLS 1.3 with every connection logged in with SCRAM-SHA-256.
# Each run starts its own whizbangd of the same build (with --tls, one that
# serves a certificate made for the run under --tls=auto). Then what
# connecting costs: CONNECTS fresh connections one after another, each closed
# once made, in plaintext (TCP and Hello), with TLS (a full handshake: no
# resumption), and with TLS and a SCRAM login at 4096 PBKDF2 iterations (the
# least a server takes) and at SCRAM_ITERATIONS (the library's default,
# 100000): PBKDF2 runs on the client at every login.
#
# The configurations alternate for ROUNDS rounds (default 3), so that a disk
# or a neighbour that is slow for a few seconds hits one run, not one
# configuration; the table shows each figure's median over the rounds and the
# ratio of the medians TLS+SCRAM / plaintext (the issue's goal: at least
# 0.8). Every run is bounded by RUN_TIMEOUT seconds (default 600).
#
# It configures the build directory when it is missing, builds only what it
# runs (whizbang-bench and whizbangd) and installs jq when it is missing.
# Environment overrides: BUILD_DIR, CLIENTS, PIPELINE, EVENTS (default
# 750000, as the reference append benchmark), SIZE, STREAMS, ROUNDS, CONNECTS
# (default 200), SCRAM_ITERATIONS, RUN_TIMEOUT, and JSON_DIR (a directory
# that keeps each run's JSON object as <configuration>-<round>.json). Further arguments go to every
# `whizbang-bench append` as they are (for example --data-dir DIR).
set -eu

clients=${CLIENTS:-16}
pipeline=${PIPELINE:-16}
events=${EVENTS:-750000}
size=${SIZE:-100}
streams=${STREAMS:-16}
rounds=${ROUNDS:-3}
connects=${CONNECTS:-200}
iterations=${SCRAM_ITERATIONS:-100000}
limit=${RUN_TIMEOUT:-600}

if ! command -v jq >/dev/null 2>&1; then
	echo "run-tls.sh: installing jq, which compares the runs" >&2
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends jq >&2
fi
. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

out=${JSON_DIR:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# run NAME ROUND ARGS...: one run of whizbang-bench append; its JSON object
# is appended to $tmp/NAME.json.
run() {
	name=$1
	round=$2
	shift 2
	echo "run-tls.sh: round $round, $name: whizbang-bench append $*" >&2
	if ! timeout "$limit" "$bench" append --pipeline "$pipeline" --size "$size" \
		--streams "$streams" --no-baseline --whizbangd "$whizbangd" --json "$@" \
		>"$tmp/run.json"; then
		echo "run-tls.sh: round $round, $name: the run FAILED (see above)" >&2
		failed=1
		return
	fi
	cat "$tmp/run.json" >>"$tmp/$name.json"
	if [ -n "$out" ]; then
		mkdir -p "$out"
		cp "$tmp/run.json" "$out/$name-$round.json"
	fi
}

r=1
while [ "$r" -le "$rounds" ]; do
	run plain "$r" --clients "$clients" --events "$events" "$@"
	run tls "$r" --clients "$clients" --events "$events" --tls --scram \
		--scram-iterations "$iterations" "$@"
	# Connecting alone: one client, a token load, then the connections.
	run c_plain "$r" --clients 1 --events 16 --handshakes "$connects" "$@"
	run c_tls "$r" --clients 1 --events 16 --handshakes "$connects" --tls "$@"
	run c_scram4096 "$r" --clients 1 --events 16 --handshakes "$connects" --tls --scram \
		--scram-iterations 4096 "$@"
	run c_scram "$r" --clients 1 --events 16 --handshakes "$connects" --tls --scram \
		--scram-iterations "$iterations" "$@"
	r=$((r + 1))
done
for f in plain tls c_plain c_tls c_scram4096 c_scram; do
	[ -s "$tmp/$f.json" ] || { echo "run-tls.sh: no run of $f succeeded" >&2; exit 1; }
done

# The median over the rounds: of an odd number of rounds the middle one, of
# an even number the upper middle one.
jq -r -n --slurpfile a "$tmp/plain.json" --slurpfile b "$tmp/tls.json" \
	--slurpfile cp "$tmp/c_plain.json" --slurpfile ct "$tmp/c_tls.json" \
	--slurpfile c4 "$tmp/c_scram4096.json" --slurpfile cs "$tmp/c_scram.json" \
	--arg rounds "$rounds" --arg it "$iterations" --arg n "$connects" '
def med(f): [.[] | f] | if length == 0 or .[0] == null then null else sort | .[length / 2 | floor] end;
def n0: if . == null then "-" else round | tostring end;
def d1: if . == null then "-" else (. * 10 | round) / 10 | tostring end;
def d2: if . == null then "-" else (. * 100 | round) / 100 | tostring end;
def d3: if . == null then "-" else (. * 1000 | round) / 1000 | tostring end;
def ms: if . == null then "-" else (. / 10 | round) / 100 | tostring end;
def row(title; f): [title, ($a | f), ($b | f)] | join("\t");
def conn(title; x): [title, (x | med(.connects.per_s) | d1), (x | med(.connects.mean_ms) | d3), (x | med(.connects.client_cpu_ms_each) | d3)] | join("\t");
"medians of \($rounds) round(s) of the append load (\($a[0].params.clients) clients x \($a[0].params.pipeline) in flight, \($a[0].params.events) events of \($a[0].params.size) B)",
"\tplaintext\tTLS + SCRAM",
row("transport"; if .[0].tls == null then "plaintext" else "\(.[0].tls.version) \(.[0].tls.cipher)" end),
row("login"; if .[0].params.scram then "SCRAM-SHA-256 (\(.[0].params.scram_iterations))" else "none" end),
row("append events/s"; med(.load.events_per_s) | n0),
row("append events/s, each round"; [.[] | .load.events_per_s | n0] | join(" ")),
row("latency p50 / p99 ms"; "\(med(.load.latency_us.p50) | ms) / \(med(.load.latency_us.p99) | ms)"),
row("batch: requests, ms"; "\(med(.server_stats.mean_requests_per_batch) | d1), \(med(.server_stats.mean_batch_ms) | d2)"),
row("load generator cpu us/append"; med(.cpu_s.clients_us_per_append) | d2),
row("whizbangd cpu s, start to exit"; med(.cpu_s.whizbangd) | d2),
row("whizbangd cpu us/append"; med(.cpu_s.whizbangd / .load.appends * 1e6) | d1),
row("ok"; all(.[]; .ok) | tostring),
"",
"TLS + SCRAM / plaintext: \(($b | med(.load.events_per_s)) / ($a | med(.load.events_per_s)) | d3) (goal: at least 0.8)",
"",
"connecting: \($n) fresh connections one after another, each closed once made",
"\tper second\tmean ms\tclient cpu ms",
conn("plaintext (TCP, Hello)"; $cp),
conn("TLS (full handshake, Hello)"; $ct),
conn("TLS + SCRAM, 4096 iterations"; $c4),
conn("TLS + SCRAM, \($it) iterations"; $cs),
"ok: \([$cp, $ct, $c4, $cs] | all(.[]; all(.[]; .ok)))"
' | awk -F '\t' '{ if (NF > 3) printf "%-32s %-14s %-14s %-14s\n", $1, $2, $3, $4; else if (NF > 1) printf "%-32s %-32s %-32s\n", $1, $2, $3; else print }'

exit $failed
