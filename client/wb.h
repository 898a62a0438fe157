/* libwhizbang: the C client library for whizbangd.
 *
 * One struct wb_client is one connection to one server, over TCP (plaintext
 * or TLS) or the server's Unix domain socket, authenticated or not
 * (wb_connect()). It is not thread-safe: use one client per thread. Calls
 * block until the server answers or the client's timeout passes.
 *
 * Errors: every call returns 0 or a code of enum wb_error (wb_error.h). A
 * code from the server (WRONG_EXPECTED_VERSION, NOT_FOUND, ...) comes with the
 * server's message, readable through wb_errmsg() until the next call on the
 * same client. Local failures return WB_E_IO (the connection failed),
 * WB_E_TIMEOUT, WB_E_CLOSED (the server closed the connection), WB_E_NOMEM
 * or WB_E_INVAL (a bad argument), also with a message. After WB_E_IO,
 * WB_E_TIMEOUT or WB_E_CLOSED the client is unusable; close it. The one
 * exception is WB_E_TIMEOUT from wb_next_item(), which only says that no
 * push arrived in time.
 *
 * A connection-level error from the server (a Response with id 0, such as
 * FRAME_TOO_LARGE, after which the server closes the connection) is returned
 * with its code and message and also leaves the client unusable. A request
 * larger than the server's max_frame is refused locally with
 * WB_FRAME_TOO_LARGE before anything is sent; the client stays usable. */
#ifndef WB_CLIENT_H
#define WB_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wb_error.h"
#include "whizbang.pb-c.h"

#define WB_DEFAULT_ADDRESS "127.0.0.1:7411"
/* An address that starts with this names a Unix domain socket by its path:
 * "unix:/var/lib/whizbang/whizbangd.sock" (wb_url.h turns whizbang+unix://
 * URLs into this form). */
#define WB_UNIX_PREFIX "unix:"
/* Reads from WB_END backwards start at the end of a stream or of $all. */
#define WB_END UINT64_MAX

struct wb_client;

struct wb_options {
	/* Sent in Hello; shown in the server's log. NULL: "libwhizbang". */
	const char *client_name;
	/* Per-call timeout in milliseconds; 0 waits forever. */
	int timeout_ms;
	/* The largest response frame accepted; 0: 64 MiB. */
	uint32_t max_response;
	/* The bound of the queue that keeps responses arriving while a call
	 * waits for another one (subscription pushes, answers to pipelined
	 * requests): at most max_queued responses (0: WB_DEFAULT_MAX_QUEUED)
	 * and max_queued_bytes bytes of frames (0: WB_DEFAULT_MAX_QUEUED_BYTES).
	 * See "Subscriptions" below for what happens past it. */
	uint32_t max_queued;
	size_t max_queued_bytes;
	/* Credentials (docs/PROTOCOL.md §4.1); all NULL: none, and the
	 * connection has what the server gives without them (its
	 * --anonymous-role, or admin for root and the server's own user on its
	 * Unix socket). token: an API token ("wbt_...", wb_create_token()), sent
	 * in Hello. user and password: SCRAM-SHA-256, in which the password
	 * never leaves this process (the server gets a proof, and proves in
	 * turn that it knows the user's keys); PBKDF2 runs on the calling thread
	 * inside wb_connect(), tens of milliseconds at 100000 iterations, within
	 * timeout_ms. Not a token and a user together. Read during wb_connect()
	 * only; the library keeps no copy of them afterwards. */
	const char *token;
	const char *user;
	const char *password;
	/* TLS (docs/PROTOCOL.md §1). With tls true the connection speaks TLS
	 * from its first byte (TLS 1.2 at least, ALPN "whizbang/1") and the
	 * server's certificate must verify: it chains to a CA of
	 * tls_ca_file (PEM; required) and carries tls_server_name (a DNS name,
	 * or an IPv4 or IPv6 address without brackets; NULL: the host of the
	 * address connected to) among its subjectAltNames. A connection whose
	 * handshake or verification fails is not made, and never falls back to
	 * plaintext. tls_cert_file and tls_key_file (PEM, both or neither)
	 * present a client certificate to a server that asks for one. TLS does
	 * not apply to a Unix socket ("unix:PATH" with tls is WB_E_INVAL). The
	 * files are read during wb_connect() only. */
	bool tls;
	const char *tls_ca_file;
	const char *tls_server_name;
	const char *tls_cert_file;
	const char *tls_key_file;
	/* Log in as the user the client certificate names (Hello mechanism
	 * EXTERNAL: the server reads the user from the certificate it verified,
	 * its common name). Needs tls and tls_cert_file; not with a token or a
	 * user. */
	bool external;
};

#define WB_DEFAULT_MAX_QUEUED 65536u
#define WB_DEFAULT_MAX_QUEUED_BYTES ((size_t)256 << 20)

struct wb_server_info {
	uint32_t protocol_version;
	char server_version[32];
	uint32_t max_frame;
	uint32_t max_read_count;
	uint32_t max_append_events;
	uint32_t max_event_size;
	/* True when the connection has no role: only Hello and Ping are
	 * answered. False after a password exchange that succeeded. */
	bool auth_required;
};

/* Who the connection acts as, as the server said: user is "" when it did
 * not authenticate, "uid:N" for a peer of the Unix socket the server trusts
 * by its uid, "token:ID" for an API token, else the user's name; roles
 * [0..nroles) its roles (none: every request but Hello and Ping is
 * refused). */
struct wb_identity {
	const char *user;
	const char *const *roles;
	size_t nroles;
};

