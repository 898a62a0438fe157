/* The power-cut harness: what its load driver (load.c), checker (check.c)
 * and orchestration (powercut.c) share.
 *
 * A traced run starts whizbangd with the interposer on an empty data
 * directory, drives a mixed load against it, records every
 * acknowledgement with the counter of recorded ops at the moment it
 * arrived (its stamp), and kills the server with SIGKILL while the load is
 * in flight. An acknowledgement with stamp S promises something about
 * every crash image at a point P >= S. */
#ifndef WB_PCUT_H
#define WB_PCUT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PCUT_APPENDERS 3
#define PCUT_STREAMS 6
#define PCUT_MAX_BATCH 3
#define PCUT_GROUP "pcut-group"
#define PCUT_PROJECTION "pcut"
#define PCUT_ENTITY "Order"

enum pcut_ack_kind {
	/* An append of thread/seq: n events at first..last, the stream's
	 * version after it in version. */
	PCUT_ACK_APPEND = 1,
	/* A lease granted sequence. */
	PCUT_ACK_LEASE = 2,
	/* A commit of sequence (its ops upsert entity o-SEQUENCE). */
	PCUT_ACK_COMMIT = 3,
	/* A release of sequence: a gap. */
	PCUT_ACK_RELEASE = 4,
	/* The consumer group was created. */
	PCUT_ACK_GROUP = 5,
	/* A consumer ack answered with checkpoint. */
	PCUT_ACK_CHECKPOINT = 6,
};

struct pcut_ack {
	uint64_t stamp;
	uint32_t kind;
	uint32_t thread, seq, n;
	uint64_t first, last, version;
	uint64_t sequence;
	uint64_t checkpoint;
};

/* What a traced run leaves behind besides its trace; saved in the run's
 * directory as "acks" so that an image can be checked again later. */
struct pcut_run {
	struct pcut_ack *acks; /* sorted by stamp */
	size_t nacks;
	uint32_t sent[PCUT_APPENDERS]; /* appends sent by each appender */
	uint64_t ops;                  /* records in the trace when it ended */
};

/* The events of append seq of appender thread: their count, ids, stream,
 * type and data, all derived from the two numbers. */
uint32_t pcut_batch_size(uint32_t thread, uint32_t seq);
void pcut_event_id(uint32_t thread, uint32_t seq, uint32_t i, uint8_t id[16]);
/* Reads back what pcut_event_id() wrote: false for an id it never makes. */
bool pcut_event_parse(const uint8_t id[16], uint32_t *thread, uint32_t *seq, uint32_t *i);
void pcut_event_stream(uint32_t thread, uint32_t seq, char *out, size_t len);
/* Writes the event's data into out (at least 4096 bytes) and returns its
 * length. */
size_t pcut_event_data(uint32_t thread, uint32_t seq, uint32_t i, char *out, size_t len);
#define PCUT_EVENT_TYPE "Pcut"

/* A whizbangd child process. */
struct pcut_server {
	pid_t pid;
	int port;
	char address[32];
	char port_file[512];
	char log_file[512];
};

/* Starts bin on data_dir (127.0.0.1 port 0, no metrics listener), with
 * extra flags (NULL-terminated, may be NULL) and, when env is not NULL,
 * that environment instead of the process's. The port file and log go
 * into scratch. Returns 0 once the server listens; 1 when it exited first
 * (*status: its wait status); -2 when it neither listened nor exited within
 * timeout_ms (it is then killed); -1 when it could not be started. The
 * reason of -1 and -2 is written into why. */
int pcut_server_start(struct pcut_server *s, const char *bin, const char *data_dir,
                      const char *scratch, const char *const *extra, char *const *env,
                      int timeout_ms, int *status, char *why, size_t whylen);

/* Sends sig and waits up to timeout_ms for the exit: its wait status, or -1
 * when the server did not exit (it is then killed with SIGKILL). */
int pcut_server_signal(struct pcut_server *s, int sig, int timeout_ms);

/* The last line of the server's log that is not empty, into out. */
void pcut_log_last(const char *log_file, char *out, size_t len);

int64_t pcut_now_ms(void);
void pcut_sleep_ms(int ms);

/* Runs one traced load in dir (data/, trace, counter are made there) and
 * fills run. Returns 0, or -1 with the reason in err (a harness failure). */
struct pcut_load_opts {
	const char *whizbangd;
	const char *interposer;
	const char *const *flags; /* extra server flags, NULL-terminated */
	/* NULL, or WB_PCUT_DROP_SYNC's value for the interposer ("1",
	 * "fsync"). */
	const char *drop_sync;
	uint64_t seed;
	int kill_min_ms, kill_max_ms;
};
int pcut_load_run(const struct pcut_load_opts *o, const char *dir, struct pcut_run *run, char *err,
                  size_t errlen);

/* Saves and loads run in dir/acks. */
int pcut_run_save(const struct pcut_run *run, const char *dir);
int pcut_run_load(struct pcut_run *run, const char *dir);
void pcut_run_free(struct pcut_run *run);

enum pcut_verdict {
	PCUT_OK = 0,
	/* The server refused to start with a clear message: allowed. */
	PCUT_REFUSED = 1,
	/* The image broke a promise: an acknowledged write missing, a hole,
	 * garbage, a crash, a hang, a failed verify. */
	PCUT_VIOLATION = 2,
	/* The harness itself failed (fork, disk). */
	PCUT_HARNESS = 3,
};

/* Checks the image in img at crash point point against run: starts
 * whizbangd on it (with flags) using scratch for its port file and log,
 * checks through libwhizbang, stops it, and runs `whizbangd replay
 * --verify`. The image is changed by the server. why receives what failed
 * (or the refusal message). */
enum pcut_verdict pcut_check_image(const char *whizbangd, const char *const *flags,
                                   const struct pcut_run *run, uint64_t point, const char *img,
                                   const char *scratch, char *why, size_t whylen);

#endif
