/* shoalrt: Shoal's runtime alone on one host, for debugging (like containerd's ctr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "log.h"
#include "runtime/container.h"
#include "runtime/trace.h"
#include "verb.h"

static struct shoalrt_verb *verbs;

void
shoalrt_verb_register(struct shoalrt_verb *v)
{
	struct shoalrt_verb **p = &verbs;

	/* Keep the list sorted so --help reads alphabetically whatever the link order. */
	while (*p && strcmp((*p)->name, v->name) < 0)
		p = &(*p)->next;
	v->next = *p;
	*p = v;
}

int
shoalrt_each(struct shoalrt_ctx *ctx, const char *verb, int argc, char **argv,
             int (*op)(struct container *c, void *arg, struct shoal_err *err), void *arg)
{
	struct shoal_err err;
	int rc = 0;

	if (argc == 0) {
		fprintf(stderr, "shoalrt: %s: missing CONTAINER\n", verb);
		return 1;
	}
	for (int i = 0; i < argc; i++) {
		struct container *c = container_load(ctx->root, argv[i], &err);
		if (c == NULL || op(c, arg, &err) == -1) {
			fprintf(stderr, "shoalrt: %s\n", err.msg);
			rc = 1;
		} else {
			printf("%s\n", argv[i]);
		}
		container_free(c);
	}
	return rc;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: shoalrt [--root DIR] [-o json] VERB [ARGS...]\n\n"
	           "Shoal's container runtime on this host alone: images and containers.\n\n"
	           "Options:\n"
	           "  --root DIR   store and state directory (default $SHOAL_ROOT, else "
	           "/var/lib/shoal)\n"
	           "  -o json      machine-readable output for listings\n"
	           "  --debug      verbose log lines on stderr\n"
	           "  -h, --help   this text; `shoalrt VERB --help` for a verb\n\n"
	           "Verbs:\n");
	for (struct shoalrt_verb *v = verbs; v; v = v->next)
		fprintf(f, "  %-10s %s\n", v->name, v->summary);
}

int
main(int argc, char **argv)
{
	struct shoalrt_ctx ctx = {0};
	int i;

	trace_mark("shoalrt-exec");
	ctx.argv = argv;
	if (sodium_init() < 0) {
		fputs("shoalrt: cannot initialise libsodium\n", stderr);
		return 1;
	}
	log_init("shoalrt", LOG_WARNING);
	ctx.root = getenv("SHOAL_ROOT");
	if (ctx.root == NULL || ctx.root[0] == '\0')
		ctx.root = "/var/lib/shoal";
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
			ctx.root = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			if (strcmp(argv[++i], "json") != 0) {
				fprintf(stderr, "shoalrt: -o takes json\n");
				return 1;
			}
			ctx.json = 1;
		} else if (strcmp(argv[i], "--debug") == 0) {
			log_level = LOG_DEBUG;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "shoalrt: unknown option %s\n", argv[i]);
			usage(stderr);
			return 1;
		}
	}
	if (i == argc) {
		usage(stderr);
		return 1;
	}
	for (struct shoalrt_verb *v = verbs; v; v = v->next) {
		if (strcmp(v->name, argv[i]) != 0)
			continue;
		if (argc - i > 1 &&
		    (strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0)) {
			fputs(v->usage, stdout);
			return 0;
		}
		return v->run(&ctx, argc - i, argv + i);
	}
	fprintf(stderr, "shoalrt: unknown verb \"%s\" (see shoalrt --help)\n", argv[i]);
	return 1;
}
