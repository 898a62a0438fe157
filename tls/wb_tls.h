/* TLS for Whizbang's connections: OpenSSL 3 driven through memory, with no
 * socket and no loop in it (DESIGN.md §9).
 *
 * The connection layer owns the socket. It hands the bytes it reads to a
 * session (wb_tls_session_feed), takes the plaintext out
 * (wb_tls_session_read), hands plaintext in (wb_tls_session_write) and sends
 * whatever ciphertext the session has ready (wb_tls_session_peek_out, then
 * wb_tls_session_consume_out once it is written). h2o and Node drive
 * OpenSSL the same way. Nothing here blocks, calls back into the caller or
 * keeps a pointer to a caller's buffer after returning.
 *
 * A context (struct wb_tls_ctx) holds what every connection shares: the
 * role, the certificate and key, the CA that peers are checked against, and
 * the settings that always hold (below). It is reference-counted: each
 * session holds a reference, so a server reloading its certificate builds
 * a new context, makes new sessions from it and drops its own reference to
 * the old one, which lives on until the last session that uses it is
 * freed.
 *
 * What always holds, whatever the config says:
 * - TLS 1.2 at least, TLS 1.3 preferred (both ends negotiate the highest);
 * - ALPN: the client offers exactly "whizbang/1"; a server refuses a
 *   client that offers no ALPN or offers it without "whizbang/1", and a
 *   client fails when the server does not select it, so the port cannot be
 *   mistaken for another protocol's (cross-protocol attacks);
 * - TLS 1.2 ciphers: ECDHE with AES-GCM or ChaCha20-Poly1305 only; TLS
 *   1.3's three AEAD suites; OpenSSL security level 2 (keys of 112 bits of
 *   strength at least: RSA 2048, P-256, Ed25519);
 * - no renegotiation, no compression;
 * - no session resumption (no tickets, no session cache): every connection
 *   does a full handshake, so a client certificate is verified on every
 *   connection and a context swap takes effect for every new connection.
 *   Connections are long-lived, so the handshake's cost is paid rarely;
 * - certificates are verified strictly (X509_V_FLAG_X509_STRICT), and a
 *   peer's certificate must carry the extended key usage of its role
 *   (serverAuth for a server, clientAuth for a client).
 *
 * Memory is bounded per session: WB_TLS_IN_BUF bytes of received ciphertext
 * not yet processed, WB_TLS_OUT_BUF bytes of ciphertext not yet taken out,
 * OpenSSL's record buffers (about 34 KiB, released while the connection is
 * idle: SSL_MODE_RELEASE_BUFFERS) and at most one decrypted record
 * (16 KiB) not yet read. Past these bounds the session refuses more
 * (feed and write accept fewer bytes than offered, down to none) instead of
 * growing: the caller stops reading from the socket, or stops writing,
 * until it has drained the other side. Handshake messages are bounded by
 * OpenSSL's limit on a peer's certificate list (100 KiB).
 *
 * Thread safety: a session is used by one thread at a time. A context may
 * be shared by sessions on several threads; wb_tls_ctx_ref() and
 * wb_tls_ctx_unref() are atomic. Errors reported by OpenSSL are read from
 * its per-thread error queue, which each call here clears first. */
#ifndef WB_TLS_H
#define WB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "wb_error.h"

/* The one application protocol, as ALPN names it. */
#define WB_TLS_ALPN "whizbang/1"

/* Received ciphertext a session holds before it is processed, and
 * ciphertext it holds before the caller takes it out. */
#define WB_TLS_IN_BUF (16u * 1024u)
#define WB_TLS_OUT_BUF (32u * 1024u)

/* The longest name (a common name, a DNS name, an address) a session
 * reports, in bytes; a longer one is not reported. */
#define WB_TLS_NAME_MAX 255u
/* At most this many subjectAltName entries of a peer are reported. */
#define WB_TLS_PEER_SANS 16u

/* ---------------------------------------------------------------- contexts */

enum wb_tls_role {
	WB_TLS_SERVER = 0,
	WB_TLS_CLIENT = 1,
};

/* Whether a server asks clients for a certificate. */
enum wb_tls_client_cert {
	WB_TLS_CLIENT_CERT_NONE = 0,     /* not asked for */
	WB_TLS_CLIENT_CERT_OPTIONAL = 1, /* asked for; verified when sent */
	WB_TLS_CLIENT_CERT_REQUIRED = 2, /* a client without a valid one is refused */
};

/* A zeroed struct is a server with no client certificates; fill the files
 * in. Strings are read during wb_tls_ctx_new() only. */
