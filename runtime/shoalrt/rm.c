/* shoalrt rm: remove containers and everything they left. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "runtime/container.h"
#include "verb.h"

static int
rm_main(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err;
	bool force = false;
	int i, rc = 0;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--force") == 0) {
			force = true;
		} else {
			fprintf(stderr, "shoalrt: rm: unknown option %s\n", argv[i]);
			return 1;
		}
	}
	if (i == argc) {
		fprintf(stderr, "shoalrt: rm: missing CONTAINER\n");
		return 1;
	}
	for (; i < argc; i++) {
		struct container *c = container_load(ctx->root, argv[i], &err);
		if (c == NULL || container_remove(c, force, &err) == -1) {
			fprintf(stderr, "shoalrt: %s\n", err.msg);
			rc = 1;
		} else {
			printf("%s\n", argv[i]);
		}
		container_free(c);
	}
	return rc;
}

SHOALRT_VERB(rm, "rm", "remove containers",
             "usage: shoalrt rm [-f] CONTAINER...\n\n"
             "Remove each container's cgroup, files and name. A running container needs -f,\n"
             "which kills it first.\n",
             rm_main)
