/* shoalrt rmi: untag images and delete what nothing uses any more. */
#include <stdio.h>

#include "err.h"
#include "runtime/image.h"
#include "verb.h"

static int
rmi_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err = {0};
	struct image_store *s;
	int rc = 0;

	if (argc < 2) {
		fputs("usage: shoalrt rmi NAME:TAG...\n", stderr);
		return 1;
	}
	s = image_store_open(ctx->root, &err);
	if (s == NULL) {
		fprintf(stderr, "shoalrt: store %s: %s\n", ctx->root, err.msg);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		struct image_gc_stats st;

		if (image_remove(s, argv[i], &st, &err) == -1) {
			fprintf(stderr, "shoalrt: rmi %s: %s\n", argv[i], err.msg);
			rc = 1;
			continue;
		}
		printf("removed %s (deleted %zu blob%s, %zu layer%s)\n", argv[i], st.blobs,
		       st.blobs == 1 ? "" : "s", st.layers, st.layers == 1 ? "" : "s");
	}
	image_store_close(s);
	return rc;
}

SHOALRT_VERB(rmi, "rmi", "remove images (and layers nothing else uses)",
             "usage: shoalrt rmi NAME:TAG...\n\n"
             "Remove each image from the index, then delete every blob and layer that no other\n"
             "image and no container (ROOT/containers/<id>/layers) references.\n",
             rmi_run)
