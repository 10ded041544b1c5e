/* shoalrt kill: send a signal to a container's init. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

/* "TERM", "SIGTERM" or "15". */
static int
parse_signal(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (*end == '\0')
		return n > 0 && n < NSIG ? (int)n : -1;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (int i = 1; i < NSIG; i++) {
		const char *abbrev = sigabbrev_np(i);
		if (abbrev && strcmp(abbrev, s) == 0)
			return i;
	}
	return -1;
}

static int
do_kill(struct container *c, void *arg, struct shoal_err *err)
{
	return container_kill(c, *(int *)arg, err);
}

static int
kill_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	int sig = SIGKILL, i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--signal") == 0) &&
		    i + 1 < argc) {
			sig = parse_signal(argv[++i]);
			if (sig == -1) {
				fprintf(stderr, "shoalrt: kill: unknown signal %s\n", argv[i]);
				return 1;
			}
		} else {
			fprintf(stderr, "shoalrt: kill: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	return shoalrt_each(ctx, "kill", argc - i, argv + i, do_kill, &sig);
}

SHOALRT_VERB(kill, "kill", "send a signal to containers",
             "usage: shoalrt kill [-s SIGNAL] CONTAINER...\n\n"
             "Send SIGNAL (name or number, default KILL) to each container's init.\n",
             kill_main)
