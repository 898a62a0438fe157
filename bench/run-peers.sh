#!/bin/sh
# Compares whizbangd with Redis 7 Streams (XADD) as a durable append store, on
# one machine and one disk: every acknowledgement durable on both sides
# (whizbangd as configured; Redis with appendonly yes, appendfsync always and
# no RDB saves), 100-byte events over 16 streams, three loads:
#
#   16 clients x 16 in flight, 16 clients x 1, 1 client x 1.
#
# whizbangd is loaded with `whizbang-bench append --server` and Redis with
# `redis-benchmark ... XADD stream:__rand_int__ * f <100 bytes>` (-r 16: the
# keys stream:000000000000 .. stream:000000000015). Each run gets a fresh
# server with a fresh data directory; the two servers alternate run by run
# (whizbangd, Redis, whizbangd, ...), so a disk or a neighbour that is slow for
# a while hits both; the table shows the median of each figure over the
# rounds. Figures per load: events/s, p50 and p99 latency, the ratios
# whizbangd/Redis, the load generators' CPU per request (whizbang-bench's own
# figure over the load; redis-benchmark's user + system time from
# /usr/bin/time) and each server's CPU per event (utime + stime from
# /proc/PID/stat, before and after the load).
#
# redis-benchmark's -P 16 sends 16 commands and waits for all 16 answers
# before it sends more; whizbang-bench keeps 16 in flight and sends a new
# append as each answer arrives. At 16 x 1 and 1 x 1 the two loads are the
# same.
#
# Usage: bench/run-peers.sh [--rounds N] [--dir DIR] [--lease] [--keep]
#   --rounds N  rounds of the three loads (default 3, or $ROUNDS)
#   --dir DIR   where the servers' data go, in a fresh peers.XXXXXX directory
#               removed at the end (default $PEERS_DIR, else the build
#               directory); it must be on the disk you mean to measure, not a
#               tmpfs
#   --lease     also a lease round per round: `whizbang-bench lease` at
#               16 x 16 against a fresh whizbangd, its cycles/s compared with
#               whizbangd's 16 x 16 events/s
#   --keep      keep the data directory and every run's raw output
#
# Environment: WB_SERVER_ARGS (extra whizbangd flags, after the script's own,
# which they override: --durability=sync ...), N_16X16, N_16X1, N_1X1 (events
# per run of each load), LEASE_CYCLES, REDIS_PORT (the first port tried,
# default 16379), RUN_TIMEOUT (seconds one load run may take, default 300),
# BUILD_DIR. Needs redis-server, redis-tools (redis-benchmark, redis-cli), jq
# and GNU time: installed from Debian with apt-get when missing (as root, or
# through sudo). It builds whizbangd and whizbang-bench when needed, talks
# only to 127.0.0.1, and stops every server it started when it ends, however
# it ends.
set -eu

rounds=${ROUNDS:-3}
dir=${PEERS_DIR:-}
lease=0
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--lease) lease=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-peers.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $rounds in
'' | *[!0-9]* | 0) echo "run-peers.sh: --rounds needs a positive number" >&2; exit 2 ;;
esac

n_many=${N_16X16:-300000}
n_16=${N_16X1:-60000}
n_1=${N_1X1:-10000}
lease_cycles=${LEASE_CYCLES:-200000}
run_timeout=${RUN_TIMEOUT:-300}
size=100
streams=16

say() { echo "run-peers.sh: $*" >&2; }

# ---------------------------------------------------------------- what it needs

need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
{ command -v redis-benchmark >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } ||
	need="$need redis-tools"
command -v jq >/dev/null 2>&1 || need="$need jq"
[ -x /usr/bin/time ] || need="$need time"
if [ -n "$need" ]; then
	if [ "$(id -u)" = 0 ]; then
		sudo=""
	elif command -v sudo >/dev/null 2>&1; then
		sudo="sudo"
	else
		say "needs$need: install them (apt-get install$need) or run as root"
		exit 2
	fi
	say "installing$need from Debian"
	$sudo apt-get install -y --no-install-recommends $need >&2 ||
		{ $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends $need >&2; }
fi
redis_version=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
case $redis_version in
7.*) ;;
*) say "warning: redis-server $redis_version is not Redis 7" ;;
esac

