/* shoalrt import: load an OCI image layout or a docker save archive into the store. */
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "runtime/image.h"
#include "util.h"
#include "delegate.h"
#include "verb.h"

static int
import_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err = {0};
	struct image_store *s;
	char **refs = NULL;
	int rc = 0;

	if (argc < 2 || argc > 3) {
		fputs("usage: shoalrt import PATH [NAME:TAG]\n", stderr);
		return 1;
	}
	s = image_store_open(ctx->root, &err);
	if (s == NULL) {
		fprintf(stderr, "shoalrt: store %s: %s\n", ctx->root, err.msg);
		return 1;
	}
	if (image_import(s, argv[1], argc == 3 ? argv[2] : NULL, &refs, &err) == -1) {
		fprintf(stderr, "shoalrt: import %s: %s\n", argv[1], err.msg);
		image_store_close(s);
		return 1;
	}
	for (size_t i = 0; refs[i]; i++) {
		struct image *img = image_get(s, refs[i], &err);
		char size[32];

		if (img == NULL) {
			fprintf(stderr, "shoalrt: import %s: %s\n", argv[1], err.msg);
			rc = 1;
			continue;
		}
		printf("imported %s:%s %.19s (%zu layer%s, %s)\n", img->name, img->tag, img->digest,
		       img->nlayers, img->nlayers == 1 ? "" : "s",
		       util_format_bytes((int64_t)img->size, size, sizeof(size)));
		image_free(img);
	}
	image_refs_free(refs);
	image_store_close(s);
	return rc;
}

SHOALRT_VERB(import, "import", IMPORT_SUMMARY, IMPORT_USAGE, import_run)
