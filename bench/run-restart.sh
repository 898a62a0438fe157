#!/bin/sh
# Restart time after a SIGKILL with a large log since the last checkpoint
# (issue 11): starts whizbangd in log mode with checkpoints pushed out of the
# way (by log bytes, data-file growth and time: the data file then keeps every
# page rewritten since start, several times the log with small events, so
# check the free disk first), appends until LOG_BYTES of log records are written (whizbang-bench
# append, 16 clients x 16 in flight, SIZE-byte events over 16 streams),
# checks the log's size in the server's metrics, kills the server with
# SIGKILL and times the next start until it listens (the checkpoint restored,
# the whole log replayed). Prints the log bytes and records, and the restart
# time with the server's own log_replayed line.
#
# Environment: LOG_BYTES (default 1073741824), SIZE (100), BUILD_DIR, DIR (a
# directory on the disk to measure; default: a new one under the build
# directory). Needs curl. Runs on loopback only and removes its data at the end.
set -eu

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

log_bytes=${LOG_BYTES:-1073741824}
size=${SIZE:-100}
root=$(mktemp -d "${DIR:-$build}/restart.XXXXXX")
pid=""
cleanup() {
	[ -f "$root/server.log" ] && cp "$root/server.log" "${TMPDIR:-/tmp}/run-restart-server.log"
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	rm -rf "$root"
}
trap cleanup EXIT INT TERM

start() { # starts whizbangd on $root/d; sets pid, port and mport
	rm -f "$root/port" "$root/port.metrics"
	"$whizbangd" --listen 127.0.0.1:0 --port-file "$root/port" --data-dir "$root/d" \
		--metrics-listen 127.0.0.1:0 --map-size 4G --checkpoint-bytes 64G --checkpoint-growth 1T \
		--checkpoint-interval-ms 86400000 --wal-segment-size 1G --log-level info --anonymous-role admin \
		2>>"$root/server.log" &
	pid=$!
	i=0
	while [ ! -s "$root/port" ] || [ ! -s "$root/port.metrics" ]; do
		kill -0 "$pid" 2>/dev/null || { cat "$root/server.log" >&2; exit 1; }
		i=$((i + 1))
		[ $i -lt 12000 ] || { echo "whizbangd did not start" >&2; exit 1; }
		sleep 0.005
	done
	port=$(cat "$root/port")
	mport=$(cat "$root/port.metrics")
}

metric() { # NAME: the value of a metric
	curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

start
# A record of one event is about SIZE + 100 bytes; write in rounds until the
# log holds LOG_BYTES.
per_round=$((log_bytes / (size + 100) / 4 + 1))
written=0
while [ "$written" -lt "$log_bytes" ]; do
	"$bench" append --server "127.0.0.1:$port" --clients 16 --pipeline 16 \
		--events "$per_round" --size "$size" --streams 16 --no-baseline >/dev/null
	written=$(metric whizbang_log_bytes_total)
	written=${written%.*}
done
records=$(metric whizbang_log_applied_sequence)
checkpoints=$(metric whizbang_checkpoints_total)
wal_disk=$(du -sb "$root/d/wal" | cut -f1)
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
pid=""

date -u +%Y-%m-%dT%H:%M:%S.%NZ >"$root/killed_at"
t0=$(date +%s%N)
start
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
pid=""

echo "log since the last checkpoint: $written bytes of records ($records records of ${size}-byte events; checkpoints taken during the load: $checkpoints; $wal_disk bytes of segments on disk)"
echo "restart after SIGKILL until listening: $ms ms (killed at $(cut -c1-23 "$root/killed_at"))"
grep -E "event=log_replayed|event=log_tail_cut|event=ledger_recovered|event=listening" "$root/server.log" | tail -4