. "$(dirname "$0")/lib.sh"
bench_build bench/whizbang-bench server/whizbangd

# ---------------------------------------------------------------- the data directory

[ -n "$dir" ] || dir=$build
mkdir -p "$dir"
if [ "$(stat -f -c %T "$dir")" = tmpfs ]; then
	say "$dir is on a tmpfs, where fsync costs nothing: give --dir on a disk"
	exit 2
fi
root=$(mktemp -d "$dir/peers.XXXXXX")
wb_pid=""
redis_pid=""

stop_pid() { # PID: SIGTERM, up to 20 s, then SIGKILL; the exit status
	kill -TERM "$1" 2>/dev/null || true
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 200 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$1" 2>/dev/null; then
		say "pid $1 did not stop within 20 s of SIGTERM: killed"
		kill -KILL "$1" 2>/dev/null || true
	fi
	st=0
	wait "$1" 2>/dev/null || st=$?
	return $st
}

cleanup() {
	[ -z "$wb_pid" ] || stop_pid "$wb_pid" || true
	[ -z "$redis_pid" ] || stop_pid "$redis_pid" || true
	wb_pid=""
	redis_pid=""
	if [ "$keep" = 1 ]; then
		say "kept $root"
	else
		rm -rf "$root"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # PID: utime + stime of the process and its threads, in ticks
	# The command name (field 2) may hold spaces: count from the ")".
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# ---------------------------------------------------------------- the servers

wb_start() { # the data under $root/wb; sets wb_pid and wb_addr
	rm -rf "$root/wb" "$root/wb.port"
	mkdir -p "$root/wb"
	# shellcheck disable=SC2086 # WB_SERVER_ARGS is a list of flags
	"$whizbangd" --listen 127.0.0.1:0 --port-file "$root/wb.port" \
		--data-dir "$root/wb" --metrics-listen off --log-level warn \
		--map-size 2G --anonymous-role admin ${WB_SERVER_ARGS:-} >>"$root/whizbangd.log" 2>&1 &
	wb_pid=$!
	i=0
	while [ ! -s "$root/wb.port" ]; do
		if ! kill -0 "$wb_pid" 2>/dev/null || [ $i -ge 100 ]; then
			say "whizbangd did not start (see $root/whizbangd.log):"
			tail -5 "$root/whizbangd.log" >&2
			exit 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	wb_addr=127.0.0.1:$(cat "$root/wb.port")
}

wb_stop() {
	st=0
	stop_pid "$wb_pid" || st=$?
	wb_pid=""
	[ $st = 0 ] || say "whizbangd exited with status $st (see $root/whizbangd.log)"
	rm -rf "$root/wb"
}

redis_port=${REDIS_PORT:-16379}
redis_start() { # the data under $root/redis; sets redis_pid and redis_port
	tries=0
	while :; do
		# A port something already answers on is not ours to use.
		while redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; do
			redis_port=$((redis_port + 1))
		done
		rm -rf "$root/redis"
		mkdir -p "$root/redis"
		redis-server --bind 127.0.0.1 --port "$redis_port" --protected-mode yes \
			--dir "$root/redis" --save '' --appendonly yes --appendfsync always \
			--auto-aof-rewrite-percentage 0 --daemonize no \
			--logfile "$root/redis.log" &
		redis_pid=$!
		i=0
		while [ $i -lt 100 ] && kill -0 "$redis_pid" 2>/dev/null; do
			if [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = PONG ]; then
				return 0
			fi
			sleep 0.1
			i=$((i + 1))
		done
		stop_pid "$redis_pid" || true
		redis_pid=""
		tries=$((tries + 1))
		if [ $tries -ge 5 ]; then
			say "redis-server did not start (see $root/redis.log):"
			tail -5 "$root/redis.log" >&2
			exit 1
		fi
		redis_port=$((redis_port + 1))
	done
}

redis_stop() {
	st=0
	stop_pid "$redis_pid" || st=$?
	redis_pid=""
	[ $st = 0 ] || say "redis-server exited with status $st (see $root/redis.log)"
	rm -rf "$root/redis"
}

# ---------------------------------------------------------------- one run each

# Every run adds a line to $root/results.tsv:
#   load round server events/s p50_ms p99_ms client_us/req server_us/event
results=$root/results.tsv
: >"$results"

run_wb() { # LOAD CLIENTS PIPELINE EVENTS ROUND
	wb_start
	t0=$(cpu_ticks "$wb_pid")
	out=$root/wb-$1-$5.json
	if ! timeout --foreground -k 5 "$run_timeout" "$bench" append --server "$wb_addr" \
		--clients "$2" --pipeline "$3" --events "$4" --size $size --streams $streams \
		--no-baseline --json >"$out" 2>"$root/bench.err"; then
		say "round $5, $1, whizbangd: whizbang-bench append FAILED:"
		cat "$root/bench.err" >&2
		failed=1
		wb_stop
		return 0
	fi
	t1=$(cpu_ticks "$wb_pid")
	wb_stop
	jq -r --arg load "$1" --arg round "$5" --argjson ticks $((t1 - t0)) --argjson hz "$clk_tck" '
		[$load, $round, "whizbangd", .load.events_per_s, .load.latency_us.p50 / 1000,
		 .load.latency_us.p99 / 1000, .cpu_s.clients_us_per_append,
		 ($ticks / $hz * 1e6 / .load.events)] | @tsv' "$out" >>"$results" ||
		{ say "round $5, $1: no figures from whizbang-bench"; failed=1; }
	say "round $5, $1, whizbangd: $(tail -1 "$results" | cut -f4 | cut -d. -f1) events/s"
}

run_redis() { # LOAD CLIENTS PIPELINE EVENTS ROUND
	redis_start
	value=$(printf "%${size}s" "" | tr ' ' x)
	t0=$(cpu_ticks "$redis_pid")
	out=$root/redis-$1-$5.csv
	if ! /usr/bin/time -f "%U %S" -o "$root/time.out" timeout --foreground -k 5 "$run_timeout" \
		redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$2" -P "$3" -n "$4" \
		-r $streams --csv XADD 'stream:__rand_int__' '*' f "$value" \
		>"$out" 2>"$root/rb.err"; then
		say "round $5, $1, redis: redis-benchmark FAILED:"
		cat "$root/rb.err" >&2
		failed=1
		redis_stop
		return 0
	fi
	t1=$(cpu_ticks "$redis_pid")
	# Every XADD must have made one entry in one of the 16 streams.
	entries=0
	s=0
	while [ $s -lt $streams ]; do
		n=$(redis-cli -h 127.0.0.1 -p "$redis_port" xlen "$(printf 'stream:%012d' $s)")
		entries=$((entries + n))
		s=$((s + 1))
	done
	redis_stop
	if [ "$entries" != "$4" ]; then
		say "round $5, $1, redis: $entries entries stored for $4 XADDs"
		failed=1
	fi
	# The CSV's data line: "test","rps","avg","min","p50","p95","p99","max" (ms).
	awk -F'","' -v load="$1" -v round="$5" -v n="$4" -v ticks=$((t1 - t0)) \
		-v hz="$clk_tck" -v cpu="$(cat "$root/time.out")" '
		NR == 2 {
			gsub(/"/, "", $NF)
			split(cpu, c, " ")
			printf "%s\t%s\tredis\t%s\t%s\t%s\t%s\t%s\n", load, round, $(NF - 6),
			       $(NF - 3), $(NF - 1), (c[1] + c[2]) * 1e6 / n, ticks / hz * 1e6 / n
		}' "$out" >>"$results"
	say "round $5, $1, redis: $(tail -1 "$results" | cut -f4 | cut -d. -f1) events/s"
}

run_lease() { # ROUND
	wb_start
	out=$root/lease-$1.json
	if ! timeout --foreground -k 5 "$run_timeout" "$bench" lease --server "$wb_addr" --clients 16 \
		--pipeline 16 --cycles "$lease_cycles" --no-append --json \
		>"$out" 2>"$root/bench.err"; then
		say "round $1, lease: whizbang-bench lease FAILED:"
		cat "$root/bench.err" >&2
		failed=1
		wb_stop
		return 0
	fi
	wb_stop
	jq -r --arg round "$1" '["lease", $round, "whizbangd", .cycles.cycles_per_s] | @tsv' \
		"$out" >>"$results" || { say "round $1: no figures from whizbang-bench lease"; failed=1; }
	say "round $1, lease: $(tail -1 "$results" | cut -f4 | cut -d. -f1) cycles/s"
}

failed=0
say "data under $root; whizbangd ${WB_SERVER_ARGS:-(no extra flags)}; redis-server $redis_version"
r=1
while [ "$r" -le "$rounds" ]; do
	for load in 16x16 16x1 1x1; do
		case $load in
		16x16) c=16 p=16 n=$n_many ;;
		16x1) c=16 p=1 n=$n_16 ;;
		1x1) c=1 p=1 n=$n_1 ;;
		esac
		run_wb $load $c $p "$n" "$r"
		run_redis $load $c $p "$n" "$r"
	done
	[ "$lease" = 0 ] || run_lease "$r"
	r=$((r + 1))