struct wb_tls_config {
	enum wb_tls_role role;
	/* PEM files: the certificate followed by any intermediate CAs, and its
	 * unencrypted private key (an encrypted key is refused: nothing could
	 * type its passphrase). Required for a server; optional for a client
	 * (its client certificate), but both or neither. */
	const char *cert_file;
	const char *key_file;
	/* PEM file of the CAs that a peer's certificate must chain to.
	 * Required for a client that verifies the server, and for a server
	 * that asks for client certificates. */
	const char *ca_file;
	/* Server only. */
	enum wb_tls_client_cert client_cert;
	/* Client only: the name the server's certificate must carry, a DNS
	 * name (matched against its DNS subjectAltNames; sent as SNI) or an
	 * IPv4 or IPv6 address without brackets (matched against its IP
	 * subjectAltNames). Required unless skip_server_verify. */
	const char *server_name;
	/* Client only: accept any server certificate. For tests and first
	 * contact only: anyone on the path can then read and change the
	 * traffic. */
	bool skip_server_verify;
};

struct wb_tls_ctx;

/* Builds a context from cfg: loads the certificate, the key and the CA
 * file, checks that the key matches the certificate, and applies the
 * settings that always hold. Keeps no reference to cfg or its strings.
 * Returns 0 and writes *out, a context with one reference that the caller
 * owns; otherwise WB_E_INVAL (a config that contradicts itself, a file
 * that does not load, a key that is encrypted or does not match),
 * WB_E_NOTFOUND or WB_E_IO (the key file cannot be opened) or WB_E_NOMEM,
 * with a sentence naming the file and OpenSSL's reason in
 * errmsg[0..errlen), and *out untouched. The message never contains key
 * material. */
int wb_tls_ctx_new(const struct wb_tls_config *cfg, struct wb_tls_ctx **out, char *errmsg,
                   size_t errlen);

/* Takes one more reference to ctx and returns ctx. */
struct wb_tls_ctx *wb_tls_ctx_ref(struct wb_tls_ctx *ctx);

/* Drops one reference; the last one frees ctx. NULL is ignored. */
void wb_tls_ctx_unref(struct wb_tls_ctx *ctx);

/* The notAfter time of ctx's own certificate (seconds since the epoch,
 * UTC), for a "days until expiry" figure; 0 when ctx has no certificate. */
time_t wb_tls_ctx_not_after(const struct wb_tls_ctx *ctx);

/* ---------------------------------------------------------------- sessions */

/* The life of a session: HANDSHAKING -> OPEN -> CLOSED, or FAILED from
 * either of the first two. CLOSED and FAILED are final. */
enum wb_tls_state {
	WB_TLS_HANDSHAKING = 0,
	WB_TLS_OPEN = 1,   /* application data flows both ways */
	WB_TLS_CLOSED = 2, /* a close_notify was sent or received */
	WB_TLS_FAILED = 3, /* wb_tls_session_errmsg() says why */
};

struct wb_tls_session;

/* Starts a session of ctx's role and takes a reference to ctx. A client's
 * ClientHello is ready to be taken out at once; a server waits for one.
 * Returns 0 and writes *out, owned by the caller (wb_tls_session_free());
 * WB_E_NOMEM with *out untouched. */
int wb_tls_session_new(struct wb_tls_ctx *ctx, struct wb_tls_session **out);

/* Frees s and drops its reference to its context. Sends nothing: call
 * wb_tls_session_close() first and take the close_notify out to end the
 * connection cleanly. NULL is ignored. */
void wb_tls_session_free(struct wb_tls_session *s);

/* Takes received ciphertext p[0..n) and moves the handshake on. Copies as
 * much as the session has room for (WB_TLS_IN_BUF, less what it holds) and
 * writes that count into *consumed; keeps no reference to p. Fewer than n
 * bytes are taken only when the session is full: read the plaintext out
 * (wb_tls_session_read), then feed the rest. Returns 0 while the session
 * is handshaking or open; WB_E_IO when it has failed (now or before; its
 * errmsg says why; *consumed is 0 if it had failed before); WB_E_CLOSED
 * once it is closed (*consumed is n: bytes after a close_notify are
 * dropped). After any return, there may be ciphertext to send (an alert
 * when it failed). */
int wb_tls_session_feed(struct wb_tls_session *s, const uint8_t *p, size_t n, size_t *consumed);

/* Copies decrypted application data into buf[0..cap) and writes its length
 * into *n: 0 when none is ready yet (during the handshake, or until more
 * ciphertext is fed). Call it until *n is 0 after each feed: data stays
 * queued until read, and a full session takes no more ciphertext. Returns
 * 0; WB_E_CLOSED (*n 0) once the peer's close_notify has been read, or the
 * session was closed; WB_E_IO (*n 0) when the session has failed. */
int wb_tls_session_read(struct wb_tls_session *s, uint8_t *buf, size_t cap, size_t *n);

/* Encrypts application data p[0..n) for the peer and writes the count of
 * bytes taken into *consumed: fewer than n (down to 0) when the outgoing
 * ciphertext buffer is full; take the ciphertext out and offer the rest
 * again, starting at the first byte not taken. Keeps no reference to p.
 * Returns 0 when the session is open; WB_E_AGAIN (*consumed 0) while it is
 * handshaking: keep the data until it is open; WB_E_CLOSED or WB_E_IO once
 * it is closed or has failed (*consumed counts what was taken before). */
