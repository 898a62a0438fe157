#!/bin/sh
# Builds deploy/Dockerfile with podman and checks the image, which runs
# whizbangd with TLS and authentication on: runs it with a named volume and
# its ports on 127.0.0.1, fetches the CA certificate and the bootstrap token
# the first start made in the volume, and talks to it with the host's CLI
# over TLS (ping, append, read; the names the node certificate carries; a
# plaintext client refused, an anonymous one allowed only to ping); checks
# the modes and owner of the secrets and that the entry point's message
# never shows the token; restarts the container, then starts a new one on
# the same volume, and reads the same events with the same CA, certificate
# and token (nothing made again); runs the HEALTHCHECK and checks the user
# is not root; starts it with certificates of its own, mounted, and checks
# it refuses to start with a mounted certificate that is not there or
# without its key; checks /health over HTTPS with the CA; stops it
# (SIGTERM: exit status 0), and removes the containers and the volume.
#
# No Docker engine or image registry is reachable here, so the base image
# (debian:bookworm-slim) is made with debootstrap and imported once; later
# runs reuse it. podman uses runc and capped ulimits (deploy/containers.conf).
# Must run as root. Time budget: first run (debootstrap + image build from
# nothing) about 2 minutes here, later runs under a minute (half of it a
# rebuild when the sources changed, the checks about 15 s); every step is bounded by
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
	for c in "$NAME" "$NAME-own"; do
		podman rm -f -v -t 5 "$c" >/dev/null 2>&1
	done
	podman volume rm -f "$VOL" >/dev/null 2>&1
	[ -n "${ROOTFS:-}" ] && rm -rf "$ROOTFS"
	[ -n "${WORK:-}" ] && rm -rf "$WORK"
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

# 3. Run it: the volume, the ports on loopback only, names for the node
# certificate besides the defaults (localhost, 127.0.0.1, ::1, the host name).
ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))') || fail "picking free ports"
set -- $ports
PORT=$1 MPORT=$2
SERVER=127.0.0.1:$PORT
SANS="db.example.test, 192.0.2.10"
WORK=$(mktemp -d /tmp/wb-image-test.XXXXXX) || fail "mktemp"
CA=$WORK/ca.crt
TOKEN=$WORK/admin.token
TLS="--tls-ca-file $CA"
bounded 60 podman volume create "$VOL" >/dev/null || fail "podman volume create"
# No systemd on these hosts to time the periodic health checks (podman says
# so on stderr at each start: kept in $ERRS, shown on failure); the check is
# run by hand below.
ERRS=$WORK/podman.err
start() { # HOSTNAME WHAT: the container $NAME on the volume
	bounded 60 podman run -d --name "$NAME" --hostname "$1" --health-interval disable \
		-e WHIZBANG_TLS_SANS="$SANS" -v "$VOL:/var/lib/whizbang" \
		-p "127.0.0.1:$PORT:7411" -p "127.0.0.1:$MPORT:7412" "$IMAGE" >/dev/null 2>"$ERRS" ||
		{ cat "$ERRS" >&2; fail "podman run ($2)"; }
}

# The host's CLI, bounded.
cli() { bounded 30 "$CLI" --timeout-ms 5000 "$@"; }

# Up to 30 s for whizbangd in container $1 to answer a ping inside it
# (plaintext over loopback: the HEALTHCHECK's way), then over TLS from the
# host with the CA in $CA when there is one.
wait_up() { # CONTAINER WHAT
	i=0
	while ! bounded 10 podman exec "$1" whizbang --server 127.0.0.1:7411 --timeout-ms 1000 \
		ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -ge 60 ]; then
			podman logs "$1" 2>&1 | tail -20 >&2
			fail "whizbangd in the container $1 did not answer ping ($2)"
		fi
		sleep 0.5
	done
}

# The SHA-256 of the DER of the PEM certificate $1: its fingerprint.
fingerprint() {
	python3 -c 'import hashlib, ssl, sys
print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(open(sys.argv[1]).read())).hexdigest())' "$1"
}

# The CA certificate, the node certificate and the token, out of the volume
# into $WORK (FILE.SUFFIX), and their fingerprints into $fps.
fetch() { # SUFFIX
	bounded 30 podman cp "$NAME:/var/lib/whizbang/tls/ca.crt" "$CA.$1" &&
		bounded 30 podman cp "$NAME:/var/lib/whizbang/tls/node.crt" "$WORK/node.crt.$1" ||
		fail "podman cp of the certificates from the volume ($1)"
	(umask 077 && bounded 30 podman exec "$NAME" cat /var/lib/whizbang/bootstrap-admin.token \
		>"$TOKEN.$1") || fail "reading the bootstrap token from the volume ($1)"
	fps="ca=$(fingerprint "$CA.$1") node=$(fingerprint "$WORK/node.crt.$1")" ||
		fail "the certificates from the volume do not parse ($1)"
	fps="$fps token=$(sha256sum <"$TOKEN.$1" | cut -c1-64)"
}

start wb-image-test "first start"
wait_up "$NAME" "after the first start"
fetch first
cp "$CA.first" "$CA" && cp "$TOKEN.first" "$TOKEN" || fail "cp"
first_fps=$fps