/* Connects to address ("host:port", IPv4, IPv6 in brackets, or a name; or
 * "unix:PATH", the Unix domain socket at PATH), does the TLS handshake when
 * opts asks for TLS, and performs the Hello exchange, authenticating with
 * opts' credentials when it has some: a token in Hello, EXTERNAL (the
 * client certificate), or a password through Hello (SCRAM-SHA-256
 * client-first) and Authenticate (client-final), whose answer must carry
 * the server's signature over the exchange. opts may be NULL for defaults. On success
 * *out receives a client the caller closes with wb_close(). On failure *out
 * is untouched and, when errmsg is not NULL, a description is written into
 * errmsg[0..errlen). Keeps no reference to address or opts. address NULL
 * means WB_DEFAULT_ADDRESS and a missing ":port" means 7411; the timeout
 * covers the connect, the TLS handshake, the key derivation and the
 * exchange together.
 *
 * TLS errors: WB_E_INVAL, WB_E_NOTFOUND or WB_E_IO before connecting for
 * TLS options that cannot work (no tls_ca_file, a file that does not load,
 * a key that does not match its certificate, TLS to a Unix socket);
 * WB_UNAUTHENTICATED when the server's certificate does not verify, with
 * OpenSSL's reason and what it means (a CA that did not sign it: the wrong
 * tls_ca_file, or the wrong server; a name it does not carry; expired, or
 * not valid yet); WB_E_IO for any other failed handshake (a server that
 * does not serve TLS, refuses the client's certificate or has none it
 * asked for: in TLS 1.3 that refusal arrives after the client's side of
 * the handshake is done, and fails the Hello), with the reason.
 *
 * Authentication errors: WB_UNAUTHENTICATED with the server's message
 * ("authentication failed", whatever the reason: an unknown user, a wrong
 * password, a bad, expired or revoked token, or too many failures from this
 * address this minute), or with this library's when the server's answer
 * does not verify: a server that does not know the password's keys is not
 * the one the user was made on, and the connection is not kept. WB_E_INVAL,
 * before anything is sent, for credentials that cannot be right: a token not
 * of the "wbt_" form, a user name or password that SCRAM-SHA-256 refuses
 * (1 to 255 and 1 to 1024 bytes of UTF-8 without control characters), a
 * user without a password, a token and a user together, or external with
 * either, or without a TLS client certificate. Messages never hold the
 * password or the token. */
int wb_connect(struct wb_client **out, const char *address, const struct wb_options *opts,
               char *errmsg, size_t errlen);

/* Closes the connection and frees the client. NULL is allowed. */
void wb_close(struct wb_client *c);

/* The server's answer to Hello; owned by the client. */
const struct wb_server_info *wb_server_info(const struct wb_client *c);

/* Who the connection acts as (from HelloResult, or after a password from
 * AuthenticateResult). The struct and its strings are owned by the client
 * and valid until wb_close(). */
const struct wb_identity *wb_whoami(const struct wb_client *c);

/* The message that came with the last failure on c (never NULL; "" after
 * success). Owned by the client, valid until the next call on c. */
const char *wb_errmsg(const struct wb_client *c);

/* After WRONG_EXPECTED_VERSION: the stream's actual version, -1 when the
 * stream does not exist. */
int64_t wb_actual_version(const struct wb_client *c);

/* The socket's file descriptor, for poll() and for tests. Bytes this
 * library has already taken off it (frames read ahead, and with TLS whole
 * records) no longer make it readable: take what is there (wb_next_item()
 * with timeout 0 until WB_E_TIMEOUT) before waiting on it. */
int wb_fd(const struct wb_client *c);

/* True when the connection is TLS; then *version and *cipher (each may be
 * NULL) receive the protocol version ("TLSv1.3") and the cipher suite
 * ("TLS_AES_256_GCM_SHA384"), static strings. False, with neither written,
 * on a plaintext connection. */
bool wb_connection_tls(const struct wb_client *c, const char **version, const char **cipher);

/* ---------------------------------------------------------------- your own loop
 *
 * For a program that drives connected clients from its own event loop
 * (epoll over many of them, as whizbang-bench does): the bytes of frames
 * in and out, encrypted and decrypted here when the connection is TLS, so
 * that the program's loop is the same for both. None of these blocks or
 * waits for the timeout. Once a program has used them on a client it must
 * not make the calls above on it any more (their requests and answers
 * would interleave with its own); wb_close() is still how it ends. A
 * failure of the connection returns WB_E_IO or WB_E_CLOSED with a message
 * and leaves the client broken, as above. */

/* Takes frames' bytes p[0..n) for the server and sends as much as the
 * socket accepts now; *taken receives how many of the n were taken (0 when
 * the socket is full: offer the rest, from p + *taken, once wb_fd() is
 * writable). With TLS, bytes taken may still wait here as ciphertext:
 * wb_raw_pending() says so, and wb_raw_write(c, NULL, 0, &taken) sends
 * them once the socket is writable. Keeps no reference to p. Returns 0. */
int wb_raw_write(struct wb_client *c, const void *p, size_t n, size_t *taken);

/* True when bytes taken by wb_raw_write() wait here for the socket to
 * become writable (TLS only). */
bool wb_raw_pending(const struct wb_client *c);

/* Copies bytes the server sent (decrypted, with TLS) into buf[0..cap) and
 * writes their count into *n: first what this library had read ahead,
 * then what the socket holds; 0 when nothing is there now. Call it until
 * *n is 0 after wb_fd() turns readable: with TLS, bytes already taken off
 * the socket wait here, and poll() does not see them. Returns 0 (also with
 * *n 0); WB_E_CLOSED once the server has closed the connection. */
int wb_raw_read(struct wb_client *c, void *buf, size_t cap, size_t *n);

int wb_ping(struct wb_client *c);

enum wb_expected {
	WB_EXPECT_ANY = 0,
	WB_EXPECT_NO_STREAM = 1,
	WB_EXPECT_EXISTS = 2,
	WB_EXPECT_EXACT = 3,
};

struct wb_new_event {
	const uint8_t *id; /* 16 bytes, or NULL for a server-generated UUIDv7 */
	const char *type;
	const void *data;
	size_t data_len;
	const void *metadata;
	size_t metadata_len;
};

