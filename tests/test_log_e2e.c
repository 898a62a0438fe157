/* Logs that cannot be flooded (issue 13) against a real whizbangd: one
 * client sends 20,000 five-byte frames that do not decode (80 a connection,
 * below the 100 that close one), the kind of flood
 * that once made the server write 285 MB of log, while another client pings
 * and appends. Each bad frame logs event=bad_frame once (dispatch.c), so
 * with the default limit (a burst of 20, then 10 a second) the log holds at
 * most 20 + 10 a second of them and summaries whose counts make up the
 * rest, exactly; GetStats says the same total; the other client is answered
 * throughout; and a summary appears after the flood stops, from the
 * server's timer, without another line of the event.
 *
 * Control: WB_LOG_E2E_UNLIMITED=1 starts the server with --log-rate 0 (no
 * limit), and the line-count assertion must then fail (tests/meson.build
 * registers that run as should_fail). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "e2e_util.h"
#include "frame.h"

TestSuite(log_e2e, .fini = e2e_suite_fini, .timeout = 120);

#define FRAMES 20000u
/* Frames sent on one connection before the other client is served, below
 * the 100 undecodable frames that close a connection (dispatch.h). */
#define CHUNK 80u
#define FRAME_LEN 5u
/* The server's defaults, which this test checks (server/config.c). */
#define BURST 20u
#define RATE 10u

static bool unlimited(void)
{
	const char *v = getenv("WB_LOG_E2E_UNLIMITED");
	return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static size_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

Test(log_e2e, a_flood_of_bad_frames_is_cut_to_the_limit_and_summarised)
{
	/* A summary interval of 1 s instead of 5 s keeps the test short. */
	const char *limited[] = {"--log-summary-interval", "1s", NULL};
	const char *off[] = {"--log-summary-interval", "1s", "--log-rate", "0", NULL};
	e2e_suite_start(unlimited() ? off : limited);
	struct wb_client *good = e2e_suite_client("test_log_e2e");

	/* 4-byte header, then 0x08: a field tag with its varint cut off. */
	static uint8_t chunk[CHUNK * FRAME_LEN];
	for (size_t i = 0; i < CHUNK; i++) {
		frame_put_header(chunk + i * FRAME_LEN, 1);
		chunk[i * FRAME_LEN + FRAME_HEADER] = 0x08;
	}
	int64_t start = e2e_now_ms(), worst_ms = 0;
	for (unsigned c = 0; c < FRAMES / CHUNK; c++) {
		int fd = e2e_suite_raw();
		int rc = e2e_send_all(fd, chunk, sizeof(chunk), 10000);
		cr_assert_eq(rc, 0, "sending chunk %u: %s", c, strerror(-rc));
		/* The other client, while the server works through the chunk. */
		int64_t t = e2e_now_ms();
		cr_assert_eq(wb_ping(good), 0, "ping during the flood: %s", wb_errmsg(good));
		char text[32];
		snprintf(text, sizeof(text), "during-%u", c);
		struct wb_new_event e = {.type = "Good", .data = text, .data_len = strlen(text)};
		struct wb_append_result r;
		rc = wb_append(good, "good", WB_EXPECT_ANY, 0, &e, 1, &r);
		cr_assert_eq(rc, 0, "append during the flood: %s", wb_errmsg(good));
		if (e2e_now_ms() - t > worst_ms)
			worst_ms = e2e_now_ms() - t;
		/* Every bad frame is answered BAD_REQUEST, none is skipped. */
		for (unsigned i = 0; i < CHUNK; i++) {
			Whizbang__V1__Response *resp = NULL;
			rc = e2e_recv_response(fd, E2E_CLIENT_TIMEOUT_MS, &resp);
			cr_assert_eq(rc, 0, "answer %u of chunk %u: %s", i, c, wb_error_name(rc));
			cr_assert_eq(e2e_error_code(resp), WB_BAD_REQUEST);
			whizbang__v1__response__free_unpacked(resp, NULL);
		}
		close(fd);
	}
	int64_t flood_ms = e2e_now_ms() - start;
	cr_log_info("%u bad frames in %lld ms; the other client's slowest ping+append %lld ms",
	            FRAMES, (long long)flood_ms, (long long)worst_ms);
	cr_assert_lt(worst_ms, 5000, "the other client waited %lld ms", (long long)worst_ms);

	/* The bound: the burst, the rate over the flood's duration (rounded up,
	 * plus one second for the clocks' granularity). */
	size_t lines = e2e_log_count(&e2e_srv, " event=bad_frame ");
	size_t bound = BURST + RATE * (size_t)(flood_ms / 1000 + 2);
	cr_assert_leq(lines, bound, "%zu bad_frame lines in the log for %u bad frames in %lld ms",
	              lines, FRAMES, (long long)flood_ms);
	cr_assert_geq(lines, BURST, "the burst was not written");
	size_t bytes = file_size(e2e_srv.log_file);
	cr_assert_lt(bytes, 64u * 1024, "the log holds %zu bytes", bytes);

	/* Every suppressed frame is counted: GetStats at once, and the log's
	 * summaries within the interval and the timer's second, with no
	 * further bad frame to carry them. */
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(good, &st), 0, "%s", wb_errmsg(good));
	uint64_t counted = st->log_lines_suppressed;
	wb_stats_free(st);
	cr_assert_eq(counted + lines, FRAMES, "log_lines_suppressed %llu + %zu lines",
	             (unsigned long long)counted, lines);
	size_t summaries = 0;
	uint64_t summed = 0;
	int64_t deadline = e2e_now_ms() + 5000;
	while ((summed = e2e_log_suppressed(&e2e_srv, "bad_frame", &summaries)) + lines < FRAMES &&
	       e2e_now_ms() < deadline)
		e2e_sleep_ms(50);
	cr_assert_eq(summed + lines, FRAMES, "summaries count %llu of the %llu suppressed",
	             (unsigned long long)summed, (unsigned long long)counted);
	cr_assert_geq(summaries, 1u);
	cr_assert_leq(summaries, (size_t)(flood_ms / 1000 + 2),
	              "%zu summaries over %lld ms, one a second at most", summaries,
	              (long long)flood_ms);

	/* The other client's appends are all there. */
	struct wb_page p;
	cr_assert_eq(wb_read_stream(good, "good", 0, false, 0, &p), 0, "%s", wb_errmsg(good));
	cr_assert_eq(p.count, FRAMES / CHUNK);
	wb_page_free(&p);
	e2e_suite_stop_client(good);
	/* The clean stop had nothing left to summarise. */
	cr_assert_eq(e2e_log_suppressed(&e2e_srv, "bad_frame", NULL) + lines, FRAMES);
}
