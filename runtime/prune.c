#include "prune.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "image.h"
#include "util.h"

/* Every layer some container uses: the hex digests of ROOT/containers/<id>/layers. */
struct layer_set {
	char **v;
	size_t n;
};

static void
set_add_file(struct layer_set *ls, const char *path)
{
	cleanup_free char *text = util_read_file(path, NULL, NULL);
	char *save = NULL;

	if (text == NULL)
		return;
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		ls->v = xrealloc(ls->v, (ls->n + 1) * sizeof(char *));
		ls->v[ls->n++] = xstrdup(l);
	}
}

static bool
set_has(const struct layer_set *ls, const char *hex)
{
	for (size_t i = 0; i < ls->n; i++)
		if (strcmp(ls->v[i], hex) == 0)
			return true;
	return false;
}

static void
set_free(struct layer_set *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->v[i]);
	free(ls->v);
}

static bool
used(const struct image *img, const struct layer_set *ls)
{
	for (size_t i = 0; i < img->nlayers; i++)
		if (!set_has(ls, img->layer_digests[i]))
			return false;
	return img->nlayers > 0;
}

int
prune_images(struct image_store *s, int64_t older_ms, struct prune_stats *stats,
             struct shoal_err *err)
{
	cleanup_free char *cdir = xasprintf("%s/containers", image_store_root(s));
	struct prune_stats local = {0};
	struct layer_set ls = {0};
	struct image **imgs = NULL;
	size_t n = 0;
	int64_t now = util_wall_ms();
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	d = opendir(cdir);
	while (d && (de = readdir(d)) != NULL) {
		cleanup_free char *p = NULL;
		if (de->d_name[0] == '.')
			continue;
		p = xasprintf("%s/%s/layers", cdir, de->d_name);
		set_add_file(&ls, p);
	}
	if (d)
		closedir(d);
	if (image_list(s, &imgs, &n, err) == -1) {
		set_free(&ls);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct image_gc_stats gc = {0};
		cleanup_free char *ref = NULL;

		if (used(imgs[i], &ls) || (older_ms > 0 && now - imgs[i]->created_ms < older_ms))
			continue;
		/* An image pulled by digest is keyed by it in place of a tag. */
		ref = strncmp(imgs[i]->tag, "sha256:", 7) == 0
		          ? xasprintf("%s@%s", imgs[i]->name, imgs[i]->tag)
		          : xasprintf("%s:%s", imgs[i]->name, imgs[i]->tag);
		if (image_remove(s, ref, &gc, err) == -1) {
			err_prefix(err, "remove %s", ref);
			rc = -1;
			break;
		}
		stats->images++;
		stats->blobs += gc.blobs;
		stats->layers += gc.layers;
	}
	image_list_free(imgs, n);
	set_free(&ls);
	return rc;
}