struct wb_append_result {
	uint64_t first_position;
	uint64_t last_position;
	uint64_t stream_version;
	bool idempotent_replay;
};

/* Appends events[0..n) to stream atomically. expected_version is read only
 * with WB_EXPECT_EXACT. Keeps no reference to the arguments. */
int wb_append(struct wb_client *c, const char *stream, enum wb_expected expected,
              uint64_t expected_version, const struct wb_new_event *events, size_t n,
              struct wb_append_result *out);

/* A stored event. Its pointers point into the wb_page that holds it. */
struct wb_event {
	uint8_t id[16];
	const char *stream;
	uint64_t version;
	uint64_t position;
	uint64_t timestamp_us;
	const char *type;
	const uint8_t *data;
	size_t data_len;
	const uint8_t *metadata;
	size_t metadata_len;
};

/* One page of a read. next continues the read (a version or a position);
 * end is true when nothing lies beyond the page in its direction; last is
 * the stream's last version or the log's last position. Free with
 * wb_page_free(). */
struct wb_page {
	struct wb_event *events;
	size_t count;
	uint64_t next;
	bool end;
	uint64_t last;
	void *priv_;
};

/* Reads up to max_count events of stream from from_version (inclusive).
 * max_count 0 asks for the server's limit. */
int wb_read_stream(struct wb_client *c, const char *stream, uint64_t from_version, bool backwards,
                   uint32_t max_count, struct wb_page *out);

/* Reads $all from from_position (inclusive), optionally filtered by stream
 * prefix (NULL or "" for none) and by event types (types[0..ntypes)). */
int wb_read_all(struct wb_client *c, uint64_t from_position, bool backwards, uint32_t max_count,
                const char *stream_prefix, const char *const *types, size_t ntypes,
                struct wb_page *out);

/* Frees what a read put into page; the page may be reused. */
void wb_page_free(struct wb_page *page);

/* A stream's metadata; 0 in a field means "not set". */
struct wb_stream_metadata {
	/* Only the last max_count events are readable. */
	uint64_t max_count;
	/* Only events younger than this are readable. */
	uint64_t max_age_ms;
	/* Events below this version are not readable. */
	uint64_t truncate_before;
};

struct wb_stream_info {
	uint64_t last_version;
	uint64_t event_count;
	uint64_t first_position;
	uint64_t last_position;
	uint64_t created_us;
	uint64_t updated_us;
	/* Soft-deleted and not written since (reads answer NOT_FOUND). */
	bool deleted;
	/* Hard-deleted: STREAM_DELETED from now on. */
	bool tombstoned;
	struct wb_stream_metadata metadata;
};

int wb_stream_info(struct wb_client *c, const char *stream, struct wb_stream_info *out);

/* Asks the server for its figures (GetStats). On success *out receives the
 * unpacked ServerStats message, which the caller owns and frees with
 * wb_stats_free(); every field of the proto's ServerStats is there, including
 * the group-commit figures batches, batch_requests, batch_events and
 * commit_us_total. */
int wb_stats(struct wb_client *c, Whizbang__V1__ServerStats **out);

/* Frees what wb_stats() returned. NULL is allowed. */
void wb_stats_free(Whizbang__V1__ServerStats *stats);

/* Pipelining. wb_send() gives req a fresh id (written to req->id and *id)
 * and queues its frame; wb_flush() writes everything queued; wb_recv() flushes
 * and then blocks for the next response, in whatever order the server
 * answers. *out is freed by the caller with
 * whizbang__v1__response__free_unpacked(*out, NULL). Do not mix pipelined
 * requests with the blocking calls above while responses are outstanding.
 *
 * wb_recv() first hands out responses that the client queued while another
 * call waited (oldest first), then reads the socket. It never returns a
 * subscription push (a SubscriptionItem, or an error for a subscription
 * started with wb_subscribe() or wb_join_consumer()): those stay queued for
 * wb_next_item(). */
int wb_send(struct wb_client *c, Whizbang__V1__Request *req, uint64_t *id);
int wb_flush(struct wb_client *c);
int wb_recv(struct wb_client *c, Whizbang__V1__Response **out);

/* Queues an AppendEvents like wb_append() does, without waiting. */
int wb_append_send(struct wb_client *c, const char *stream, enum wb_expected expected,
                   uint64_t expected_version, const struct wb_new_event *events, size_t n,
                   uint64_t *id);

/* ---------------------------------------------------------------- leases and the ledger
 *
 * DESIGN.md section 6. A sequence is leased before slow work, then
 * committed, staged, extended or released with the fencing token the lease
 * came with. The server's errors for these calls: LEASE_EXPIRED (the lease
 * ran out; the sequence is now a gap or was recovered from staged work),
 * LEASE_TOKEN_MISMATCH (another token holds the sequence), LEASE_NOT_FOUND
 * (never handed out, or already committed or released), RESOURCE_EXHAUSTED
 * (--max-leases, --max-leases-per-connection, or an extend past
 * --lease-max-lifetime) and BAD_REQUEST (a count above the server's
 * --max-lease-count). Each comes with the server's sentence in wb_errmsg(). */

/* The projection names and operation ids a lease carries: at most this many
 * bytes. */
#define WB_LEASE_NAME_MAX 255u

struct wb_lease_args {
	/* 1..WB_LEASE_NAME_MAX bytes of UTF-8. */
	const char *projection;
	/* 0: adaptive (twice the projection's recent lease-to-commit time). The
	 * server caps it at its --lease-max. */
	uint64_t duration_ms;
	/* Consecutive sequences to lease; 0 asks for one. */
	uint32_t count;
	/* NULL or 0..WB_LEASE_NAME_MAX bytes, recorded in the ledger entry. */
	const char *operation_id;
	uint64_t source_position;
	/* true: the server releases the lease when this connection closes;
	 * false (KEEP): it runs to expiry and may be committed from another
	 * connection with its token. */
	bool release_on_disconnect;
};

