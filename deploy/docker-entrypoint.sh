#!/bin/sh
# The image's entry point: whizbangd on 0.0.0.0 with TLS and authentication
# on, as the user whizbang (uid 10001), its store in /var/lib/whizbang.
#
# The certificate whizbangd presents is either mounted, named by
#   WHIZBANG_TLS_CERT_FILE, WHIZBANG_TLS_KEY_FILE   (both, or neither)
#   WHIZBANG_TLS_CA_FILE                            (optional: given to whizbangd
#                                                    as --tls-ca-file, for client
#                                                    certificates)
# or made here at the first start, in /var/lib/whizbang/tls with
# `whizbang certs`: a private CA (ca.crt, ca.key) and a node certificate
# (node.crt, node.key) for localhost, 127.0.0.1, ::1, the container's host
# name and the names and addresses in WHIZBANG_TLS_SANS (separated by commas
# or spaces). Every file is mode 0600 and none is ever written over: later
# starts use what is there, and a node.crt and node.key that were removed
# are made again by the same CA (clients keep their ca.crt). ca.key stays in
# the volume for that, which makes the volume as secret as the CA: to keep a
# CA's key off the server, mount certificates made elsewhere.
#
# Arguments that start with '-' go to whizbangd after the image's own (a
# later flag wins: --log-level debug, --tls-client-cert optional; not --tls
# required, which refuses the image's HEALTHCHECK, a plaintext ping over
# loopback); any other first argument is run as a command instead
# (whizbang ..., whizbangd replay ..., sh), with no certificate made.
#
# At the first start it says on stderr where the CA certificate and the
# bootstrap administrator's token are and how to fetch them; it never
# prints the token. Anything it cannot do stops the container with a
# message saying what and what to do about it.
set -eu

DATA_DIR=/var/lib/whizbang
TLS_DIR=$DATA_DIR/tls

say() { printf 'docker-entrypoint: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

case "${1:-}" in
'' | -*) ;;
*) exec "$@" ;;
esac

[ -d "$DATA_DIR" ] && [ -w "$DATA_DIR" ] ||
	die "$DATA_DIR is not a directory this user (uid $(id -u)) may write: a directory" \
		"mounted there must belong to uid 10001 (on the host: chown 10001:10001 DIR)"

# A mounted file: there, a regular file, and readable by this user.
check_mounted() { # NAME VALUE
	[ -e "$2" ] || die "$1=$2: no such file in the container (mount it, e.g." \
		"-v /etc/whizbang/tls:/run/whizbang-tls:ro, and name the path inside)"
	[ -f "$2" ] || die "$1=$2 is not a regular file"
	[ -r "$2" ] || die "$1=$2 cannot be read by uid $(id -u) (on the host: chown 10001 it)"
}

# Whether TLS_DIR holds the file $1 (a dangling link counts: never written over).
has() { [ -e "$TLS_DIR/$1" ] || [ -L "$TLS_DIR/$1" ]; }

# Makes node.crt and node.key with the CA in TLS_DIR for the default names
# and WHIZBANG_TLS_SANS; sets SANS to the names, for the message.
make_node() {
	set -- --ca-dir "$TLS_DIR" --out-dir "$TLS_DIR"
	SANS=""
	host=$(uname -n)
	case "$host" in
	'' | *[!A-Za-z0-9.-]*)
		say "the host name '$host' is not a DNS name: the certificate leaves it out"
		host=""
		;;
	esac
	set -f # the list is split on commas and spaces, never globbed
	for name in localhost 127.0.0.1 ::1 $host $(printf '%s' "${WHIZBANG_TLS_SANS:-}" | tr ',' ' '); do
		case " $SANS " in *" $name "*) continue ;; esac
		SANS="${SANS:+$SANS }$name"
		case "$name" in
		*:*) set -- "$@" --ip "$name" ;;
		*[!0-9.]*) set -- "$@" --dns "$name" ;;
		*) set -- "$@" --ip "$name" ;;
		esac
	done
	set +f
	whizbang certs create-node "$@" >/dev/null ||
		die "could not make the node certificate in $TLS_DIR for: $SANS" \
			"(the message above says why; WHIZBANG_TLS_SANS takes DNS names and" \
			"IP addresses separated by commas or spaces)"
}