# Over TLS with the CA, a client that has not authenticated may ping and no
# more; the same port in plaintext is refused (through the published port
# whizbangd does not see loopback).
cli $TLS --server "$SERVER" ping >/dev/null || fail "ping over TLS with the CA from the volume"
out=$(cli --server "$SERVER" ping 2>&1) && fail "a plaintext ping from the host was answered: $out"
case "$out" in
*"only TLS"*) ;;
*) fail "a plaintext ping from the host failed otherwise than refused for want of TLS: $out" ;;
esac
out=$(cli $TLS --server "$SERVER" append image-test --type Checked --data no 2>&1) &&
	fail "an append without credentials was answered (anonymous access is on): $out"
case "$out" in
*UNAUTHENTICATED* | *PERMISSION_DENIED*) ;;
*) fail "an append without credentials failed otherwise than UNAUTHENTICATED: $out" ;;
esac

# The node certificate carries the default names and WHIZBANG_TLS_SANS,
# and a name it does not carry fails verification.
for n in localhost 127.0.0.1 wb-image-test db.example.test 192.0.2.10; do
	cli $TLS --tls-server-name "$n" --server "$SERVER" ping >/dev/null ||
		fail "the node certificate does not carry $n"
done
out=$(cli $TLS --tls-server-name elsewhere.example.test --server "$SERVER" ping 2>&1) &&
	fail "a server name the certificate does not carry was accepted"
case "$out" in
*"hostname mismatch"*) ;;
*) fail "a server name the certificate does not carry failed otherwise: $out" ;;
esac

# The bootstrap token over TLS: append and read, as the docs say.
AUTH="--token-file $TOKEN"
cli $AUTH $TLS --server "$SERVER" append image-test --type Checked --data one \
	--expected-version no-stream >/dev/null || fail "append"
cli $AUTH $TLS --server "$SERVER" append image-test --type Checked --data two \
	--expected-version 0 >/dev/null || fail "second append"
before=$(cli $AUTH $TLS --server "$SERVER" --json read image-test) || fail "read"
[ "$(echo "$before" | grep -c '"stream":"image-test"')" -eq 2 ] ||
	fail "read did not return the 2 events appended: $before"
out=$(cli $AUTH --server "whizbang://localhost:$PORT?tlsCaFile=$CA" whoami) ||
	fail "whoami with the URL of the docs"
case "$out" in
*"roles: admin"*"tls: TLS"*) ;;
*) fail "whoami with the bootstrap token over TLS: $out" ;;
esac
# Inside the container the CLI reaches the Unix socket as the server's own
# user: the administrator with no credentials (the docs' way to rotate).
out=$(bounded 30 podman exec "$NAME" whizbang whoami) || fail "whoami in the container"
case "$out" in
*"roles: admin"*unix:*) ;;
*) fail "whoami in the container, on the Unix socket: $out" ;;
esac

# The secrets: mode 0600 (their directory 0700), owned by whizbang; the
# entry point's message names the files but never shows the token.
modes=$(bounded 30 podman exec "$NAME" stat -c '%a %U %n' /var/lib/whizbang/tls \
	/var/lib/whizbang/tls/ca.key /var/lib/whizbang/tls/node.key \
	/var/lib/whizbang/bootstrap-admin.token) || fail "stat of the secrets"
want="700 whizbang /var/lib/whizbang/tls
600 whizbang /var/lib/whizbang/tls/ca.key
600 whizbang /var/lib/whizbang/tls/node.key
600 whizbang /var/lib/whizbang/bootstrap-admin.token"
[ "$modes" = "$want" ] || fail "the secrets' modes and owner: $modes"
logs=$(bounded 30 podman logs "$NAME" 2>&1) || fail "podman logs"
case "$logs" in
*"docker-entrypoint: made a new CA"*"/var/lib/whizbang/tls/ca.crt"*bootstrap-admin.token*) ;;
*) fail "the first start did not say where the CA and the token are: $logs" ;;
esac
if echo "$logs" | grep -qF "$(cat "$TOKEN")"; then fail "the token is in the container's log"; fi

# 4. Restart (SIGTERM, then the entry point and whizbangd again on the same
# volume): the same certificates, token and events.
bounded 60 podman restart -t 20 "$NAME" >/dev/null 2>>"$ERRS" ||
	{ cat "$ERRS" >&2; fail "podman restart"; }
wait_up "$NAME" "after restart"
fetch restart
[ "$fps" = "$first_fps" ] ||
	fail "certificates or token changed at the restart: first $first_fps, now $fps"
after=$(cli $AUTH $TLS --server "$SERVER" --json read image-test) || fail "read after restart"
[ "$before" = "$after" ] || fail "events differ after restart: before=$before after=$after"

# 5. A new container on the same volume, under another host name: nothing
# made again, nothing said about it.
bounded 60 podman rm -f -t 20 "$NAME" >/dev/null 2>&1 || fail "podman rm"
start wb-image-test-2 "second container"
wait_up "$NAME" "in a second container"
fetch second
[ "$fps" = "$first_fps" ] ||
	fail "certificates or token changed in a second container: first $first_fps, now $fps"