struct wb_lease_grant {
	uint64_t sequence;
	/* The fencing token every later call on the lease must carry. */
	uint64_t token;
	/* Wall clock, milliseconds since the Unix epoch. */
	uint64_t expires_at_ms;
	/* The duration granted (the asked one after the server's cap, or the
	 * adaptive one). */
	uint64_t duration_ms;
};

/* Leases args->count consecutive sequences (one when count is 0). On success
 * out[0..*n) receives the grants in ascending sequence order. max_out must
 * hold the count (WB_E_INVAL otherwise, before anything is sent). Keeps no
 * reference to args. */
int wb_lease(struct wb_client *c, const struct wb_lease_args *args, struct wb_lease_grant *out,
             size_t max_out, size_t *n);

/* Renews the lease of seq to expire duration_ms from now (0: adaptive). On
 * success *expires_at_ms (may be NULL) receives the new expiry, wall clock
 * milliseconds. RESOURCE_EXHAUSTED when the lease would live past the
 * server's --lease-max-lifetime; the lease keeps its old expiry then. */
int wb_extend(struct wb_client *c, uint64_t seq, uint64_t token, uint64_t duration_ms,
              uint64_t *expires_at_ms);

/* Gives up the lease of seq: the sequence becomes a gap (released) in the
 * ledger. reason may be NULL. Answers once the gap is durable. */
int wb_release(struct wb_client *c, uint64_t seq, uint64_t token, const char *reason);

/* An operator's release of a lease it does not hold (a stuck worker's): as
 * wb_release() without the token; needs admin:clients as well as
 * projections:lease on the lease's projection. */
int wb_release_force(struct wb_client *c, uint64_t seq, const char *reason);

/* Stores ops durably as the lease's staged work: should the lease expire
 * before a commit, the server commits them at seq (recovered: staged).
 * Staging again replaces them. ops may be NULL (no ops). Keeps no reference
 * to ops. */
int wb_stage(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops);

struct wb_commit_result {
	/* Where the ops were committed: seq, or a new sequence when the lease
	 * had expired and resequence was asked. */
	uint64_t sequence;
	bool resequenced;
	/* When resequenced: the expired lease's sequence. */
	uint64_t original_sequence;
	/* The watermark when the server answered. */
	uint64_t watermark;
};

/* Commits ops (NULL: none) at seq. applied false answers once the entry is
 * durable, even while a lower sequence is still leased; applied true
 * answers once the watermark has passed it, which waits for every lower
 * lease to end and is bounded only by the client's timeout. After expiry
 * the server answers LEASE_EXPIRED, unless resequence is true: then it
 * commits the ops at a new sequence and records seq as the original. *out
 * (may be NULL) is written on success. Keeps no reference to ops.
 *
 * With applied true, a commit whose ops failed to apply (a where clause
 * refused with QUERY_TOO_EXPENSIVE, say) is still a success of this call:
 * the entry is final and none of its ops took effect. wb_commit() does not
 * say so; wb_commit_full() does. */
int wb_commit(struct wb_client *c, uint64_t seq, uint64_t token, const Whizbang__V1__OpList *ops,
              bool applied, bool resequence, struct wb_commit_result *out);

/* wb_commit() answering the whole CommitResult: besides the fields of
 * struct wb_commit_result, with applied true the outcome of applying the
 * ops: apply_error (OK, or the code that made the whole commit a no-op),
 * apply_error_message, failed_op (1-based) and results, one OpResult per op
 * (entities affected; for where clauses matched, created, the strategy,
 * plan, candidates examined and time). The result of a durable commit
 * carries no outcome. On success *out receives the unpacked message, which
 * the caller owns and frees with wb_commit_result_free(); errors as for
 * wb_commit(), and *out is then untouched. */
int wb_commit_full(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence,
                   Whizbang__V1__CommitResult **out);

/* Frees what wb_commit_full() returned. NULL is allowed. */
void wb_commit_result_free(Whizbang__V1__CommitResult *res);

/* Reads ledger entries from sequence from (inclusive), at most max_count
 * (0: the server's limit), never past the watermark. On success *out
 * receives the unpacked ReadLedgerResult (entries, next_sequence to continue
 * from, watermark, end), which the caller owns and frees with
 * wb_ledger_free(). */
int wb_read_ledger(struct wb_client *c, uint64_t from, uint32_t max_count,
                   Whizbang__V1__ReadLedgerResult **out);

/* Frees what wb_read_ledger() returned. NULL is allowed. */
void wb_ledger_free(Whizbang__V1__ReadLedgerResult *res);

/* The watermark (every sequence up to it is final and applied) and the next
 * sequence a lease would get. Either pointer may be NULL. */
int wb_watermark(struct wb_client *c, uint64_t *watermark, uint64_t *next_seq);

/* Waits until the watermark reaches seq or timeout_ms passes (the server
 * caps the wait at one hour; 0 answers at once). *reached tells which;
 * neither outcome is an error. For this call the client waits for the
 * answer max(its timeout, timeout_ms + 5 s), so that a long wait does not
 * end in WB_E_TIMEOUT (a client without a timeout still waits forever).
 * Either pointer may be NULL. */
int wb_wait_watermark(struct wb_client *c, uint64_t seq, uint64_t timeout_ms, uint64_t *watermark,
                      bool *reached);

/* Queues a Lease or a Commit like wb_lease() and wb_commit() do, without
 * waiting; the answers (a LeaseResult, a CommitResult or an error) come
 * through wb_recv(). *id (may be NULL) receives the request id. */
