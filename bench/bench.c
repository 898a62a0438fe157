/* whizbang-bench: load generators for whizbangd (appends, lease cycles), the
 * raw-LMDB baseline they are measured against, and the projections'
 * explosion, scan and replay figures. See docs/BENCHMARKS.md. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: whizbang-bench append --clients C --pipeline P --events N --size B\n"
	           "                             --streams S [options]\n"
	           "       whizbang-bench lease --clients C --pipeline P --cycles N\n"
	           "                            [--slow-fraction F --slow-ms M] [options]\n"
	           "       whizbang-bench raw --events N --size B --streams S --batch R\n"
	           "                          [options]\n"
	           "       whizbang-bench explode [--entities N] [options]\n"
	           "       whizbang-bench subscribe [--events N] [--subscribers S] [options]\n"
	           "       whizbang-bench SUBCOMMAND --help\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "append") == 0)
		return bench_append_main(argc - 1, argv + 1);
	if (strcmp(cmd, "lease") == 0)
		return bench_lease_main(argc - 1, argv + 1);
	if (strcmp(cmd, "raw") == 0)
		return bench_raw_main(argc - 1, argv + 1);
	if (strcmp(cmd, "explode") == 0)
		return bench_explode_main(argc - 1, argv + 1);
	if (strcmp(cmd, "subscribe") == 0)
		return bench_subscribe_main(argc - 1, argv + 1);
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "whizbang-bench: unknown subcommand '%s'\n", cmd);
	usage(stderr);
	return 2;
}