done

# ---------------------------------------------------------------- the table

# The median of each figure over the rounds (of an even number, the upper
# middle one), then one line per load.
awk -F '\t' -v rounds="$rounds" -v wbargs="${WB_SERVER_ARGS:-}" -v rv="$redis_version" '
function med(key,   n, i, j, t, a) {
	n = cnt[key]
	for (i = 1; i <= n; i++)
		a[i] = val[key, i] + 0
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	return n == 0 ? "" : a[int(n / 2) + 1]
}
{
	for (f = 4; f <= NF; f++) {
		key = $1 SUBSEP $3 SUBSEP f
		val[key, ++cnt[key]] = $f
	}
}
END {
	printf "whizbangd%s vs Redis %s Streams (appendfsync always), 100-byte events over 16 streams,\n",
	       (wbargs == "" ? "" : " " wbargs), rv
	printf "medians of %d round(s); latencies in ms, CPU in us of user + system time\n\n", rounds
	h = "%-6s | %9s %7s %7s | %9s %7s %7s | %6s %6s | %9s %9s | %9s %9s\n"
	printf "%-6s | %-25s | %-25s | %-13s | %-19s | %s\n", "", "whizbangd",
	       "Redis XADD", "wb / Redis", "load gen us/request", "server us/event"
	printf h, "load", "ev/s", "p50", "p99", "ev/s", "p50", "p99", "ev/s", "p99", "wb-bench",
	       "redis-b", "whizbangd", "redis"
	split("16x16 16x1 1x1", loads, " ")
	for (i = 1; i <= 3; i++) {
		l = loads[i]
		we = med(l SUBSEP "whizbangd" SUBSEP 4); re = med(l SUBSEP "redis" SUBSEP 4)
		if (we == "" && re == "")
			continue
		w50 = med(l SUBSEP "whizbangd" SUBSEP 5); w99 = med(l SUBSEP "whizbangd" SUBSEP 6)
		r50 = med(l SUBSEP "redis" SUBSEP 5); r99 = med(l SUBSEP "redis" SUBSEP 6)
		printf "%-6s | %9.0f %7.3f %7.3f | %9.0f %7.3f %7.3f | %6.2f %6.2f | %9.2f %9.2f | %9.1f %9.1f\n",
		       l, we, w50, w99, re, r50, r99, (re > 0 ? we / re : 0), (r99 > 0 ? w99 / r99 : 0),
		       med(l SUBSEP "whizbangd" SUBSEP 7), med(l SUBSEP "redis" SUBSEP 7),
		       med(l SUBSEP "whizbangd" SUBSEP 8), med(l SUBSEP "redis" SUBSEP 8)
	}
	lc = med("lease" SUBSEP "whizbangd" SUBSEP 4)
	if (lc != "") {
		we = med("16x16" SUBSEP "whizbangd" SUBSEP 4)
		printf "\nlease -> commit at 16 x 16: %.0f cycles/s, %.2f x whizbangd'"'"'s 16 x 16 append rate\n",
		       lc, (we > 0 ? lc / we : 0)
	}
}' "$results"

if [ "$keep" = 1 ]; then
	say "every run: $results"
fi
[ "$failed" = 0 ] || say "some runs FAILED (see above)"
exit $failed