int wb_lease_send(struct wb_client *c, const struct wb_lease_args *args, uint64_t *id);
int wb_commit_send(struct wb_client *c, uint64_t seq, uint64_t token,
                   const Whizbang__V1__OpList *ops, bool applied, bool resequence, uint64_t *id);

/* ---------------------------------------------------------------- entities, queries, indexes
 *
 * DESIGN.md section 7: the read models the server builds from the ledger.
 * Every call below reads or changes them on the server; each answers an
 * unpacked protobuf message that the caller owns and frees with the free
 * function named, and writes *out only on success. Entity types and field
 * names are 1..255 bytes; entity ids and cursors at most 255 bytes (the
 * front coding of stored id lists gives a length one byte); a longer one is
 * refused with WB_E_INVAL before anything is sent. Where clauses are
 * passed as a tree (build it with optext_parse_where() or by hand) with,
 * optionally, the text it was written as, which the server keeps for
 * people; a text without a tree is WB_E_INVAL. The calls keep no reference
 * to their arguments. */

/* Reads one entity: its fields (sorted by name), version, and the sequences
 * that created and last changed it. NOT_FOUND (the server's code and
 * message) when the type has no entity with that id. Free with
 * wb_entity_free(). */
int wb_get_entity(struct wb_client *c, const char *type, const char *id,
                  Whizbang__V1__Entity **out);

/* Frees what wb_get_entity() returned. NULL is allowed. */
void wb_entity_free(Whizbang__V1__Entity *e);

/* Reads the entities of type that where matches (NULL: every entity of the
 * type; with where_text too, the text is for people), or where_text matches
 * when where is NULL (the server parses it: INVALID_EXPRESSION naming the
 * column on a mistake), ordered by id, only ids after the cursor after (exclusive; NULL or
 * "" from the start), at most limit of them (0 or above the server's
 * limit: the server's limit). The QueryResult holds the entities, the
 * cursor next_after that continues the read (meaningless once end is set),
 * the plan the server used (strategy, plan text, candidates examined) and
 * the watermark of the snapshot it read. An unindexed clause over more
 * entities than the server's --max-scan, an index plan over more than its
 * --max-candidates index entries, or a clause over its --max-where-*
 * size limits answers QUERY_TOO_EXPENSIVE; a clause the server cannot
 * evaluate INVALID_EXPRESSION. Free with wb_query_free(). */
int wb_query(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
             const char *where_text, const char *after, uint32_t limit,
             Whizbang__V1__QueryResult **out);

/* Frees what wb_query() returned. NULL is allowed. */
void wb_query_free(Whizbang__V1__QueryResult *res);

/* Creates a secondary index on field of type. Index changes go through the
 * ledger at a sequence of their own, so this answers once the index is
 * built and the watermark has passed it, which waits for every lower lease
 * to end and is bounded only by the client's timeout. The IndexResult
 * holds the index (entries, created_sequence) and the sequence. BAD_REQUEST
 * when the index exists already. Free with wb_index_result_free(). */
int wb_create_index(struct wb_client *c, const char *type, const char *field,
                    Whizbang__V1__IndexResult **out);

/* Drops the index on field of type, through the ledger like
 * wb_create_index(). NOT_FOUND when there is no such index. Free with
 * wb_index_result_free(). */
int wb_drop_index(struct wb_client *c, const char *type, const char *field,
                  Whizbang__V1__IndexResult **out);

/* Frees what wb_create_index() and wb_drop_index() returned. NULL is
 * allowed. */
void wb_index_result_free(Whizbang__V1__IndexResult *res);

/* Lists the indexes of type, or of every type when type is NULL or "".
 * Free with wb_index_list_free(). */
int wb_list_indexes(struct wb_client *c, const char *type, Whizbang__V1__IndexList **out);

/* Frees what wb_list_indexes() returned. NULL is allowed. */
void wb_index_list_free(Whizbang__V1__IndexList *list);

/* Asks how the server would evaluate where (NULL: every entity; or, when
 * where is NULL and where_text is not, that text, which the server parses)
 * over type,
 * without reading any entity: the strategy, the plan as indented text with
 * the estimate of each step, the candidates it expects to examine, the
 * entities of the type, and whether the clause would be refused as a scan
 * over more than max_scan entities or an index plan over more than
 * max_candidates index entries that cannot be scanned instead (the server
 * counts them, so estimated_candidates of an index plan is exact within
 * the budget). A
 * refused plan is an answer, not an error; a clause over the server's
 * --max-where-* size limits is QUERY_TOO_EXPENSIVE. Free with wb_plan_free(). */
int wb_explain(struct wb_client *c, const char *type, const Whizbang__V1__Expr *where,
               const char *where_text, Whizbang__V1__PlanResult **out);

/* Frees what wb_explain() returned. NULL is allowed. */
void wb_plan_free(Whizbang__V1__PlanResult *plan);

/* Has the server rebuild the read models from the ledger alone into scratch
 * space and compare a digest of them with the live state. This can take
 * seconds or more on a large ledger: the client's timeout applies as to any
 * call (WB_E_TIMEOUT leaves the client unusable; connect with a timeout
 * that fits, or 0). A mismatch is an answer (match false, the first
 * difference), not an error. Free with wb_verify_free(). */
int wb_verify(struct wb_client *c, Whizbang__V1__VerifyResult **out);

/* Frees what wb_verify() returned. NULL is allowed. */
void wb_verify_free(Whizbang__V1__VerifyResult *res);

