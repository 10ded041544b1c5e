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

static void
out(const char *p, size_t n)
{
	(void)!fwrite(p, 1, n, stdout);
}

static int
logs_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	bool follow = false;
	long tail = -1;
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0) {
			follow = true;
		} else if ((strcmp(argv[i], "--tail") == 0 || strcmp(argv[i], "-n") == 0) &&
		           i + 1 < argc) {
			char *end;
			tail = strtol(argv[++i], &end, 10);
			if (*end != '\0' || tail < 0) {
				fprintf(stderr, "shoalrt: logs: invalid --tail %s\n", argv[i]);
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
	if (logfile_open(&lf, c->dir, tail, &head, &len, &err) == -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		container_free(c);
		return 1;
	}
	out(head, len);
	free(head);
	fflush(stdout);
	while (follow) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		char buf[65536];
		size_t n = logfile_read(&lf, buf, sizeof(buf));

		if (n > 0) {
			out(buf, n);
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
             "usage: shoalrt logs [-f] [--tail N] CONTAINER\n\n"
             "Print the container's stdout and stderr (log.1 then log). --tail N prints the\n"
             "last N lines; -f keeps printing until the container exits.\n",
             logs_main)
