/* whizbangd: parse options, open the server, run the loop until SIGTERM or
 * SIGINT has shut it down, exit 0. `whizbangd replay` rebuilds or verifies
 * the read models of a stopped server's data directory; `whizbangd check`
 * verifies the whole store. Both open it as a start would (srv_open_store():
 * the checkpoint restored and the log replayed). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "config.h"
#include "log.h"
#include "wal.h"
#include "writer.h"
#include "replay.h"
#include "server.h"
#include "storage.h"

static void progress_cb(uint64_t done, uint64_t total, void *arg)
{
	(void)arg;
	fprintf(stderr, "\rreplayed %llu / %llu entries (%3.0f%%)", (unsigned long long)done,
	        (unsigned long long)total,
	        total > 0 ? 100.0 * (double)done / (double)total : 100.0);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* Opens the stopped store in dir as a start would; prints why not. */
static int open_stopped(const char *tool, const char *dir, struct storage **st, struct wal **wal)
{
	char probe[4096];
	snprintf(probe, sizeof(probe), "%s/data.mdb", dir);
	if (access(probe, R_OK | W_OK) != 0) {
		fprintf(stderr, "whizbangd %s: %s holds no store (no data.mdb)\n", tool, dir);
		return 1;
	}
	struct srv_config cfg;
	config_defaults(&cfg);
	snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", dir);
	/* The mode the store last ran in; a log-mode store keeps its log. */
	snprintf(probe, sizeof(probe), "%s/checkpoint", dir);
	snprintf(cfg.durability, sizeof(cfg.durability), "%s",
	         access(probe, F_OK) == 0 ? "log" : "sync");
	char err[1024] = "";
	if (srv_open_store(&cfg, st, wal, err, sizeof(err)) != 0) {
		fprintf(stderr, "whizbangd %s: %s\n", tool, err);
		return 1;
	}
	return 0;
}

/* Makes what the tool wrote durable (a checkpoint in log mode) and closes. */
static int close_stopped(const char *tool, struct storage *st, struct wal *wal)
{
	int rc = 0;
	if (wal != NULL) {
		char err[512] = "";
		rc = writer_checkpoint_now(st, wal, err, sizeof(err));
		if (rc != 0)
			fprintf(stderr, "whizbangd %s: %s\n", tool, err);
		wal_close(wal);
	}
	storage_close(st);
	return rc;
}

static const char replay_usage[] =
        "usage: whizbangd replay --data-dir DIR [--verify]\n"
        "  Rebuilds every entity and index of DIR from its ledger alone, applying the\n"
        "  recorded id lists without evaluating a where clause. The server must be\n"
        "  stopped. With --verify, rebuilds into a scratch store inside DIR instead,\n"
        "  compares its digest with the live read models, and exits 1 naming the\n"
        "  first record that differs.\n";

/* whizbangd replay: exit 0 done (or verified equal), 1 a difference or a
 * failure, 2 bad usage. */
static int replay_main(int argc, char **argv)
{
	const char *dir = NULL;
	bool verify = false;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strncmp(argv[i], "--data-dir=", 11) == 0) {
			dir = argv[i] + 11;
		} else if (strcmp(argv[i], "--verify") == 0) {
			verify = true;
		} else if (strcmp(argv[i], "--help") == 0) {
			fputs(replay_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "whizbangd replay: unknown argument %s\n%s", argv[i],
			        replay_usage);
			return 2;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "whizbangd replay: --data-dir is required\n%s", replay_usage);
		return 2;
	}
	struct storage *st;
	struct wal *wal;
	char err[512] = "";
	if (open_stopped("replay", dir, &st, &wal) != 0)
		return 1;
	/* Evaluation happens only for entries never applied; no scan or
	 * candidate limit then, as the live server had none for them either. */
	struct proj_config pcfg = {.max_scan = UINT64_MAX, .max_candidates = UINT64_MAX};
	bool tty = isatty(STDERR_FILENO);
	int rc, status = 0;
	if (!verify) {
		struct proj_replay_stats rs;
		rc = proj_replay(st, st, &pcfg, tty ? progress_cb : NULL, NULL, &rs, err,
		                 sizeof(err));
		if (rc == 0)
			printf("replayed %llu entries (%llu ops, %llu recorded failures skipped) "
			       "up "
			       "to watermark %llu in %.3f s\n",
			       (unsigned long long)rs.entries, (unsigned long long)rs.ops,
			       (unsigned long long)rs.failed, (unsigned long long)rs.watermark,
			       (double)rs.micros / 1e6);
	} else {
		char scratch[4200];
		snprintf(scratch, sizeof(scratch), "%s/.verify-replay-%ld", dir, (long)getpid());
		struct proj_verify_result vr;
		rc = proj_verify(st, scratch, &pcfg, tty ? progress_cb : NULL, NULL, &vr, err,
		                 sizeof(err));
		if (rc == 0) {
			char a[2 * PROJ_DIGEST_LEN + 1], b[2 * PROJ_DIGEST_LEN + 1];
			hex(vr.live_digest, PROJ_DIGEST_LEN, a);
			hex(vr.replay_digest, PROJ_DIGEST_LEN, b);
			printf("live   %s (%llu entities)\nreplay %s (%llu entries up to watermark "
			       "%llu)\n",
			       a, (unsigned long long)vr.entities, b,
			       (unsigned long long)vr.replay.entries,
			       (unsigned long long)vr.replay.watermark);
			if (vr.match) {
				printf("match\n");
			} else {
				printf("DIFFERENT: %s\n", vr.first_difference);
				status = 1;
			}
		}
	}
	if (close_stopped("replay", st, wal) != 0 && rc == 0)
		status = 1;
	if (rc != 0) {
		fprintf(stderr, "whizbangd replay: %s\n", err[0] != '\0' ? err : "failed");
		return 1;
	}
	return status;
}