/* ---------------------------------------------------------------- subscriptions
 *
 * DESIGN.md section 5 and docs/SUBSCRIPTIONS.md. A subscription's items are
 * pushed by the server as Responses tagged with the id of the request that
 * started it, never more than the credits granted. Pushes break "the next
 * response is the answer to my call": while any call waits for its answer,
 * the client keeps every other response that arrives (pushes, and answers
 * to other ids) in one bounded FIFO queue, and wb_next_item() hands the
 * pushes out in the order they arrived.
 *
 * The bound (wb_options.max_queued and max_queued_bytes): a response that
 * would take the queue past it fails the call that read it with
 * RESOURCE_EXHAUSTED and a message naming the bound, and leaves the client
 * unusable (a push was lost, so the subscription's order can no longer be
 * kept). The server never pushes more than the credits granted, so a
 * client that keeps its outstanding credits below the bound never meets it.
 *
 * A subscription ends when the server answers its request id with an error
 * (a consumer group deleted, a hard-deleted stream): wb_next_item() returns
 * that error once, in its place among the pushes, with the server's message;
 * the client stays usable. */

enum wb_target {
	WB_TARGET_ALL = 0,
	WB_TARGET_STREAM = 1,
	WB_TARGET_LEDGER = 2,
};

enum wb_from {
	WB_FROM_START = 0,
	/* Only what commits after the subscription starts. */
	WB_FROM_END = 1,
	/* From position (inclusive): a $all position, a stream version or a
	 * ledger sequence. */
	WB_FROM_POSITION = 2,
};

struct wb_subscribe_args {
	enum wb_target target;
	/* WB_TARGET_STREAM: the stream (1..255 bytes); otherwise ignored. */
	const char *stream;
	enum wb_from from;
	/* Read only with WB_FROM_POSITION. */
	uint64_t position;
	/* WB_TARGET_ALL filters: NULL or "" for no prefix; types[0..ntypes). */
	const char *stream_prefix;
	const char *const *types;
	size_t ntypes;
	/* Items the server may push before the first wb_credit(). */
	uint32_t credits;
};

/* Starts a catch-up subscription and returns once the server has answered
 * with its SubscribeResult: *subscription (written only on success)
 * receives the id that wb_credit() and wb_unsubscribe() take; *start (may
 * be NULL) the first position, version or sequence it will deliver. Items
 * then arrive through wb_next_item(). Keeps no reference to args. Pushes of
 * this subscription that arrive while any other call waits are queued (see
 * the bound above). */
int wb_subscribe(struct wb_client *c, const struct wb_subscribe_args *args, uint64_t *subscription);

/* As wb_subscribe(), also answering the SubscribeResult's start. */
int wb_subscribe_start(struct wb_client *c, const struct wb_subscribe_args *args,
                       uint64_t *subscription, uint64_t *start);

/* Returns the next push of any subscription on c (wb_subscribe() or
 * wb_join_consumer()): the oldest queued one, else the next to arrive
 * within timeout_ms (negative: wait forever; 0: only what has already
 * arrived). On success *item receives the item (an event, a ledger entry,
 * or caught_up; for consumer members, delivery says how many times the
 * event has been delivered), which the caller owns and frees with
 * wb_item_free(). WB_E_TIMEOUT when none arrived in time: unlike the other
 * calls this leaves the client usable, and *item untouched. When the
 * server ended a subscription, its error code is returned with the
 * server's message and that subscription is forgotten. Other responses read
 * meanwhile are queued for wb_recv(). */
int wb_next_item(struct wb_client *c, int timeout_ms, Whizbang__V1__SubscriptionItem **item);

/* Frees what wb_next_item() returned. NULL is allowed. */
void wb_item_free(Whizbang__V1__SubscriptionItem *item);

/* The number of responses the client has queued now (pushes and others). */
size_t wb_queued(const struct wb_client *c);

/* Grants subscription n more items. The server answers with the credits the
 * subscription has now, which go to *credits (may be NULL). NOT_FOUND when
 * the connection has no such subscription (ended, or never started). */
int wb_credit_n(struct wb_client *c, uint64_t subscription, uint32_t n, uint64_t *credits);

/* wb_credit_n() without the answer's figure. */
int wb_credit(struct wb_client *c, uint64_t subscription, uint32_t n);

/* Ends subscription (a catch-up subscription or a consumer membership). The
 * server pushes nothing of it after its answer. Pushes of it that arrived
 * before the answer and are still queued are DROPPED: once this returns 0,
 * wb_next_item() returns nothing more of the subscription. A consumer
 * member's unacked events go back to the group (redelivered after the ack
 * timeout). */
int wb_unsubscribe(struct wb_client *c, uint64_t subscription);

/* ---------------------------------------------------------------- durable consumers
 *
 * Named consumer groups with a durable checkpoint. Names are 1..255 bytes.
 * Event ids are 16 bytes each. The calls keep no reference to their
 * arguments. */

struct wb_consumer_args {
	const char *name;
	/* WB_TARGET_ALL or WB_TARGET_STREAM. */
	enum wb_target target;
	const char *stream;
	const char *stream_prefix;
	const char *const *types;
	size_t ntypes;
	enum wb_from from;
	uint64_t position;
	/* 0: the server's default (30 s). */
	uint64_t ack_timeout_ms;
	/* 0: the server's default (10). After this many deliveries without an
	 * ack the event is parked. */
	uint32_t max_deliveries;
};

/* Creates a consumer group. On success *out (may be NULL; then nothing is
 * returned) receives the new group's ConsumerInfo, which the caller frees
 * with wb_consumer_info_free(). BAD_REQUEST when the name is taken. */
int wb_create_consumer(struct wb_client *c, const struct wb_consumer_args *args,
                       Whizbang__V1__ConsumerInfo **out);

/* Frees what wb_create_consumer() returned. NULL is allowed. */
void wb_consumer_info_free(Whizbang__V1__ConsumerInfo *info);

/* Deletes a group, its checkpoint and its parked events; its members'
 * subscriptions end. NOT_FOUND when there is none by that name. */
int wb_delete_consumer(struct wb_client *c, const char *name);

/* Lists every group with its figures. Free *out with
 * wb_consumer_list_free(). */
int wb_list_consumers(struct wb_client *c, Whizbang__V1__ConsumerList **out);

