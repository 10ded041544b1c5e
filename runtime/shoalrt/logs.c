/* shoalrt logs: print (and follow) a container's output. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "runtime/container.h"
#include "runtime/logfile.h"
#include "util.h"
#include "verb.h"
#include "when.h"

static void
out(const char *p, size_t n)
{
	(void)!fwrite(p, 1, n, stdout);
}

static int
logs_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	struct logfile_opts o = {.tail = -1};
	bool follow = false;
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0) {
			follow = true;
		} else if ((strcmp(argv[i], "--tail") == 0 || strcmp(argv[i], "-n") == 0) &&
		           i + 1 < argc) {
			char *end;
			o.tail = strtol(argv[++i], &end, 10);
			if (*end != '\0' || o.tail < 0) {
				fprintf(stderr, "shoalrt: logs: invalid --tail %s\n", argv[i]);
				return 1;
			}
		} else if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--timestamps") == 0) {
			o.timestamps = true;
		} else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			if (when_parse(argv[++i], util_wall_ms(), &o.since_ms) == -1) {
				fprintf(stderr,
				        "shoalrt: logs: --since wants a duration (10s, 5m, 2h, 1d) "
				        "or an "
				        "RFC 3339 time, not %s\n",
				        argv[i]);
				return 1;
			}
		} else {
			fprintf(stderr, "shoalrt: logs: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	if (i + 1 != argc) {
		fprintf(stderr, "shoalrt: logs: want one CONTAINER\n");
		return 1;
	}
	struct container *c = container_load(ctx->root, argv[i], &err);
	if (c == NULL) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		return 1;
	}
	struct logfile lf;
	char *head = NULL;
	size_t len = 0;
	if (logfile_open(&lf, c->dir, &o, &head, &len, &err) == -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		container_free(c);
		return 1;
	}
	out(head, len);
	free(head);
	fflush(stdout);
	while (follow) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		size_t n;
		char *buf = logfile_read(&lf, &n);

		if (buf) {
			out(buf, n);
			free(buf);
			fflush(stdout);
			continue;
		}
		if (!(c->status == CONTAINER_RUNNING && container_alive(c)))
			break;
		nanosleep(&ts, NULL);
	}
	logfile_close(&lf);
	container_free(c);
	return 0;
}

SHOALRT_VERB(logs, "logs", "print a container's output",
             "usage: shoalrt logs [-f] [-t] [--since WHEN] [--tail N] CONTAINER\n\n"
             "Print the container's stdout and stderr (log.1 then log), running or exited.\n"
             "--tail N prints the last N lines; -f keeps printing until the container exits;\n"
             "-t prefixes each line with the time it was written (RFC 3339); --since WHEN\n"
             "skips lines written before WHEN, a duration ago (10s, 5m, 2h, 1d) or an\n"
             "RFC 3339 time.\n",
             logs_main)