after=$(cli $AUTH $TLS --server "$SERVER" --json read image-test) ||
	fail "read in a second container"
[ "$before" = "$after" ] || fail "events differ in a second container: $before / $after"
logs=$(bounded 30 podman logs "$NAME" 2>&1) || fail "podman logs"
case "$logs" in
*docker-entrypoint:*) fail "the second container's entry point spoke of a first start: $logs" ;;
esac

# 6. The health check and the user.
bounded 60 podman healthcheck run "$NAME" >/dev/null || fail "the HEALTHCHECK (whizbang ping) failed"
uid=$(bounded 30 podman exec "$NAME" id -u) || fail "podman exec id -u"
[ "$uid" != 0 ] || fail "whizbangd runs as root in the container"
[ "$uid" = 10001 ] || fail "whizbangd runs as uid $uid, not 10001"

# 7. Certificates of one's own, mounted read-only and named by the
# environment: served as they are, nothing made in the volume.
OWN=$WORK/own
mkdir -m 700 "$OWN" &&
	cli certs create-ca --out-dir "$OWN" >/dev/null &&
	cli certs create-node --ca-dir "$OWN" --out-dir "$OWN" --dns mounted.example.test >/dev/null &&
	rm "$OWN/ca.key" && chown -R 10001:10001 "$OWN" || fail "making certificates to mount"
bounded 60 podman run -d --name "$NAME-own" --health-interval disable \
	-v "$OWN:/run/whizbang-tls:ro" -e WHIZBANG_TLS_CERT_FILE=/run/whizbang-tls/node.crt \
	-e WHIZBANG_TLS_KEY_FILE=/run/whizbang-tls/node.key \
	-e WHIZBANG_TLS_CA_FILE=/run/whizbang-tls/ca.crt "$IMAGE" >/dev/null 2>"$ERRS" ||
	{ cat "$ERRS" >&2; fail "podman run with mounted certificates"; }
wait_up "$NAME-own" "with mounted certificates"
bounded 30 podman exec "$NAME-own" whizbang --server 127.0.0.1:7411 --timeout-ms 5000 \
	--tls-ca-file /run/whizbang-tls/ca.crt --tls-server-name mounted.example.test ping >/dev/null ||
	fail "whizbangd does not serve the mounted certificate"
bounded 30 podman exec "$NAME-own" test ! -e /var/lib/whizbang/tls ||
	fail "certificates were made although mounted ones were named"
bounded 60 podman rm -f -v -t 20 "$NAME-own" >/dev/null 2>&1 || fail "podman rm $NAME-own"

# 8. Refused at the start, with a message that says why: a mounted
# certificate that is not there, and a certificate without its key.
refused() { # WHAT MESSAGE ENV...
	what=$1 msg=$2
	shift 2
	bounded 60 podman run --rm --health-interval disable "$@" "$IMAGE" >"$WORK/out" 2>&1 &&
		fail "whizbangd started with $what"
	grep -qF "$msg" "$WORK/out" ||
		{ cat "$WORK/out" >&2; fail "no message saying why it refused $what"; }
}
refused "a mounted certificate that is missing" \
	"WHIZBANG_TLS_CERT_FILE=/run/whizbang-tls/node.crt: no such file" \
	-e WHIZBANG_TLS_CERT_FILE=/run/whizbang-tls/node.crt \
	-e WHIZBANG_TLS_KEY_FILE=/run/whizbang-tls/node.key
refused "a mounted certificate without its key" \
	"WHIZBANG_TLS_CERT_FILE is set without WHIZBANG_TLS_KEY_FILE" \
	-e WHIZBANG_TLS_CERT_FILE=/etc/hostname

# 9. The metrics port, published like the protocol's: /health over HTTPS
# with the same certificate (/metrics wants a token, not checked here).
python3 -c 'import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
for p in ("/health/live", "/health/ready"):
    try:
        r = urllib.request.urlopen("https://127.0.0.1:" + sys.argv[1] + p, timeout=5, context=ctx)
    except Exception as e:
        sys.exit("%s: %s" % (p, e))
    if r.status != 200:
        sys.exit("%s: HTTP %d" % (p, r.status))' "$MPORT" "$CA" ||
	fail "GET https://127.0.0.1:$MPORT/health/live and /health/ready with the CA (the container's 7412)"

# 10. Stop: SIGTERM and a clean exit.
bounded 60 podman stop -t 20 "$NAME" >/dev/null 2>>"$ERRS" || fail "podman stop"
code=$(bounded 30 podman inspect -f '{{.State.ExitCode}}' "$NAME") || fail "podman inspect"
[ "$code" = 0 ] || { podman logs "$NAME" 2>&1 | tail -20 >&2; fail "whizbangd exited $code on SIGTERM, not 0"; }

log "ok in $(($(date +%s) - START))s: TLS with the CA and the token from the volume, plaintext refused, anonymous only ping, the certificate's names, secrets 0600, restart and a second container (same CA, certificate, token, events), healthcheck, uid $uid, mounted certificates, refused starts, /health over HTTPS, clean stop"
