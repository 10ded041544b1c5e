#ifndef SHOAL_RUNTIME_SHOALRT_VERB_H
#define SHOAL_RUNTIME_SHOALRT_VERB_H

/*
 * shoalrt is a thin front end over the runtime library, one file per verb (crun's layout).
 * Each verb file registers itself with SHOALRT_VERB, so adding a verb touches no shared table.
 */
#include <stdbool.h>

struct shoalrt_ctx {
	const char *root; /* --root, else $SHOAL_ROOT, else /var/lib/shoal */
	int json;         /* -o json */
	char **argv;      /* main's, whole: what shoalrt_delegate passes on */
};

struct shoalrt_verb {
	const char *name;
	const char *summary; /* one line for `shoalrt --help` */
	const char *usage;   /* full text for `shoalrt VERB --help` */
	/* argv[0] is the verb; returns the process exit status */
	int (*run)(struct shoalrt_ctx *ctx, int argc, char **argv);
	struct shoalrt_verb *next;
};

void shoalrt_verb_register(struct shoalrt_verb *v);

struct container;
struct shoal_err;

/*
 * Apply op to each container named in argv (argc of them, after the verb's options), as the
 * verbs on several containers do (stop, kill, rm): print each name done, report each failure
 * as "shoalrt: message" and go on; 1 if any failed or none was named.
 */
int shoalrt_each(struct shoalrt_ctx *ctx, const char *verb, int argc, char **argv,
                 int (*op)(struct container *c, void *arg, struct shoal_err *err), void *arg);

struct image_store;
struct registry_opts;

/*
 * What pull and push do first: their shared options into *o (--insecure-registry into
 * *insecure; --progress into *progress, refused when it is NULL), then exactly nargs operands
 * (--platform only when platform_ok), then the store
 * open. Returns the index of the first operand, with *insecure to free and *store to close; -1
 * after saying why (nothing left to free).
 */
int shoalrt_registry_begin(struct shoalrt_ctx *ctx, int argc, char **argv, int nargs,
                           bool platform_ok, bool *progress, const char *usage,
                           struct registry_opts *o, const char ***insecure,
                           struct image_store **store);

#define SHOALRT_VERB(id, vname, vsummary, vusage, fn)                                              \
	static struct shoalrt_verb verb_##id = {vname, vsummary, vusage, fn, 0};                   \
	static void __attribute__((constructor)) verb_register_##id(void)                          \
	{                                                                                          \
		shoalrt_verb_register(&verb_##id);                                                 \
	}

#endif
