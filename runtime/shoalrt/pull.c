/* shoalrt pull: fetch an image from a registry into the store, only the blobs it lacks. */
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

/* The options pull and push share; argv is consumed up to the first operand. progress: NULL
 * refuses --progress (push), else it is set when given. */
static int
registry_opts(int argc, char **argv, struct registry_opts *o, const char ***insecure,
              bool *progress, const char *usage)
{
	size_t n = 0;
	int i;

	*insecure = xcalloc((size_t)argc + 1, sizeof(char *));
	o->auth_file = getenv("REGISTRY_AUTH_FILE");
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--registry-auth") == 0 && i + 1 < argc) {
			o->auth_file = argv[++i];
		} else if (strcmp(argv[i], "--insecure-registry") == 0 && i + 1 < argc) {
			(*insecure)[n++] = argv[++i];
		} else if (strcmp(argv[i], "--platform") == 0 && i + 1 < argc) {
			o->platform = argv[++i];
		} else if (progress && strcmp(argv[i], "--progress") == 0) {
			*progress = true;
		} else {
			fprintf(stderr, "shoalrt: unknown option %s\n%s", argv[i], usage);
			return -1;
		}
	}
	o->insecure = *insecure;
	return i;
}

int
shoalrt_registry_begin(struct shoalrt_ctx *ctx, int argc, char **argv, int nargs, bool platform_ok,
                       bool *progress, const char *usage, struct registry_opts *o,
                       const char ***insecure, struct image_store **store)
{
	struct shoal_err err = {0};
	int i = registry_opts(argc, argv, o, insecure, progress, usage);

	if (i == -1 || i != argc - nargs || (o->platform && !platform_ok)) {
		if (i != -1)
			fputs(usage, stderr);
		free(*insecure);
		return -1;
	}
	*store = image_store_open(ctx->root, &err);
	if (*store == NULL) {
		fprintf(stderr, "shoalrt: store %s: %s\n", ctx->root, err.msg);
		free(*insecure);
		return -1;
	}
	return i;
}

/* --progress: one line per report, flushed, for a program reading our stdout (the agent). */
static void
print_progress(void *arg, size_t done, size_t layers, uint64_t bytes)
{
	(void)arg;
	printf("progress %zu %zu %llu\n", done, layers, (unsigned long long)bytes);
	fflush(stdout);
}

static int
pull_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct registry_opts o = {0};
	struct registry_stats st;
	struct shoal_err err = {0};
	const char **insecure = NULL;
	struct image_store *s;
	char *stored = NULL;
	char size[32];
	bool progress = false;
	int i;

	i = shoalrt_registry_begin(ctx, argc, argv, 1, true, &progress, PULL_USAGE, &o, &insecure,
	                           &s);
	if (i == -1)
		return 1;
	if (progress)
		o.progress = print_progress;
	if (registry_pull(s, argv[i], &o, &st, &stored, &err) == -1) {
		fprintf(stderr, "shoalrt: %s\n", err.msg);
		image_store_close(s);
		free(insecure);
		return 1;
	}
	/* --progress: the figures whole, in one line a program can read. */
	if (progress)
		printf("result %s %zu %zu %llu\n", st.digest, st.blobs, st.blobs_fetched,
		       (unsigned long long)st.bytes);
	printf("pulled %s %.19s (%zu blobs, %zu fetched, %llu bytes = %s", stored, st.digest,
	       st.blobs, st.blobs_fetched, (unsigned long long)st.bytes,
	       util_format_bytes((int64_t)st.bytes, size, sizeof(size)));
	if (st.resumed > 0)
		printf(", %llu resumed", (unsigned long long)st.resumed);
	puts(")");
	free(stored);
	image_store_close(s);
	free(insecure);
	return 0;
}

SHOALRT_VERB(pull, "pull", PULL_SUMMARY, PULL_USAGE, pull_run)