/* Frees what wb_list_consumers() returned. NULL is allowed. */
void wb_consumer_list_free(Whizbang__V1__ConsumerList *list);

/* Joins group name as a competing member with credits initial credits. On
 * success *subscription receives the membership's id for wb_credit() and
 * wb_unsubscribe(); events arrive through wb_next_item() with their
 * delivery count, each to be acked or nacked. */
int wb_join_consumer(struct wb_client *c, const char *name, uint32_t credits,
                     uint64_t *subscription);

/* Acks ids[0..n) of group name. *checkpoint (may be NULL) receives the
 * group's checkpoint after the ack. */
int wb_ack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
           uint64_t *checkpoint);

enum wb_nack_action {
	/* Deliver again (to any member). */
	WB_NACK_RETRY = 0,
	/* Park: kept aside until wb_replay_parked(). */
	WB_NACK_PARK = 1,
	/* Give up on the event: it counts as handled. */
	WB_NACK_SKIP = 2,
};

/* Nacks ids[0..n) of group name with action; reason (may be NULL) is kept
 * with a parked event. *checkpoint (may be NULL) as for wb_ack(). */
int wb_nack(struct wb_client *c, const char *name, const uint8_t (*ids)[16], size_t n,
            enum wb_nack_action action, const char *reason, uint64_t *checkpoint);

/* Lists the parked events of group name from $all position from_position,
 * at most max_count (0: the server's limit). Free *out with
 * wb_parked_free(); next_position continues the list until end. */
int wb_list_parked(struct wb_client *c, const char *name, uint64_t from_position,
                   uint32_t max_count, Whizbang__V1__ParkedList **out);

/* Frees what wb_list_parked() returned. NULL is allowed. */
void wb_parked_free(Whizbang__V1__ParkedList *list);

/* Hands every parked event of group name back for delivery. *replayed (may
 * be NULL) receives how many. */
int wb_replay_parked(struct wb_client *c, const char *name, uint64_t *replayed);

/* ---------------------------------------------------------------- stream life cycle */

/* Sets stream's metadata (every field; 0 clears one). Reads honour it at
 * once; scavenge removes what it hides. */
int wb_set_stream_metadata(struct wb_client *c, const char *stream,
                           const struct wb_stream_metadata *md);

/* Reads stream's metadata into *out (written only on success). */
int wb_get_stream_metadata(struct wb_client *c, const char *stream, struct wb_stream_metadata *out);

/* Deletes stream: soft (hard false: the events are hidden, the stream may
 * be written again and its versions continue) or hard (permanent:
 * STREAM_DELETED on later appends and reads). *last_version (may be NULL)
 * receives the last version the stream had. */
int wb_delete_stream(struct wb_client *c, const char *stream, bool hard, uint64_t *last_version);

struct wb_scavenge_result {
	uint64_t events_examined;
	uint64_t events_removed;
	uint64_t bytes_reclaimed;
	uint64_t micros;
	/* Progress: the $all position reached, of last_position. */
	uint64_t position;
	uint64_t last_position;
};

/* Called by wb_scavenge() for each progress report, from within the call,
 * with the figures so far. */
typedef void (*wb_scavenge_cb)(void *arg, const struct wb_scavenge_result *progress);

/* Has the server remove the events that metadata and deletes made
 * unreadable, and waits until it has. The server works in bounded chunks
 * and reports progress; cb (may be NULL) is called with each report, before
 * this returns, never after. The client's timeout applies between two
 * reports, not to the whole scavenge. *out (may be NULL) receives the final
 * figures. */
int wb_scavenge(struct wb_client *c, wb_scavenge_cb cb, void *arg, struct wb_scavenge_result *out);

/* ---------------------------------------------------------------- backup */

/* The longest backup path a wb_backup_result holds (longer ones are cut). */
#define WB_BACKUP_PATH_MAX 4096

struct wb_backup_result {
	/* The backup's directory on the server's machine (it holds data.mdb),
	 * as the server resolved it. */
	char path[WB_BACKUP_PATH_MAX];
	uint64_t bytes;  /* bytes of the copy's data.mdb written so far */
	uint64_t micros; /* time since the server took the request */
	/* The ledger watermark and the last $all position the copy holds at
	 * least (the copy may hold more: what committed meanwhile). */
	uint64_t watermark;
	uint64_t last_position;
};

/* Called by wb_backup() for each progress report, from within the call. */
typedef void (*wb_backup_cb)(void *arg, const struct wb_backup_result *progress);

/* Has the server copy the whole store, consistent and compacted, into a new
 * directory in its backup-dir (the one directory its operator named for
 * backups), while it keeps serving. path names that directory: a NAME (1 to
 * 255 bytes, no '/', not "." or ".."), or BACKUP_DIR/NAME with the server's
 * backup-dir spelled out; the server creates it (mode 0700) and writes
 * data.mdb (mode 0600) into it, and never overwrites anything. An admin
 * call (the admin:backup action). cb (may be NULL) is called with each progress
 * report before this returns, never after. The client's timeout applies
 * between two reports, not to the whole copy. *out (may be NULL) receives
 * the final figures and the backup's full path. BAD_REQUEST, with the
 * reason in wb_errmsg(), when Backup is off on the server (no backup-dir),
 * for a path that names anything but a new directory in backup-dir, and
 * when that directory exists; RESOURCE_EXHAUSTED when a Backup is already
 * running or the disk has no room for the copy. */
int wb_backup(struct wb_client *c, const char *path, wb_backup_cb cb, void *arg,
              struct wb_backup_result *out);

/* ---------------------------------------------------------------- users, roles and tokens
 *
 * The server's accounts (docs/PROTOCOL.md §4.13), each change durable before
 * its answer and in effect at once on every open connection. Every call
 * here needs the permission admin:users (PERMISSION_DENIED without it;
 * UNAUTHENTICATED on a connection without a role). The calls keep no
 * reference to their arguments. */

