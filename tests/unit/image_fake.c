/*
 * A stand-in for runtime/image.c's lookup, for tests only, until the image store is on this
 * branch: image_get(s, "name:tag") reads ROOT/test-images/<name>:<tag>.json ('/' as '_'):
 *   {"layers": ["/abs/layer", ...base first], "digests": ["hex", ...],
 *    "entrypoint": [...], "cmd": [...], "env": [...], "workdir": "", "user": ""}
 * Linked (before libshoal_runtime.a) into a test build of shoalrt by tests/integration/
 * runtime.bats; never part of the runtime library.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "runtime/image.h"
#include "util.h"

struct image_store {
	char *root;
};

struct image_store *
image_store_open(const char *root, struct shoal_err *err)
{
	struct image_store *s = xcalloc(1, sizeof(*s));
	(void)err;
	s->root = xstrdup(root);
	return s;
}

void
image_store_close(struct image_store *s)
{
	if (s == NULL)
		return;
	free(s->root);
	free(s);
}

const char *
image_store_root(const struct image_store *s)
{
	return s->root;
}

static char **
strv(json_t *a)
{
	size_t i, n = json_array_size(a);
	json_t *v;
	char **out;

	if (!json_is_array(a))
		return NULL;
	out = xcalloc(n + 1, sizeof(char *));
	json_array_foreach(a, i, v)
		out[i] = xstrdup(json_string_value(v));
	return out;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

struct image *
image_get(struct image_store *s, const char *ref, struct shoal_err *err)
{
	cleanup_free char *name = strchr(ref, ':') ? xstrdup(ref) : xasprintf("%s:latest", ref);
	cleanup_free char *path = NULL;
	struct image *img;
	json_t *o;
	const char *w, *u;

	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '_';
	path = xasprintf("%s/test-images/%s.json", s->root, name);
	o = json_load_file(path, 0, NULL);
	if (o == NULL) {
		err_set(err, 0, "image %s not found", ref);
		return NULL;
	}
	img = xcalloc(1, sizeof(*img));
	img->name = xstrdup(ref);
	img->tag = xstrdup("latest");
	strcpy(img->digest, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	img->layer_dirs = strv(json_object_get(o, "layers"));
	img->layer_digests = strv(json_object_get(o, "digests"));
	while (img->layer_dirs && img->layer_dirs[img->nlayers])
		img->nlayers++;
	img->entrypoint = strv(json_object_get(o, "entrypoint"));
	img->cmd = strv(json_object_get(o, "cmd"));
	img->env = strv(json_object_get(o, "env"));
	w = json_string_value(json_object_get(o, "workdir"));
	u = json_string_value(json_object_get(o, "user"));
	img->workdir = w ? xstrdup(w) : NULL;
	img->user = u ? xstrdup(u) : NULL;
	json_decref(o);
	return img;
}

void
image_free(struct image *img)
{
	if (img == NULL)
		return;
	free(img->name);
	free(img->tag);
	strv_free(img->layer_dirs);
	strv_free(img->layer_digests);
	strv_free(img->entrypoint);
	strv_free(img->cmd);
	strv_free(img->env);
	free(img->workdir);
	free(img->user);
	free(img);
}
