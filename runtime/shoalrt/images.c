/* shoalrt images: list the store's images, as a table or as JSON. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "err.h"
#include "runtime/image.h"
#include "util.h"
#include "verb.h"

static void
print_json(struct image **imgs, size_t n)
{
	json_t *a = json_array();
	char *text;

	for (size_t i = 0; i < n; i++) {
		json_t *layers = json_array();
		time_t t = (time_t)(imgs[i]->created_ms / 1000);
		struct tm tm;
		char created[32];

		for (size_t k = 0; k < imgs[i]->nlayers; k++)
			json_array_append_new(layers,
			                      json_sprintf("sha256:%s", imgs[i]->layer_digests[k]));
		gmtime_r(&t, &tm);
		strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o, s:I, s:s, s:I}", "name",
		                                   imgs[i]->name, "tag", imgs[i]->tag, "digest",
		                                   imgs[i]->digest, "layers", layers, "size",
		                                   (json_int_t)imgs[i]->size, "created", created,
		                                   "created_ms", (json_int_t)imgs[i]->created_ms));
	}
	text = json_dumps(a, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(text);
	free(text);
	json_decref(a);
}

static void
print_table(struct image **imgs, size_t n)
{
	int wname = 4, wtag = 3;
	int64_t now = util_wall_ms();

	for (size_t i = 0; i < n; i++) {
		if ((int)strlen(imgs[i]->name) > wname)
			wname = (int)strlen(imgs[i]->name);
		if ((int)strlen(imgs[i]->tag) > wtag)
			wtag = (int)strlen(imgs[i]->tag);
	}
	printf("%-*s  %-*s  %-12s  %6s  %8s  %s\n", wname, "NAME", wtag, "TAG", "DIGEST", "LAYERS",
	       "SIZE", "CREATED");
	for (size_t i = 0; i < n; i++) {
		char size[32], age[32];

		printf("%-*s  %-*s  %.12s  %6zu  %8s  %s ago\n", wname, imgs[i]->name, wtag,
		       imgs[i]->tag, imgs[i]->digest + 7, imgs[i]->nlayers,
		       util_format_bytes((int64_t)imgs[i]->size, size, sizeof(size)),
		       util_format_age(now - imgs[i]->created_ms, age, sizeof(age)));
	}
}

static int
images_run(struct shoalrt_ctx *ctx, int argc, char **argv)
{
	struct shoal_err err = {0};
	struct image_store *s;
	struct image **imgs;
	size_t n;

	(void)argv;
	if (argc != 1) {
		fputs("usage: shoalrt [-o json] images\n", stderr);
		return 1;
	}
	s = image_store_open(ctx->root, &err);
	if (s == NULL) {
		fprintf(stderr, "shoalrt: store %s: %s\n", ctx->root, err.msg);
		return 1;
	}
	if (image_list(s, &imgs, &n, &err) == -1) {
		fprintf(stderr, "shoalrt: images: %s\n", err.msg);
		image_store_close(s);
		return 1;
	}
	if (ctx->json)
		print_json(imgs, n);
	else
		print_table(imgs, n);
	image_list_free(imgs, n);
	image_store_close(s);
	return 0;
}

SHOALRT_VERB(images, "images", "list images in the store",
             "usage: shoalrt [-o json] images\n\n"
             "List the store's images: NAME TAG DIGEST (12 hex of the manifest digest) LAYERS\n"
             "SIZE (unpacked) CREATED (import time). -o json prints every field in full.\n",
             images_run)
