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
#include "util.h"
#include "verb.h"

static void
out(const char *p, size_t n)
{
	(void)!fwrite(p, 1, n, stdout);
}

/* Copy what fd has beyond its offset to stdout; returns bytes copied. */
static size_t
drain(int fd)
{
	char buf[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		out(buf, (size_t)n);
		total += (size_t)n;
	}
	fflush(stdout);
	return total;
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
	cleanup_free char *p0 = xasprintf("%s/log.1", c->dir);
	cleanup_free char *p1 = xasprintf("%s/log", c->dir);
	/* Open the current log before reading the rotated one: a rotation in between then shows
	 * up as an inode change below instead of losing a file's worth of output. */
	int fd = open(p1, O_RDONLY | O_CLOEXEC);
	cleanup_free char *old = util_read_file(p0, NULL, NULL);
	size_t oldlen = old ? strlen(old) : 0, curlen = 0;
	cleanup_free char *cur = NULL;
	if (fd != -1) {
		cur = xmalloc(CONTAINER_LOG_MAX + 65536);
		ssize_t n;
		while ((n = read(fd, cur + curlen, CONTAINER_LOG_MAX + 65536 - curlen)) > 0)
			curlen += (size_t)n;
	}
	/* One view of rotated then current output; --tail N starts after the Nth newline from
	 * the end (a final newline ends the last line, it does not start another). */
	size_t total = oldlen + curlen, start = 0;
	cleanup_free char *all = xmalloc(total + 1);
	if (oldlen)
		memcpy(all, old, oldlen);
	if (curlen)
		memcpy(all + oldlen, cur, curlen);
	if (tail == 0) {
		start = total;
	} else if (tail > 0) {
		size_t k = total;
		long lines = 0;
		if (k > 0 && all[k - 1] == '\n')
			k--;
		while (k > 0 && !(all[k - 1] == '\n' && ++lines == tail))
			k--;
		start = k;
	}
	out(all + start, total - start);
	fflush(stdout);
	while (follow) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		struct stat a, b;
		bool running;

		if (fd != -1 && drain(fd) > 0)
			continue;
		running = c->status == CONTAINER_RUNNING && container_alive(c);
		/* Rotated: finish the old file, then follow the new one from its start. */
		if (stat(p1, &a) == 0 &&
		    (fd == -1 || (fstat(fd, &b) == 0 && a.st_ino != b.st_ino))) {
			if (fd != -1) {
				drain(fd);
				close(fd);
			}
			fd = open(p1, O_RDONLY | O_CLOEXEC);
			continue;
		}
		if (!running)
			break;
		nanosleep(&ts, NULL);
	}
	if (fd != -1)
		close(fd);
	container_free(c);
	return 0;
}

SHOALRT_VERB(logs, "logs", "print a container's output",
             "usage: shoalrt logs [-f] [--tail N] CONTAINER\n\n"
             "Print the container's stdout and stderr (log.1 then log). --tail N prints the\n"
             "last N lines; -f keeps printing until the container exits.\n",
             logs_main)
