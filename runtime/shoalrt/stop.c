/* shoalrt stop: SIGTERM, a grace period, then SIGKILL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

static int
do_stop(struct container *c, void *arg, struct shoal_err *err)
{
	return container_stop(c, (int)*(long *)arg, err);
}

static int
stop_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	long timeout = 10;
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--time") == 0) &&
		    i + 1 < argc) {
			char *end;
			timeout = strtol(argv[++i], &end, 10);
			if (*end != '\0' || timeout < 0 || timeout > 86400) {
				fprintf(stderr, "shoalrt: stop: invalid timeout %s (seconds)\n",
				        argv[i]);
				return 1;
			}
		} else {
			fprintf(stderr, "shoalrt: stop: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	return shoalrt_each(ctx, "stop", argc - i, argv + i, do_stop, &timeout);
}

SHOALRT_VERB(stop, "stop", "stop containers (SIGTERM, then SIGKILL)",
             "usage: shoalrt stop [-t SECONDS] CONTAINER...\n\n"
             "Send SIGTERM to each container's init, wait up to SECONDS (default 10), then\n"
             "SIGKILL. Returns once the exit is recorded.\n",
             stop_main)
