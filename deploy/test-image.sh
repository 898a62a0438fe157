#!/bin/sh
# Builds deploy/Dockerfile with podman and checks the image: runs it with a
# named volume and its ports on 127.0.0.1, talks to it with the host's CLI
# (ping, append, read), restarts the container and reads again (the data is
# in the volume), checks the HEALTHCHECK and that whizbangd runs as non-root,
# stops it (SIGTERM: exit status 0), and removes the container and volume.
#
# No Docker engine or image registry is reachable here, so the base image
# (debian:bookworm-slim) is made with debootstrap and imported once; later
# runs reuse it. podman uses runc and capped ulimits (deploy/containers.conf).
# Must run as root. Time budget: first run (debootstrap + image build from
# nothing) about 2 minutes here, later runs under 30 s; every step is bounded by
# timeout(1), the whole run by WB_IMAGE_TEST_BUDGET seconds (default 600).
# Exits non-zero with a message naming the step on any failure.
set -u
# One run at a time on a machine (they share the image tag and the cache).
if [ -z "${WB_IMAGE_TEST_LOCKED:-}" ] && command -v flock >/dev/null; then
	WB_IMAGE_TEST_LOCKED=1 exec flock -w "${WB_IMAGE_TEST_BUDGET:-600}" \
		/tmp/whizbang-image-test.lock sh "$0" "$@"
fi
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BASE=docker.io/library/debian:bookworm-slim
IMAGE=localhost/whizbang:test
NAME=whizbang-image-test-$$
VOL=whizbang-image-test-$$
MIRROR=${WB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUDGET=${WB_IMAGE_TEST_BUDGET:-600}
START=$(date +%s)
export CONTAINERS_CONF="$ROOT/deploy/containers.conf"
CLI="$ROOT/build/client/whizbang"

log() { echo "test-image: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
bounded() { # bounded SECONDS CMD...: at most SECONDS, and never past the budget
	s=$1; shift
	l=$((BUDGET - ($(date +%s) - START)))
	[ "$l" -gt 0 ] || fail "time budget of ${BUDGET}s (WB_IMAGE_TEST_BUDGET) exhausted"
	[ "$s" -lt "$l" ] || s=$l
	timeout -k 10 "$s" "$@"
	rc=$?
	[ $rc -ne 124 ] || log "timed out after ${s}s: $1"
	return $rc
}

[ "$(id -u)" -eq 0 ] || fail "must run as root (rootful podman, debootstrap)"

missing=""
for p in podman debootstrap runc; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	log "installing:$missing"
	bounded 600 apt-get update -qq || fail "apt-get update"
	DEBIAN_FRONTEND=noninteractive bounded 600 apt-get install -y -qq --no-install-recommends \
		$missing >/dev/null || fail "apt-get install$missing"
fi

if [ ! -x "$CLI" ]; then
	[ -f build/build.ninja ] || meson setup build >/dev/null || fail "meson setup build"
	ninja -C build client/whizbang >/dev/null || fail "building the CLI"
fi

cleanup() {
	podman rm -f -t 5 "$NAME" >/dev/null 2>&1
	podman volume rm -f "$VOL" >/dev/null 2>&1
	[ -n "${ROOTFS:-}" ] && rm -rf "$ROOTFS"
	[ -n "${ERRS:-}" ] && rm -f "$ERRS"
	[ -n "${TOKEN:-}" ] && rm -f "$TOKEN"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# 1. The base image, made once with debootstrap and kept.
if podman image exists "$BASE"; then
	log "base image $BASE present"
else
	log "making $BASE with debootstrap (once)"
	t=$(date +%s)
	ROOTFS=$(mktemp -d /var/tmp/wb-rootfs.XXXXXX) || fail "mktemp"
	bounded 900 debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 ||
		{ tail -20 "$ROOTFS.log" >&2; fail "debootstrap"; }
	rm -f "$ROOTFS.log"
	rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
	tar -C "$ROOTFS" -c . | bounded 300 podman import --quiet \
		--change 'CMD ["bash"]' - "$BASE" >/dev/null || fail "podman import"
	rm -rf "$ROOTFS"; ROOTFS=""
	log "base image made in $(($(date +%s) - t))s"
fi

# 2. The image. --format docker keeps HEALTHCHECK and STOPSIGNAL.
log "building $IMAGE"
t=$(date +%s)
bounded 1200 podman build --format docker --network host -f deploy/Dockerfile -t "$IMAGE" . \
	>/tmp/wb-image-build.$$.log 2>&1 ||
	{ tail -40 /tmp/wb-image-build.$$.log >&2; rm -f /tmp/wb-image-build.$$.log; fail "podman build"; }
rm -f /tmp/wb-image-build.$$.log
log "image built in $(($(date +%s) - t))s"
# Keep the build stage's cached layers under a tag too, then drop the layers
# of earlier builds (untagged leaves of this Dockerfile's stages), so the
# cache does not grow with every run.
bounded 300 podman build --format docker --network host --target build -f deploy/Dockerfile \
	-t "$IMAGE-build" . >/dev/null 2>&1 || fail "tagging the build stage"
for title in whizbang whizbang-build; do
	bounded 120 podman image prune -f --filter "label=org.opencontainers.image.title=$title" \
		>/dev/null 2>&1 || log "warning: podman image prune failed (old layers kept)"
done

# 3. Run it: the volume, the ports on loopback only.
ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))') || fail "picking free ports"
set -- $ports
PORT=$1 MPORT=$2
SERVER=127.0.0.1:$PORT
bounded 60 podman volume create "$VOL" >/dev/null || fail "podman volume create"
# No systemd on these hosts to time the periodic health checks (podman says
# so on stderr at each start: kept in $ERRS, shown on failure); the check is
# run by hand below.
ERRS=/tmp/wb-image-test.$$.err
bounded 60 podman run -d --name "$NAME" --health-interval disable -v "$VOL:/var/lib/whizbang" \
	-p "127.0.0.1:$PORT:7411" -p "127.0.0.1:$MPORT:7412" "$IMAGE" >/dev/null 2>"$ERRS" ||
	{ cat "$ERRS" >&2; fail "podman run"; }

wait_ping() { # up to 30 s
	i=0
	while ! "$CLI" --server "$SERVER" --timeout-ms 1000 ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -ge 60 ]; then
			podman logs "$NAME" 2>&1 | tail -20 >&2
			fail "whizbangd in the container did not answer ping on $SERVER ($1)"
		fi
		sleep 0.5
	done
}
wait_ping "after start"
# A connection without credentials may only ping: the bootstrap token,
# written into the volume at the first start, is the administrator's.
TOKEN=$(mktemp /tmp/wb-image-test-token.XXXXXX) || fail "mktemp"
bounded 30 podman exec "$NAME" cat /var/lib/whizbang/bootstrap-admin.token >"$TOKEN" ||
	fail "reading the bootstrap token from the volume"
