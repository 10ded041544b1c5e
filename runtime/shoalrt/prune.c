/* shoalrt prune: remove the images no container uses, and what only they used. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "runtime/image.h"
#include "runtime/prune.h"
#include "util.h"
#include "verb.h"

#define PRUNE_USAGE                                                                                \
	"usage: shoalrt prune [--all | --older-than DUR]\n\n"                                      \
	"Remove every image no container uses (a container uses an image when it holds all\n"      \
	"of its layers) that was imported or pulled at least DUR ago (default 1h), then delete\n"  \
	"every blob and layer nothing references any more. --all removes unused images of\n"       \
	"any age.\n"

static int
prune_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err = {0};
	struct prune_stats st;
	struct image_store *s;
	int64_t older = 3600 * 1000;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--all") == 0 || strcmp(argv[i], "-a") == 0) {
			older = 0;
		} else if (strcmp(argv[i], "--older-than") == 0 && i + 1 < argc) {
			if (util_parse_duration_ms(argv[++i], &older, &err) == -1) {
				fprintf(stderr, "shoalrt: prune --older-than %s: %s\n", argv[i],
				        err.msg);
				return 1;
			}
		} else {
			fputs(PRUNE_USAGE, stderr);
			return 1;
		}
	}
	s = image_store_open(ctx->root, &err);
	if (s == NULL) {
		fprintf(stderr, "shoalrt: store %s: %s\n", ctx->root, err.msg);
		return 1;
	}
	if (prune_images(s, older, &st, &err) == -1) {
		fprintf(stderr, "shoalrt: prune: %s\n", err.msg);
		image_store_close(s);
		return 1;
	}
	image_store_close(s);
	printf("pruned %zu image%s (deleted %zu blob%s, %zu layer%s)\n", st.images,
	       st.images == 1 ? "" : "s", st.blobs, st.blobs == 1 ? "" : "s", st.layers,
	       st.layers == 1 ? "" : "s");
	return 0;
}

SHOALRT_VERB(prune, "prune", "remove images no container uses (older than 1h, or --all)",
             PRUNE_USAGE, prune_run)