int wb_tls_session_write(struct wb_tls_session *s, const uint8_t *p, size_t n, size_t *consumed);

/* Points *p at the ciphertext that is ready to be sent and writes its
 * length into *n (0: nothing to send). The bytes stay in the session, at
 * the same address, until wb_tls_session_consume_out() takes them off or
 * the session is freed; nothing else moves them. There may be more after
 * them than *n says (the buffer is a ring): call again after consuming.
 * Moves the handshake on first, so a flight that did not fit before is
 * here now. Either copy the bytes and consume them at once, or hand them
 * to one write and consume them in its callback. Works in every state. */
void wb_tls_session_peek_out(struct wb_tls_session *s, const uint8_t **p, size_t *n);

/* Takes the first n bytes that wb_tls_session_peek_out() showed off the
 * outgoing buffer; n is at most what it showed. */
void wb_tls_session_consume_out(struct wb_tls_session *s, size_t n);

/* Ends the session: an open one (or one whose peer has closed) queues its
 * close_notify, to be taken out with wb_tls_session_peek_out(); one still
 * handshaking sends nothing. The state is CLOSED afterwards, or stays
 * FAILED. Idempotent. */
void wb_tls_session_close(struct wb_tls_session *s);

enum wb_tls_state wb_tls_session_state(const struct wb_tls_session *s);

/* Why the session failed, a sentence with OpenSSL's reason ("handshake
 * failed: certificate verify failed (certificate has expired)"); "" unless
 * the state is FAILED. Owned by s. */
const char *wb_tls_session_errmsg(const struct wb_tls_session *s);

/* Why the peer's certificate did not verify, in the terms a person fixes it
 * in (wb_tls_session_errmsg() has OpenSSL's own words). */
enum wb_tls_verify {
	WB_TLS_VERIFY_OK = 0,            /* verified, not checked, or not the failure */
	WB_TLS_VERIFY_UNTRUSTED = 1,     /* it chains to no CA of ca_file */
	WB_TLS_VERIFY_NAME = 2,          /* it does not carry the expected server_name */
	WB_TLS_VERIFY_EXPIRED = 3,       /* it, or a CA above it, has expired */
	WB_TLS_VERIFY_NOT_YET_VALID = 4, /* its validity has not begun (a clock behind?) */
	WB_TLS_VERIFY_OTHER = 5,         /* another reason: the message says which */
};

/* When a FAILED session failed because the peer's certificate did not
 * verify, why; WB_TLS_VERIFY_OK in every other case. */
enum wb_tls_verify wb_tls_session_verify(const struct wb_tls_session *s);

/* The protocol version ("TLSv1.3") and cipher suite
 * ("TLS_AES_128_GCM_SHA256") negotiated, static strings; "" unless the
 * handshake completed. */
const char *wb_tls_session_version(const struct wb_tls_session *s);
const char *wb_tls_session_cipher(const struct wb_tls_session *s);

/* The verified peer certificate's subject common name (for a client
 * certificate: the user); "" when the handshake has not completed, the
 * peer sent no certificate, it was not verified (a client with
 * skip_server_verify), or its subject has no single common name of at
 * most WB_TLS_NAME_MAX bytes of UTF-8 without a NUL. Owned by s. */
const char *wb_tls_session_peer_cn(const struct wb_tls_session *s);

/* The i-th DNS or IP subjectAltName of the same verified certificate,
 * "DNS:node1.example" or "IP:10.0.0.1" / "IP:::1"; NULL when it has no
 * i-th one. Other kinds of name, names longer than WB_TLS_NAME_MAX or with
 * a NUL, and names after the first WB_TLS_PEER_SANS are skipped. Owned by
 * s. */
const char *wb_tls_session_peer_san(const struct wb_tls_session *s, size_t i);

/* ---------------------------------------------------------------- one port, both */

enum wb_tls_looks {
	WB_TLS_LOOKS_PLAIN = 0, /* not TLS: hand the bytes to the frame decoder */
	WB_TLS_LOOKS_TLS = 1,   /* a TLS handshake record */
	WB_TLS_LOOKS_AGAIN = 2, /* too few bytes to tell */
};

/* Tells from the first bytes a client sent, p[0..n), whether it speaks TLS
 * or Whizbang's plaintext frames, so that one port can take both. A
 * plaintext frame starts with 0x00 (the high byte of a 4-byte big-endian
 * length below 16 MiB); a TLS connection with a handshake record, 0x16
 * 0x03 0x00..0x04. WB_TLS_LOOKS_TLS needs those 3 bytes; fewer that start
 * that way are WB_TLS_LOOKS_AGAIN; anything else is WB_TLS_LOOKS_PLAIN
 * (and the frame decoder refuses it if it is garbage). Pure: reads p only. */
enum wb_tls_looks wb_tls_looks_like_tls(const uint8_t *p, size_t n);

#endif