chmod 600 "$TOKEN"
"$CLI" --server "$SERVER" stats >/dev/null 2>&1 &&
	fail "stats without credentials was answered (anonymous access is on)"
AUTH="--token-file $TOKEN"
"$CLI" $AUTH --server "$SERVER" append image-test --type Checked --data one --expected-version no-stream \
	>/dev/null || fail "append"
"$CLI" $AUTH --server "$SERVER" append image-test --type Checked --data two --expected-version 0 \
	>/dev/null || fail "second append"
before=$("$CLI" $AUTH --server "$SERVER" --json read image-test) || fail "read"
[ "$(echo "$before" | grep -c '"stream":"image-test"')" -eq 2 ] ||
	fail "read did not return the 2 events appended: $before"

# The metrics port, published like the protocol's.
python3 -c 'import sys, urllib.request
for p in ("/health/ready", "/metrics"):
    r = urllib.request.urlopen("http://127.0.0.1:" + sys.argv[1] + p, timeout=5)
    assert r.status == 200, (p, r.status)' "$MPORT" ||
	fail "GET /health/ready or /metrics on 127.0.0.1:$MPORT (the container's 7412)"

# 4. Restart (SIGTERM, then a new whizbangd on the same volume): same events.
bounded 60 podman restart -t 20 "$NAME" >/dev/null 2>>"$ERRS" ||
	{ cat "$ERRS" >&2; fail "podman restart"; }
wait_ping "after restart"
after=$("$CLI" $AUTH --server "$SERVER" --json read image-test) || fail "read after restart"
[ "$before" = "$after" ] || fail "events differ after restart: before=$before after=$after"

# 5. The health check and the user.
bounded 60 podman healthcheck run "$NAME" >/dev/null || fail "the HEALTHCHECK (whizbang ping) failed"
uid=$(bounded 30 podman exec "$NAME" id -u) || fail "podman exec id -u"
[ "$uid" != 0 ] || fail "whizbangd runs as root in the container"
[ "$uid" = 10001 ] || fail "whizbangd runs as uid $uid, not 10001"

# 6. Stop: SIGTERM and a clean exit.
bounded 60 podman stop -t 20 "$NAME" >/dev/null 2>>"$ERRS" || fail "podman stop"
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME") || fail "podman inspect"
[ "$code" = 0 ] || { podman logs "$NAME" 2>&1 | tail -20 >&2; fail "whizbangd exited $code on SIGTERM, not 0"; }

log "ok in $(($(date +%s) - START))s: ping, no anonymous access, append and read with the bootstrap token, metrics, restart, read, healthcheck, uid $uid, clean stop"
