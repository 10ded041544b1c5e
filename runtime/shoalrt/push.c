/* shoalrt push: send an image of the store to a registry, only the blobs it lacks. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "runtime/image.h"
#include "runtime/registry.h"
#include "util.h"
#include "delegate.h"
#include "verb.h"

static int
push_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct registry_opts o = {0};
	struct registry_stats st;
	struct shoal_err err = {0};
	const char **insecure = NULL;
	struct image_store *s;
	char size[32];
	int i;

	i = shoalrt_registry_begin(ctx, argc, argv, 2, false, NULL, PUSH_USAGE, &o, &insecure, &s);
	if (i == -1)
		return 1;
	if (registry_push(s, argv[i], argv[i + 1], &o, &st, &err) == -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		image_store_close(s);
		free(insecure);
		return 1;
	}
	printf("pushed %s %.19s (%zu blobs, %zu uploaded, %llu bytes = %s)\n", argv[i + 1],
	       st.digest, st.blobs, st.blobs_fetched, (unsigned long long)st.bytes,
	       util_format_bytes((int64_t)st.bytes, size, sizeof(size)));
	image_store_close(s);
	free(insecure);
	return 0;
}

SHOALRT_VERB(push, "push", PUSH_SUMMARY, PUSH_USAGE, push_run)
