/* shoalrt rm: remove containers and everything they left. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

static int
do_rm(struct container *c, void *arg, struct shoal_err *err)
{
	return container_remove(c, *(bool *)arg, err);
}

static int
rm_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	bool force = false;
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--force") == 0) {
			force = true;
		} else {
			fprintf(stderr, "shoalrt: rm: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	return shoalrt_each(ctx, "rm", argc - i, argv + i, do_rm, &force);
}

SHOALRT_VERB(rm, "rm", "remove containers",
             "usage: shoalrt rm [-f] CONTAINER...\n\n"
             "Remove each container's cgroup, files and name. A running container needs -f,\n"
             "which kills it first.\n",
             rm_main)