cert=${WHIZBANG_TLS_CERT_FILE:-}
key=${WHIZBANG_TLS_KEY_FILE:-}
ca=${WHIZBANG_TLS_CA_FILE:-}
made=""
if [ -n "$cert$key$ca" ]; then
	[ -n "$cert" ] || [ -n "$key" ] ||
		die "WHIZBANG_TLS_CA_FILE is set without WHIZBANG_TLS_CERT_FILE and" \
			"WHIZBANG_TLS_KEY_FILE: set all three for your own certificates, or none of" \
			"them to have certificates made in $TLS_DIR"
	[ -n "$cert" ] || die "WHIZBANG_TLS_KEY_FILE is set without WHIZBANG_TLS_CERT_FILE:" \
		"a mounted key needs its certificate (set both, or neither)"
	[ -n "$key" ] || die "WHIZBANG_TLS_CERT_FILE is set without WHIZBANG_TLS_KEY_FILE:" \
		"a mounted certificate needs its key (set both, or neither)"
	check_mounted WHIZBANG_TLS_CERT_FILE "$cert"
	check_mounted WHIZBANG_TLS_KEY_FILE "$key"
	[ -z "$ca" ] || check_mounted WHIZBANG_TLS_CA_FILE "$ca"
else
	if [ ! -d "$TLS_DIR" ]; then
		mkdir -m 700 "$TLS_DIR" || die "cannot make $TLS_DIR"
	fi
	if has node.crt && has node.key; then
		: # made at an earlier start, or put there: used as they are
	elif has node.crt || has node.key; then
		die "$TLS_DIR holds only one of node.crt and node.key: put the other back, or" \
			"remove it to have a new pair made by the CA there"
	else
		if ! has ca.crt && ! has ca.key; then
			whizbang certs create-ca --out-dir "$TLS_DIR" >/dev/null ||
				die "could not make a CA in $TLS_DIR (the message above says why)"
			made="a new CA (ca.crt, ca.key) and a node certificate"
		elif ! has ca.crt || ! has ca.key; then
			die "$TLS_DIR has no node certificate and only one of ca.crt and ca.key," \
				"so none can be made: put node.crt and node.key there, or put the CA" \
				"back, or empty $TLS_DIR for a new CA"
		else
			made="a node certificate signed by the CA already there"
		fi
		make_node
		made="$made (node.crt, node.key) for $SANS"
	fi
	cert=$TLS_DIR/node.crt
	key=$TLS_DIR/node.key
	ca=""
	! has ca.crt || ca=$TLS_DIR/ca.crt
fi

# The first start of this store (whizbangd writes the token when it makes
# the store), or certificates just made: say where the secrets are.
new_store=""
[ -e "$DATA_DIR/data.mdb" ] || new_store=1
if [ -n "$made$new_store" ]; then
	[ -z "$made" ] || say "made $made in $TLS_DIR (files of mode 0600)"
	if [ -n "$ca" ]; then
		say "clients verify the server with the CA certificate $ca; fetch it with:" \
			"docker cp CONTAINER:$ca ca.crt"
	else
		say "clients verify the server with the CA that signed $cert"
	fi
	[ -z "$new_store" ] ||
		say "this first start of the store writes an administrator's token to" \
			"$DATA_DIR/bootstrap-admin.token (never printed); fetch it with:" \
			"(umask 077; docker exec CONTAINER cat $DATA_DIR/bootstrap-admin.token > admin.token)"
	say "CONTAINER is this container's name or id; with deploy/docker-compose.yml:" \
		"docker compose cp whizbangd:FILE ., docker compose exec -T whizbangd cat FILE"
	say "then, where port 7411 is published:" \
		"whizbang --server 'whizbang://localhost:7411?tlsCaFile=ca.crt' --token-file admin.token whoami"
fi

# Last, so that a flag given to the container wins over the image's.
[ -z "$ca" ] || set -- --tls-ca-file "$ca" "$@"
exec whizbangd --data-dir "$DATA_DIR" --listen 0.0.0.0:7411 --metrics-listen 0.0.0.0:7412 \
	--tls-cert-file "$cert" --tls-key-file "$key" "$@"
