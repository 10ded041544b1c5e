/* Garbage collection of the image store: what no image and no container uses goes. */
#include "image.h"
#include "image_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "oci.h"
#include "util.h"

/* ---- garbage collection ------------------------------------------------------------------ */

struct hexset {
	char **v;
	size_t n, cap;
};

static void
hexset_add(struct hexset *h, const char *hex)
{
	if (!digest_is_hex(hex))
		return;
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i], hex) == 0)
			return;
	if (h->n == h->cap) {
		h->cap = h->cap ? 2 * h->cap : 32;
		h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
	}
	h->v[h->n++] = xstrdup(hex);
}

static int
hexset_has(const struct hexset *h, const char *hex)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->v[i], hex) == 0)
			return 1;
	return 0;
}

static void
hexset_free(struct hexset *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i]);
	free(h->v);
	memset(h, 0, sizeof(*h));
}

/* Layers the containers under ROOT/containers pin, one hex per line of <id>/layers. */
static int
container_layers(struct image_store *s, struct hexset *layers, struct shoal_err *err)
{
	cleanup_free char *dir = image_store_path(s, "containers", NULL);
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return errno == ENOENT ? 0 : err_set(err, errno, "open %s", dir);
	while ((de = readdir(d)) != NULL) {
		cleanup_free char *path = NULL;
		cleanup_free char *text = NULL;
		struct shoal_err e2;
		char *line, *save = NULL;

		if (de->d_name[0] == '.')
			continue;
		path = xasprintf("%s/%s/layers", dir, de->d_name);
		text = util_read_file(path, NULL, &e2);
		if (text == NULL) {
			if (e2.code == ENOENT || e2.code == ENOTDIR)
				continue;
			closedir(d);
			*err = e2;
			return -1;
		}
		for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "sha256:", 7) == 0)
				line += 7;
			hexset_add(layers, line);
		}
	}
	closedir(d);
	return 0;
}

/* Everything the index's images reference: manifests, configs, layers. */
static int
referenced(struct image_store *s, const struct index *ix, struct hexset *blobs,
           struct hexset *layers, struct shoal_err *err)
{
	for (size_t i = 0; i < ix->n; i++) {
		cleanup_free char *mtext = image_read_blob(s, ix->e[i].digest, err);
		cleanup_free char *ctext = NULL;
		struct oci_manifest m;
		struct oci_config c;

		/* An image whose manifest cannot be read pins nothing else, but deleting on a
		 * guess is worse than keeping garbage: stop. */
		if (mtext == NULL || oci_parse_manifest(mtext, NULL, &m, err) == -1)
			return err_prefix(err, "image %s:%s", ix->e[i].name, ix->e[i].tag);
		ctext = image_read_blob(s, m.config.digest, err);
		if (ctext == NULL || oci_parse_config(ctext, &c, err) == -1) {
			oci_manifest_free(&m);
			return err_prefix(err, "image %s:%s", ix->e[i].name, ix->e[i].tag);
		}
		hexset_add(blobs, ix->e[i].digest + 7);
		hexset_add(blobs, m.config.digest + 7);
		for (size_t k = 0; k < m.nlayers; k++) {
			hexset_add(blobs, m.layers[k].digest + 7);
			/* The directory image_get resolves: an old store's blob-named one is
			 * dropped once the layer exists by diff_id and no container lists it. */
			hexset_add(
			    layers,
			    image_layer_key(s, m.layers[k].digest,
			                    c.diff_ids && k < c.ndiff_ids ? c.diff_ids[k] : NULL));
		}
		oci_manifest_free(&m);
		oci_config_free(&c);
	}
	return 0;
}

/* Sweep with the lock held. */
int
image_gc_locked(struct image_store *s, const struct index *ix, struct image_gc_stats *stats,
                struct shoal_err *err)
{
	struct hexset blobs = {0}, layers = {0};
	cleanup_free char *bdir = image_store_path(s, "blobs/sha256", NULL);
	cleanup_free char *ldir = image_store_path(s, "layers", NULL);
	DIR *d = NULL;
	struct dirent *de;
	int rc = -1;

	if (referenced(s, ix, &blobs, &layers, err) == -1 ||
	    container_layers(s, &layers, err) == -1)
		goto out;
	d = opendir(bdir);
	if (d == NULL) {
		err_set(err, errno, "open %s", bdir);
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		if (!digest_is_hex(de->d_name) || hexset_has(&blobs, de->d_name))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == -1) {
			err_set(err, errno, "delete blob %s", de->d_name);
			goto out;
		}
		stats->blobs++;
	}
	closedir(d);
	d = opendir(ldir);
	if (d == NULL) {
		err_set(err, errno, "open %s", ldir);
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		cleanup_free char *from = NULL;
		cleanup_free char *to = NULL;

		if (!digest_is_hex(de->d_name) || hexset_has(&layers, de->d_name))
			continue;
		/* Out of layers/ first, in one step, so no one ever sees half a layer. */
		from = xasprintf("%s/%s", ldir, de->d_name);
		to = xasprintf("%s/tmp/rm-%s-%d", s->root, de->d_name, (int)getpid());
		if (rename(from, to) == -1) {
			err_set(err, errno, "move layer %s aside", de->d_name);
			goto out;
		}
		if (layer_remove_tree(to, err) == -1)
			goto out;
		stats->layers++;
	}
	rc = 0;
out:
	if (d)
		closedir(d);
	hexset_free(&blobs);
	hexset_free(&layers);
	return rc;
}

int
image_store_gc(struct image_store *s, struct image_gc_stats *stats, struct shoal_err *err)
{
	cleanup_unlock struct image_store *held = NULL;
	struct image_gc_stats local;
	struct index ix;
	int rc;

	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (image_store_lock(s, err) == -1)
		return -1;
	held = s;
	if (image_index_load(s, &ix, err) == -1)
		return -1;
	rc = image_gc_locked(s, &ix, stats, err);
	image_index_free(&ix);
	return rc;
}

int
image_remove(struct image_store *s, const char *ref, struct image_gc_stats *stats,
             struct shoal_err *err)
{
	cleanup_unlock struct image_store *held = NULL;
	cleanup_free char *name = NULL;
	cleanup_free char *tag = NULL;
	struct image_gc_stats local;
	struct index ix;
	struct entry *e;
	int rc = -1;

	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (image_ref_split(ref, &name, &tag, NULL, err) == -1)
		return -1;
	if (image_store_lock(s, err) == -1)
		return -1;
	held = s;
	if (image_index_load(s, &ix, err) == -1)
		return -1;
	e = image_index_find(&ix, name, tag);
	if (e == NULL) {
		err_set(err, 0, "no image %s:%s", name, tag);
		err->code = ENOENT;
		goto out;
	}
	free(e->name);
	free(e->tag);
	memmove(e, e + 1, (size_t)(ix.e + ix.n - (e + 1)) * sizeof(*e));
	ix.n--;
	/* The index first: a crash mid-sweep leaves garbage, never a dangling image. */
	if (image_index_save(s, &ix, err) == -1)
		goto out;
	rc = image_gc_locked(s, &ix, stats, err);
out:
	image_index_free(&ix);
	return rc;
}