/* The iteration count wb_put_user() derives a password's credential with
 * when given 0. The server refuses fewer than its --scram-iterations. */
#define WB_SCRAM_ITERATIONS_DEFAULT 100000u
/* The bounds of that count. */
#define WB_SCRAM_ITERATIONS_MIN 4096u
#define WB_SCRAM_ITERATIONS_MAX 10000000u
/* The most roles one user holds. */
#define WB_USER_ROLES_MAX 16u

/* Creates or replaces user name with roles[0..nroles) (every one must
 * exist: NOT_FOUND names the first that does not). With a password (1 to
 * 1024 bytes of UTF-8 without control characters), the library derives the
 * SCRAM-SHA-256 credential here, with a random salt and iterations rounds
 * of PBKDF2 (0: WB_SCRAM_ITERATIONS_DEFAULT), on the calling thread before
 * the timeout starts, and sends only that: the password never reaches the
 * server. password NULL keeps the user's current credential (a new user
 * then has none, and cannot log in with a password). BAD_REQUEST for a name
 * the server refuses or a count below its --scram-iterations;
 * RESOURCE_EXHAUSTED past its 10000 users. WB_E_INVAL locally for a
 * password or count out of range. */
int wb_put_user(struct wb_client *c, const char *name, const char *const *roles, size_t nroles,
                const char *password, uint32_t iterations);

/* Deletes user name; its open connections lose its roles at once.
 * NOT_FOUND when there is no such user. */
int wb_delete_user(struct wb_client *c, const char *name);

/* Lists the users: name, roles and whether each has a password (never the
 * credential). Free *out with wb_user_list_free(). */
int wb_list_users(struct wb_client *c, Whizbang__V1__UserList **out);

/* Frees what wb_list_users() returned. NULL is allowed. */
void wb_user_list_free(Whizbang__V1__UserList *list);

/* Creates or replaces role name (1 to 64 letters, digits, '-', '_' or '.';
 * not a built-in role) with grants[0..ngrants) in their text form,
 * "[deny ]KIND:PERM[,PERM...]:PREFIX" (at most 64). BAD_REQUEST names the
 * grant that does not parse, or says the name is refused. */
int wb_put_role(struct wb_client *c, const char *name, const char *const *grants, size_t ngrants);

/* Deletes role name. NOT_FOUND when there is none; BAD_REQUEST for a
 * built-in role, or one that a user or an unrevoked token still holds. */
int wb_delete_role(struct wb_client *c, const char *name);

/* Lists the roles, the built-in ones first (builtin true), with their
 * grants as text. Free *out with wb_role_list_free(). */
int wb_list_roles(struct wb_client *c, Whizbang__V1__RoleList **out);

/* Frees what wb_list_roles() returned. NULL is allowed. */
void wb_role_list_free(Whizbang__V1__RoleList *list);

/* Makes an API token for role, valid ttl_ms from now (0: 90 days; at most
 * ten years), with description (NULL or at most 255 bytes) for
 * wb_list_tokens(). On success *out receives the CreateTokenResult: token
 * (the secret; the server keeps only its hash, so this is its only copy),
 * id (for wb_revoke_token()) and expires_ms. Free it with
 * wb_token_result_free(), which wipes the token first. NOT_FOUND for an
 * unknown role. */
int wb_create_token(struct wb_client *c, const char *role, uint64_t ttl_ms, const char *description,
                    Whizbang__V1__CreateTokenResult **out);

/* Wipes the token in res and frees it. NULL is allowed. */
void wb_token_result_free(Whizbang__V1__CreateTokenResult *res);

/* Revokes the token whose id is id; connections that use it lose its role
 * at once. Revoking twice succeeds. NOT_FOUND when there is no such token. */
int wb_revoke_token(struct wb_client *c, const char *id);

/* Lists the tokens (revoked and expired ones too): id, role, description,
 * created_ms, expires_ms, revoked; never a secret. Free *out with
 * wb_token_list_free(). */
int wb_list_tokens(struct wb_client *c, Whizbang__V1__TokenList **out);

/* Frees what wb_list_tokens() returned. NULL is allowed. */
void wb_token_list_free(Whizbang__V1__TokenList *list);

/* Lists the server's open connections (admin:clients): for each its id,
 * peer, client name, user and roles, TLS or Unix socket, age and idle time,
 * requests and bytes, buffers, work in flight, subscriptions, leases and
 * consumer memberships, and whether it is this one (self). Free *out with
 * wb_client_list_free(). */
int wb_list_clients(struct wb_client *c, Whizbang__V1__ClientList **out);

/* Frees what wb_list_clients() returned. NULL is allowed. */
void wb_client_list_free(Whizbang__V1__ClientList *list);

/* Closes the server's connection id (admin:clients; ids from
 * wb_list_clients()): it gets a last error naming this connection, then
 * closes. WB_NOT_FOUND when no such connection is open. */
int wb_disconnect(struct wb_client *c, uint64_t id);

/* Asks the server to load its TLS certificate, key and CA files again (as
 * SIGHUP does; admin:reload). *tls (when not NULL) says whether it serves a
 * certificate, *tls_not_after (when not NULL) its expiry in seconds since
 * the Unix epoch (0 without TLS). WB_INTERNAL with the reason when the
 * files do not load (the server keeps serving the previous ones). */
int wb_reload(struct wb_client *c, bool *tls, int64_t *tls_not_after);

/* Parses a UUID in its 36-character text form into out[16]: 0 or
 * WB_E_INVAL. Only the canonical form is accepted: lower-case hex digits in
 * groups of 8-4-4-4-12 separated by '-'. out is written only on success. */
int wb_uuid_parse(const char *text, uint8_t out[16]);

/* Formats id as 36 characters and a NUL into out. */
void wb_uuid_format(const uint8_t id[16], char out[37]);

#endif