static const char check_usage[] =
        "usage: whizbangd check --data-dir DIR\n"
        "  Verifies a stopped server's store: opens it as a start would (in log mode\n"
        "  every log record's CRC is checked and the records after the checkpoint are\n"
        "  replayed), then walks every table, checks that the event log and its\n"
        "  indexes agree and that stream versions have no holes, and that every\n"
        "  ledger sequence up to the watermark has one final entry. Exits 0 when\n"
        "  sound, 1 with a report of each problem, 2 on bad usage.\n";

static int check_main(int argc, char **argv)
{
	const char *dir = NULL;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else if (strcmp(argv[i], "--help") == 0) {
			fputs(check_usage, stdout);
			return 0;
		} else {
			fprintf(stderr, "whizbangd check: unknown argument %s\n%s", argv[i],
			        check_usage);
			return 2;
		}
	}
	if (dir == NULL) {
		fprintf(stderr, "whizbangd check: --data-dir is required\n%s", check_usage);
		return 2;
	}
	struct storage *st;
	struct wal *wal;
	if (open_stopped("check", dir, &st, &wal) != 0)
		return 1;
	uint64_t problems = srv_check(st, stdout);
	int status = close_stopped("check", st, wal) != 0 || problems > 0;
	if (problems > 0)
		printf("check: %llu problem%s found in %s\n", (unsigned long long)problems,
		       problems == 1 ? "" : "s", dir);
	else
		printf("check: %s is sound\n", dir);
	return status;
}

/* Prints each line of a newline-separated list of configuration errors. */
static void print_errors(const char *errmsg)
{
	const char *p = errmsg;
	while (*p != '\0') {
		size_t n = strcspn(p, "\n");
		fprintf(stderr, "whizbangd: %.*s\n", (int)n, p);
		p += n + (p[n] == '\n');
	}
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "replay") == 0)
		return replay_main(argc, argv);
	if (argc > 1 && strcmp(argv[1], "check") == 0)
		return check_main(argc, argv);

	struct srv_config cfg;
	char errmsg[8192];
	struct srv *srv;

	config_defaults(&cfg);
	int rc = config_parse_args(&cfg, argc, argv, errmsg, sizeof(errmsg));
	if (rc == 1)
		return 0;
	if (rc == 0)
		rc = config_validate(&cfg, errmsg, sizeof(errmsg));
	if (rc != 0) {
		print_errors(errmsg);
		return 2;
	}
	/* --check-config stops here: the data directory and the port are
	 * never opened. */
	if (cfg.check_config) {
		config_print(&cfg, stdout);
		return 0;
	}
	log_set_level((enum log_level)cfg.log_level);
	log_set_limit(cfg.log_rate, cfg.log_burst, cfg.log_summary_ms);
	signal(SIGPIPE, SIG_IGN);

	uv_loop_t *loop = uv_default_loop();
	if (srv_init(&srv, loop, &cfg, errmsg, sizeof(errmsg)) != 0) {
		srv_log(WB_LOG_ERROR, "startup_failed", "reason=\"%s\"", errmsg);
		return 1;
	}
	uv_run(loop, UV_RUN_DEFAULT);
	srv_close(srv);
	uv_loop_close(loop);
	srv_log(WB_LOG_INFO, "stopped", NULL);
	return 0;
}
