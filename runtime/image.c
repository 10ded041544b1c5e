#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <jansson.h>

#include "digest.h"
#include "err.h"
#include "layer.h"
#include "oci.h"
#include "reference.h"
#include "util.h"

/* json_decrefp comes with jansson (its json_auto_t). */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

/* JSON documents of an archive (index.json, manifest.json) are small; a huge one is hostile. */
#define JSON_MAX (16 << 20)

struct image_store {
	char *root;              /* absolute, canonical */
	int rootfd;              /* O_RDONLY on root: the flock lives on it */
	int locked;              /* image_store_lock depth guard: flock is not recursive */
	struct layer_limits lim; /* max_bytes: of one image's layers together */
};

/* One entry of ROOT/index.json. */
struct entry {
	char *name;
	char *tag;
	char digest[DIGEST_STR_LEN + 1];
	int64_t created_ms;
	uint64_t size;
};

struct index {
	struct entry *e;
	size_t n;
};

static void
index_free(struct index *ix)
{
	for (size_t i = 0; i < ix->n; i++) {
		free(ix->e[i].name);
		free(ix->e[i].tag);
	}
	free(ix->e);
	ix->e = NULL;
	ix->n = 0;
}

/* ROOT/dir, or ROOT/dir/name. Caller frees. */
static char *
store_path(const struct image_store *s, const char *dir, const char *name)
{
	if (name == NULL)
		return xasprintf("%s/%s", s->root, dir);
	return xasprintf("%s/%s/%s", s->root, dir, name);
}

/* The limits from the environment (image.h), else the defaults. */
static int
limits_from_env(struct layer_limits *lim, struct shoal_err *err)
{
	const char *size = getenv("SHOAL_IMAGE_MAX_SIZE");
	const char *ratio = getenv("SHOAL_LAYER_MAX_RATIO");

	lim->max_bytes = LAYER_DEFAULT_MAX_BYTES;
	lim->max_ratio = LAYER_DEFAULT_MAX_RATIO;
	lim->ratio_floor = LAYER_DEFAULT_RATIO_FLOOR;
	if (size && size[0]) {
		int64_t b;
		if (util_parse_bytes(size, &b, err) == -1 || b <= 0)
			return err_set(err, 0, "SHOAL_IMAGE_MAX_SIZE=%s: want a size such as 8Gi",
			               size);
		lim->max_bytes = (uint64_t)b;
	}
	if (ratio && ratio[0]) {
		char *end;
		errno = 0;
		unsigned long long r = strtoull(ratio, &end, 10);
		if (end == ratio || *end || errno || ratio[0] == '-')
			return err_set(
			    err, 0, "SHOAL_LAYER_MAX_RATIO=%s: want a whole number (0: no check)",
			    ratio);
		lim->max_ratio = r;
	}
	return 0;
}

void
image_store_set_limits(struct image_store *s, uint64_t max_image_bytes, uint64_t max_ratio)
{
	s->lim.max_bytes = max_image_bytes;
	s->lim.max_ratio = max_ratio;
}

/*
 * A reference as the index keys it: Docker's familiar name ("nginx", "local/nginx",
 * "localhost:5000/shoal/web", whatever domain/library/ spelling the user or the archive chose)
 * and the tag; a reference by digest alone is keyed by the digest in place of the tag. digest
 * (may be NULL) receives the "@sha256:" part or NULL. Caller frees.
 */
static int
store_ref(const char *ref, char **name, char **tag, char **digest, struct shoal_err *err)
{
	struct reference r;

	*name = *tag = NULL;
	if (digest)
		*digest = NULL;
	if (reference_parse(ref, &r, err) == -1)
		return -1;
	*name = reference_familiar_name(&r);
	*tag = xstrdup(r.tag ? r.tag : r.digest);
	if (digest && r.digest)
		*digest = xstrdup(r.digest);
	reference_free(&r);
	return 0;
}

struct image_store *
image_store_open(const char *root, struct shoal_err *err)
{
	static const char *const dirs[] = {"blobs/sha256", "layers", "tmp"};
	struct image_store *s;
	char *real;

	if (util_mkdir_p(root, 0711, err) == -1)
		return NULL;
	real = realpath(root, NULL);
	if (real == NULL) {
		err_set(err, errno, "%s", root);
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->root = real;
	s->rootfd = -1;
	if (limits_from_env(&s->lim, err) == -1)
		goto fail;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		cleanup_free char *p = xasprintf("%s/%s", real, dirs[i]);
		if (util_mkdir_p(p, 0700, err) == -1)
			goto fail;
	}
	s->rootfd = open(real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->rootfd == -1) {
		err_set(err, errno, "open %s", real);
		goto fail;
	}
	return s;
fail:
	image_store_close(s);
	return NULL;
}

void
image_store_close(struct image_store *s)
{
	if (s == NULL)
		return;
	if (s->rootfd >= 0)
		close(s->rootfd);
	free(s->root);
	free(s);
}

const char *
image_store_root(const struct image_store *s)
{
	return s->root;
}

int
image_store_lock(struct image_store *s, struct shoal_err *err)
{
	SHOAL_ASSERT(!s->locked);
	while (flock(s->rootfd, LOCK_EX) == -1)
		if (errno != EINTR)
			return err_set(err, errno, "lock %s", s->root);
	s->locked = 1;
	return 0;
}

void
image_store_unlock(struct image_store *s)
{
	if (!s->locked)
		return;
	flock(s->rootfd, LOCK_UN);
	s->locked = 0;
}

static void
unlockp(struct image_store **s)
{
	if (*s)
		image_store_unlock(*s);
}
#define cleanup_unlock __attribute__((cleanup(unlockp)))

/* ---- index ------------------------------------------------------------------------------- */

static int
index_load(struct image_store *s, struct index *ix, struct shoal_err *err)
{
	cleanup_free char *path = store_path(s, "index.json", NULL);
	cleanup_free char *text = NULL;
	cleanup_json json_t *j = NULL;
	json_error_t je;
	json_t *imgs, *v;
	size_t i;

	memset(ix, 0, sizeof(*ix));
	text = util_read_file(path, NULL, err);
	if (text == NULL)
		return err->code == ENOENT ? (err_clear(err), 0) : -1;
	j = json_loads(text, 0, &je);
	if (j == NULL)
		return err_set(err, 0, "%s: line %d: %s", path, je.line, je.text);
	imgs = json_object_get(j, "images");
	if (!json_is_array(imgs))
		return err_set(err, 0, "%s: no \"images\" list", path);
	ix->e = xcalloc(json_array_size(imgs) + 1, sizeof(*ix->e));
	json_array_foreach(imgs, i, v)
	{
		struct entry *e = &ix->e[ix->n];
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *tag = json_string_value(json_object_get(v, "tag"));
		const char *digest = json_string_value(json_object_get(v, "digest"));
		char hex[DIGEST_HEX_LEN + 1];

		if (name == NULL || tag == NULL || digest_parse(digest, hex, err) == -1) {
			index_free(ix);
			return err_set(err, 0, "%s: image %zu: missing name, tag or digest", path,
			               i);
		}
		/* Entries written before names were normalised ("docker.io/x/y") read as
		 * their familiar name, so every spelling finds them. */
		if (store_ref(name, &e->name, &e->tag, NULL, err) == 0) {
			free(e->tag);
		} else {
			free(e->name);
			e->name = xstrdup(name);
		}
		e->tag = xstrdup(tag);
		snprintf(e->digest, sizeof(e->digest), "sha256:%s", hex);
		e->created_ms = json_integer_value(json_object_get(v, "created_ms"));
		e->size = (uint64_t)json_integer_value(json_object_get(v, "size"));
		ix->n++;
	}
	return 0;
}

static int
index_save(struct image_store *s, const struct index *ix, struct shoal_err *err)
{
	cleanup_free char *path = store_path(s, "index.json", NULL);
	cleanup_json json_t *j = json_object();
	json_t *imgs = json_array();
	cleanup_free char *text = NULL;

	for (size_t i = 0; i < ix->n; i++) {
		const struct entry *e = &ix->e[i];
		json_array_append_new(imgs, json_pack("{s:s, s:s, s:s, s:I, s:I}", "name", e->name,
		                                      "tag", e->tag, "digest", e->digest,
		                                      "created_ms", (json_int_t)e->created_ms,
		                                      "size", (json_int_t)e->size));
	}
	json_object_set_new(j, "images", imgs);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	SHOAL_ASSERT(text != NULL);
	return util_write_file_atomic(path, text, strlen(text), 0644, err);
}

static struct entry *
index_find(struct index *ix, const char *name, const char *tag)
{
	for (size_t i = 0; i < ix->n; i++)
		if (strcmp(ix->e[i].name, name) == 0 && strcmp(ix->e[i].tag, tag) == 0)
			return &ix->e[i];
	return NULL;
}

/* ---- reading images back ----------------------------------------------------------------- */

void
image_free(struct image *img)
{
	if (img == NULL)
		return;
	free(img->name);
	free(img->tag);
	oci_strv_free(img->layer_dirs);
	oci_strv_free(img->layer_digests);
	oci_strv_free(img->entrypoint);
	oci_strv_free(img->cmd);
	oci_strv_free(img->env);
	free(img->workdir);
	free(img->user);
	free(img);
}

static int
path_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

static char *
read_blob(struct image_store *s, const char *digest, struct shoal_err *err)
{
	cleanup_free char *path = store_path(s, "blobs/sha256", digest + 7);
	return util_read_file(path, NULL, err);
}

/*
 * The directory under layers/ that holds layer blob_digest whose diff_id (NULL if the config
 * lists none) is given: layers are unpacked by diff_id, so one layer in gzip, zstd and plain is
 * unpacked once. A store written before that keyed them by the compressed blob's digest: such
 * a directory is used while no diff_id directory exists (containers list it by that name).
 */
static const char *
layer_key(const struct image_store *s, const char *blob_digest, const char *diff_id)
{
	cleanup_free char *byid = NULL;
	cleanup_free char *old = NULL;

	if (diff_id == NULL || !digest_is_hex(diff_id + 7))
		return blob_digest + 7;
	byid = store_path(s, "layers", diff_id + 7);
	old = store_path(s, "layers", blob_digest + 7);
	if (!path_exists(byid) && path_exists(old))
		return blob_digest + 7;
	return diff_id + 7;
}

/* Build what a container needs from an index entry: manifest and config from the store. */
static struct image *
image_from_entry(struct image_store *s, const struct entry *e, struct shoal_err *err)
{
	struct oci_manifest m = {0};
	struct oci_config c = {0};
	cleanup_free char *mtext = NULL;
	cleanup_free char *ctext = NULL;
	struct image *img;

	mtext = read_blob(s, e->digest, err);
	if (mtext == NULL || oci_parse_manifest(mtext, NULL, &m, err) == -1)
		goto fail;
	ctext = read_blob(s, m.config.digest, err);
	if (ctext == NULL || oci_parse_config(ctext, &c, err) == -1) {
		oci_manifest_free(&m);
		goto fail;
	}
	img = xcalloc(1, sizeof(*img));
	img->name = xstrdup(e->name);
	img->tag = xstrdup(e->tag);
	snprintf(img->digest, sizeof(img->digest), "%s", e->digest);
	img->nlayers = m.nlayers;
	img->layer_dirs = xcalloc(m.nlayers + 1, sizeof(char *));
	img->layer_digests = xcalloc(m.nlayers + 1, sizeof(char *));
	for (size_t i = 0; i < m.nlayers; i++) {
		const char *key = layer_key(s, m.layers[i].digest,
		                            c.diff_ids && i < c.ndiff_ids ? c.diff_ids[i] : NULL);
		img->layer_digests[i] = xstrdup(key);
		img->layer_dirs[i] = store_path(s, "layers", key);
	}
	img->entrypoint = steal_ptr(&c.entrypoint);
	img->cmd = steal_ptr(&c.cmd);
	img->env = steal_ptr(&c.env);
	img->workdir = steal_ptr(&c.workdir);
	img->user = steal_ptr(&c.user);
	img->created_ms = e->created_ms;
	img->size = e->size;
	oci_manifest_free(&m);
	oci_config_free(&c);
	return img;
fail:
	err_prefix(err, "image %s:%s", e->name, e->tag);
	return NULL;
}

struct image *
image_get(struct image_store *s, const char *ref, struct shoal_err *err)
{
	cleanup_free char *name = NULL;
	cleanup_free char *tag = NULL;
	cleanup_free char *digest = NULL;
	struct index ix;
	struct entry *e;
	struct image *img;

	if (store_ref(ref, &name, &tag, &digest, err) == -1)
		return NULL;
	if (index_load(s, &ix, err) == -1)
		return NULL;
	e = index_find(&ix, name, tag);
	/* name@digest: any tag of that name whose manifest it is. */
	for (size_t i = 0; e == NULL && digest && i < ix.n; i++)
		if (strcmp(ix.e[i].name, name) == 0 && strcmp(ix.e[i].digest, digest) == 0)
			e = &ix.e[i];
	if (e == NULL) {
		err_set(err, 0, "no image %s:%s", name, tag);
		err->code = ENOENT; /* callers may test it; the message says it better */
		index_free(&ix);
		return NULL;
	}
	img = image_from_entry(s, e, err);
	index_free(&ix);
	return img;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->tag, y->tag);
}

int
image_list(struct image_store *s, struct image ***imgs, size_t *n, struct shoal_err *err)
{
	struct index ix;
	struct image **out;

	*imgs = NULL;
	*n = 0;
	if (index_load(s, &ix, err) == -1)
		return -1;
	if (ix.n > 0)
		qsort(ix.e, ix.n, sizeof(*ix.e), entry_cmp);
	out = xcalloc(ix.n + 1, sizeof(*out));
	for (size_t i = 0; i < ix.n; i++) {
		out[i] = image_from_entry(s, &ix.e[i], err);
		if (out[i] == NULL) {
			image_list_free(out, i);
			index_free(&ix);
			return -1;
		}
	}
	*imgs = out;
	*n = ix.n;
	index_free(&ix);
	return 0;
}

void
image_list_free(struct image **imgs, size_t n)
{
	for (size_t i = 0; imgs && i < n; i++)
		image_free(imgs[i]);
	free(imgs);
}

void
image_refs_free(char **refs)
{
	oci_strv_free(refs);
}

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
	cleanup_free char *dir = store_path(s, "containers", NULL);
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
		cleanup_free char *mtext = read_blob(s, ix->e[i].digest, err);
		cleanup_free char *ctext = NULL;
		struct oci_manifest m;
		struct oci_config c;

		/* An image whose manifest cannot be read pins nothing else, but deleting on a
		 * guess is worse than keeping garbage: stop. */
		if (mtext == NULL || oci_parse_manifest(mtext, NULL, &m, err) == -1)
			return err_prefix(err, "image %s:%s", ix->e[i].name, ix->e[i].tag);
		ctext = read_blob(s, m.config.digest, err);
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
			hexset_add(layers,
			           layer_key(s, m.layers[k].digest,
			                     c.diff_ids && k < c.ndiff_ids ? c.diff_ids[k] : NULL));
		}
		oci_manifest_free(&m);
		oci_config_free(&c);
	}
	return 0;
}

/* Sweep with the lock held. */
static int
gc_locked(struct image_store *s, const struct index *ix, struct image_gc_stats *stats,
          struct shoal_err *err)
{
	struct hexset blobs = {0}, layers = {0};
	cleanup_free char *bdir = store_path(s, "blobs/sha256", NULL);
	cleanup_free char *ldir = store_path(s, "layers", NULL);
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
	if (index_load(s, &ix, err) == -1)
		return -1;
	rc = gc_locked(s, &ix, stats, err);
	index_free(&ix);
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
	if (store_ref(ref, &name, &tag, NULL, err) == -1)
		return -1;
	if (image_store_lock(s, err) == -1)
		return -1;
	held = s;
	if (index_load(s, &ix, err) == -1)
		return -1;
	e = index_find(&ix, name, tag);
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
	if (index_save(s, &ix, err) == -1)
		goto out;
	rc = gc_locked(s, &ix, stats, err);
out:
	index_free(&ix);
	return rc;
}

/* ---- import ------------------------------------------------------------------------------ */

static int import_path(struct image_store *s, const char *path, const char *ref, char ***refs,
                       int verified, struct shoal_err *err);

/* An image verified and staged, waiting for the commit. */
struct staged {
	char *name;
	char *tag;
	char digest[DIGEST_STR_LEN + 1]; /* manifest */
	char **blobs;                    /* hex of manifest, config and layers (NULL-terminated) */
	char **layers;                   /* hex of layers */
	uint64_t size;
};

struct import {
	struct image_store *s;
	const char *ref; /* the user's NAME:TAG, or NULL */
	char *tmp;       /* ROOT/tmp/import-XXXXXX, removed at the end whatever happens */
	int srcfd;       /* the layout or archive's top directory */
	int verified;    /* image_import_verified: the source's blobs were checked by the caller */
	struct staged *imgs;
	size_t nimgs;
};

/*
 * Open rel inside the archive's top directory as if it were the root: symlinks in the archive
 * (docker save links duplicate layers) resolve inside it, never to a host file.
 */
static int
open_in(int dirfd, const char *rel, struct shoal_err *err)
{
	struct open_how how = {
	    .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	struct stat st;

	if (fd == -1)
		return err_set(err, errno, "open %s", rel);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, 0, "%s: not a regular file", rel);
	}
	return fd;
}

static int
exists_in(int dirfd, const char *rel)
{
	struct shoal_err e;
	int fd = open_in(dirfd, rel, &e);

	if (fd == -1)
		return 0;
	close(fd);
	return 1;
}

static char *
read_in(int dirfd, const char *rel, struct shoal_err *err)
{
	cleanup_close int fd = open_in(dirfd, rel, err);
	struct stat st;
	char *buf;
	size_t n = 0;

	if (fd == -1)
		return NULL;
	if (fstat(fd, &st) == -1 || st.st_size > JSON_MAX) {
		err_set(err, EFBIG, "%s", rel);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (n < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			err_set(err, r == 0 ? EIO : errno, "read %s", rel);
			free(buf);
			return NULL;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	if (strlen(buf) != n) {
		err_set(err, 0, "%s: NUL byte in JSON", rel);
		free(buf);
		return NULL;
	}
	return buf;
}

/* Where a verified blob lives now: staged in this import, else already in the store. */
static char *
blob_location(struct import *imp, const char *hex)
{
	char *p = xasprintf("%s/blobs/%s", imp->tmp, hex);

	if (path_exists(p))
		return p;
	free(p);
	return store_path(imp->s, "blobs/sha256", hex);
}

/*
 * Copy the archive's file rel into the staging area while hashing it, and check it against
 * want (a digest, or NULL to learn it) and want_size (-1 when unknown). The digest is written
 * to got. A blob the store already holds is hashed but not copied. what names it for messages.
 */
static int
stage_blob(struct import *imp, const char *rel, const char *want, int64_t want_size, char *got,
           const char *what, struct shoal_err *err)
{
	cleanup_close int in = -1;
	cleanup_close int out = -1;
	cleanup_free char *dst = NULL;
	cleanup_free char *final = NULL;
	char problems[sizeof(err->msg)] = "";
	char a[40], b[40];
	uint64_t size;
	int have = 0;

	in = open_in(imp->srcfd, rel, err);
	if (in == -1) {
		if (err->code == ENOENT && want != NULL)
			return err_set(err, 0, "%s %s: missing from the archive (%s)", what,
			               digest_short(want, b, sizeof(b)), rel);
		if (err->code == ENOENT)
			return err_set(err, 0, "%s: missing from the archive (%s)", what, rel);
		return err_prefix(err, "%s", what);
	}
	if (want != NULL) {
		cleanup_free char *p = xasprintf("%s/blobs/%s", imp->tmp, want + 7);
		cleanup_free char *q = store_path(imp->s, "blobs/sha256", want + 7);
		have = path_exists(p) || path_exists(q);
	}
	/* A pull verified (digest and size) and fsynced each blob as it streamed, into a
	 * layout of its own under ROOT/tmp: move it rather than copy and hash it again. */
	if (imp->verified && want != NULL && want_size >= 0) {
		struct stat sb;
		if (fstat(in, &sb) == -1 || (uint64_t)sb.st_size != (uint64_t)want_size)
			return err_set(err, 0, "%s %s: size differs from the descriptor", what,
			               digest_short(want, b, sizeof(b)));
		snprintf(got, DIGEST_STR_LEN + 1, "%s", want);
		if (have)
			return 0;
		final = xasprintf("%s/blobs/%s", imp->tmp, want + 7);
		if (renameat(imp->srcfd, rel, AT_FDCWD, final) == -1)
			return err_set(err, errno, "rename %s", rel);
		return 0;
	}
	if (!have) {
		dst = xasprintf("%s/blobs/.incoming", imp->tmp);
		out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (out == -1)
			return err_set(err, errno, "create %s", dst);
	}
	if (digest_fd(in, out, got, &size, err) == -1)
		return err_prefix(err, "%s: %s", what, rel);
	/* Both problems when both: "truncated" explains the mismatch. */
	if (want != NULL && strcmp(got, want) != 0)
		snprintf(problems, sizeof(problems), "digest mismatch (got %s)",
		         digest_short(got, a, sizeof(a)));
	if (want_size >= 0 && size != (uint64_t)want_size) {
		size_t n = strlen(problems);
		snprintf(problems + n, sizeof(problems) - n,
		         "%s%llu bytes, descriptor says %lld (%s)", n ? "; " : "",
		         (unsigned long long)size, (long long)want_size,
		         size < (uint64_t)want_size ? "truncated" : "too long");
	}
	if (problems[0])
		return err_set(err, 0, "%s %s: %s", what,
		               digest_short(want ? want : got, b, sizeof(b)), problems);
	if (!have) {
		if (fsync(out) == -1)
			return err_set(err, errno, "fsync %s", dst);
		final = xasprintf("%s/blobs/%s", imp->tmp, got + 7);
		if (rename(dst, final) == -1)
			return err_set(err, errno, "rename %s", dst);
	}
	return 0;
}

/* Where to change a limit, for the message of an import that hit one. */
#define LIMITS_HINT "limits: SHOAL_IMAGE_MAX_SIZE, SHOAL_LAYER_MAX_RATIO"

/* The store or this import has the unpacked layer named hex. */
static int
layer_present(struct import *imp, const char *hex)
{
	cleanup_free char *stored = store_path(imp->s, "layers", hex);
	cleanup_free char *dir = xasprintf("%s/layers/%s", imp->tmp, hex);
	return path_exists(stored) || path_exists(dir);
}

/*
 * Unpack a verified layer blob into layers/<key> unless the store or this import already has
 * it. key is the diff_id's hex when the config lists one (checked against the decompressed
 * stream: a mismatch refuses the import), else the blob's. used: what the image's earlier
 * layers took of the store's max_bytes, which bounds this one.
 */
static int
stage_layer(struct import *imp, const char *digest, const char *diff_id, uint64_t used,
            uint64_t *size, struct shoal_err *err)
{
	const char *hex = diff_id ? diff_id + 7 : digest + 7;
	cleanup_free char *stored = store_path(imp->s, "layers", hex);
	cleanup_free char *dir = xasprintf("%s/layers/%s", imp->tmp, hex);
	cleanup_free char *blob = NULL;
	struct layer_limits lim = imp->s->lim;
	struct layer_stats ls;
	char a[40], b[40];

	if (path_exists(stored))
		return layer_size(stored, size, err);
	if (!path_exists(dir)) {
		blob = blob_location(imp, digest + 7);
		if (mkdir(dir, 0755) == -1)
			return err_set(err, errno, "mkdir %s", dir);
		if (lim.max_bytes)
			lim.max_bytes = used < lim.max_bytes ? lim.max_bytes - used : 1;
		if (layer_unpack_limited(blob, dir, LAYER_OCI, &lim, &ls, err) == -1) {
			err_prefix(err, "layer %s", digest_short(digest, a, sizeof(a)));
			if (err->code == EFBIG) {
				size_t n = strlen(err->msg);
				snprintf(err->msg + n, sizeof(err->msg) - n, " (%s)", LIMITS_HINT);
			}
			return -1;
		}
		/* The directory is named by what the config claims: hold it to that (the
		 * import's tmp is removed on failure, so the store stays as it was). */
		if (diff_id && strcmp(ls.diff_id, diff_id) != 0)
			return err_set(err, 0,
			               "layer %s: uncompressed digest %s, config's diff_id says %s",
			               digest_short(digest, a, sizeof(a)),
			               digest_short(ls.diff_id, b, sizeof(b)), diff_id);
	}
	return layer_size(dir, size, err);
}

static void
staged_free(struct staged *st)
{
	free(st->name);
	free(st->tag);
	oci_strv_free(st->blobs);
	oci_strv_free(st->layers);
}

/* Add an image to the plan; takes name and tag. */
static struct staged *
staged_add(struct import *imp, char *name, char *tag)
{
	struct staged *st;

	imp->imgs = xrealloc(imp->imgs, (imp->nimgs + 1) * sizeof(*imp->imgs));
	st = &imp->imgs[imp->nimgs++];
	memset(st, 0, sizeof(*st));
	st->name = name;
	st->tag = tag;
	return st;
}

/*
 * Stage an image's config and layers (manifest already staged): check the config parses,
 * that its diff_ids count matches, and unpack each layer.
 */
static int
stage_image_body(struct import *imp, struct staged *st, const struct oci_manifest *m,
                 const char *const *layer_src, const char *config_src, struct shoal_err *err)
{
	cleanup_free char *cpath = NULL;
	cleanup_free char *ctext = NULL;
	struct oci_config c;
	char got[DIGEST_STR_LEN + 1], a[40];

	if (stage_blob(imp, config_src, m->config.digest, m->config.size, got, "config", err) == -1)
		return -1;
	cpath = blob_location(imp, m->config.digest + 7);
	ctext = util_read_file(cpath, NULL, err);
	if (ctext == NULL || oci_parse_config(ctext, &c, err) == -1)
		return err_prefix(err, "config %s", digest_short(m->config.digest, a, sizeof(a)));
	if (c.diff_ids && c.ndiff_ids != m->nlayers) {
		oci_config_free(&c);
		return err_set(err, 0, "config lists %zu layers (rootfs.diff_ids), manifest %zu",
		               c.ndiff_ids, m->nlayers);
	}
	for (size_t i = 0; c.diff_ids && i < c.ndiff_ids; i++) {
		char hex[DIGEST_HEX_LEN + 1];
		if (digest_parse(c.diff_ids[i], hex, err) == -1) {
			oci_config_free(&c);
			return err_prefix(err, "config: rootfs.diff_ids[%zu]", i);
		}
	}
	st->blobs = xcalloc(m->nlayers + 3, sizeof(char *));
	st->layers = xcalloc(m->nlayers + 1, sizeof(char *));
	st->blobs[0] = xstrdup(st->digest + 7);
	st->blobs[1] = xstrdup(m->config.digest + 7);
	for (size_t i = 0, nb = 2; i < m->nlayers; i++) {
		const struct oci_desc *l = &m->layers[i];
		const char *diff_id = c.diff_ids ? c.diff_ids[i] : NULL;
		uint64_t lsize;
		int no_blob = 0;

		if (layer_src != NULL) {
			/* docker save: the blob was staged (and its digest learnt) already */
		} else {
			cleanup_free char *rel = xasprintf("blobs/sha256/%s", l->digest + 7);
			/* A pull skips a layer the store has by diff_id in another compression:
			 * its blob is then absent, and not needed. */
			no_blob = diff_id && layer_present(imp, diff_id + 7) &&
			          !exists_in(imp->srcfd, rel);
			if (!no_blob &&
			    stage_blob(imp, rel, l->digest, l->size, got, "layer", err) == -1)
				goto fail;
		}
		if (stage_layer(imp, l->digest, diff_id, st->size, &lsize, err) == -1)
			goto fail;
		st->size += lsize;
		/* Layers the store already had count too: the cap is on the image. */
		if (imp->s->lim.max_bytes && st->size > imp->s->lim.max_bytes) {
			char h[32];
			err_set(err, 0, "image unpacks to more than %s (%s)",
			        util_format_bytes((int64_t)imp->s->lim.max_bytes, h, sizeof(h)),
			        LIMITS_HINT);
			err->code = EFBIG;
			goto fail;
		}
		if (!no_blob)
			st->blobs[nb++] = xstrdup(l->digest + 7);
		st->layers[i] = xstrdup(diff_id ? diff_id + 7 : l->digest + 7);
	}
	oci_config_free(&c);
	return 0;
fail:
	oci_config_free(&c);
	return -1;
}

/* Pick the manifest of our platform out of a nested index (a multi-arch image). */
static int
pick_platform(struct import *imp, struct oci_desc *d, struct shoal_err *err)
{
#if defined(__x86_64__)
	const char *want = "linux/amd64";
#elif defined(__aarch64__)
	const char *want = "linux/arm64";
#else
	const char *want = "linux/unknown";
#endif
	cleanup_free char *rel = xasprintf("blobs/sha256/%s", d->digest + 7);
	cleanup_free char *path = NULL;
	cleanup_free char *text = NULL;
	struct oci_desc *ds = NULL;
	size_t n = 0, pick = SIZE_MAX;
	char got[DIGEST_STR_LEN + 1];

	if (stage_blob(imp, rel, d->digest, d->size, got, "index", err) == -1)
		return -1;
	path = blob_location(imp, d->digest + 7);
	text = util_read_file(path, NULL, err);
	if (text == NULL || oci_parse_index(text, &ds, &n, err) == -1)
		return -1;
	for (size_t i = 0; i < n && pick == SIZE_MAX; i++)
		if (oci_media_kind(ds[i].media_type) == OCI_KIND_MANIFEST &&
		    (n == 1 || (ds[i].platform && strcmp(ds[i].platform, want) == 0)))
			pick = i;
	if (pick == SIZE_MAX) {
		oci_descs_free(ds, n);
		return err_set(err, 0, "index %s: no manifest for %s", d->digest, want);
	}
	free(d->media_type);
	d->media_type = steal_ptr(&ds[pick].media_type);
	snprintf(d->digest, sizeof(d->digest), "%s", ds[pick].digest);
	d->size = ds[pick].size;
	oci_descs_free(ds, n);
	return 0;
}

/* The name an index entry gives its image, or an error saying how to name it. */
static int
oci_entry_name(const struct oci_desc *d, char **name, char **tag, struct shoal_err *err)
{
	if (d->ref_name == NULL)
		return err_set(err, 0, "manifest %.19s… has no %s annotation: give NAME:TAG",
		               d->digest, OCI_ANN_REF_NAME);
	if (strchr(d->ref_name, ':') == NULL && strchr(d->ref_name, '/') == NULL)
		return err_set(err, 0,
		               "manifest %.19s… is named only by its tag \"%s\": give "
		               "NAME:TAG",
		               d->digest, d->ref_name);
	return store_ref(d->ref_name, name, tag, NULL, err);
}

/* Does index entry d answer to the user's reference? Its full name, or just the tag. */
static int
oci_entry_matches(const struct oci_desc *d, const char *name, const char *tag)
{
	cleanup_free char *rn = NULL;
	cleanup_free char *rt = NULL;
	struct shoal_err e;

	if (d->ref_name == NULL)
		return 0;
	if (strcmp(d->ref_name, tag) == 0)
		return 1;
	/* Any spelling of the same reference ("docker.io/library/x:latest" is "x"). */
	return store_ref(d->ref_name, &rn, &rt, NULL, &e) == 0 && strcmp(rn, name) == 0 &&
	       strcmp(rt, tag) == 0;
}

static int
import_oci(struct import *imp, struct shoal_err *err)
{
	cleanup_free char *text = NULL;
	cleanup_free char *uname = NULL;
	cleanup_free char *utag = NULL;
	struct oci_desc *ds = NULL;
	size_t n = 0, matched = 0;
	int rc = -1;

	if (exists_in(imp->srcfd, "oci-layout")) {
		cleanup_free char *lt = read_in(imp->srcfd, "oci-layout", err);
		if (lt == NULL)
			return -1;
		if (strstr(lt, "\"imageLayoutVersion\"") == NULL || strstr(lt, "\"1.") == NULL)
			return err_set(err, 0, "oci-layout: unsupported imageLayoutVersion");
	}
	text = read_in(imp->srcfd, "index.json", err);
	if (text == NULL || oci_parse_index(text, &ds, &n, err) == -1)
		return -1;
	if (imp->ref && store_ref(imp->ref, &uname, &utag, NULL, err) == -1)
		goto out;
	if (imp->ref && n > 1)
		for (size_t i = 0; i < n; i++)
			matched += (size_t)oci_entry_matches(&ds[i], uname, utag);
	if (imp->ref && n > 1 && matched != 1) {
		err_set(err, 0, "the layout holds %zu images and %s of them is named %s", n,
		        matched ? "more than one" : "none", imp->ref);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct oci_desc *d = &ds[i];
		cleanup_free char *mtext = NULL;
		cleanup_free char *mpath = NULL;
		cleanup_free char *rel = NULL;
		struct oci_manifest m;
		struct staged *st;
		char *name = NULL, *tag = NULL;
		char got[DIGEST_STR_LEN + 1], a[40];
		int r;

		if (imp->ref && n > 1 && !oci_entry_matches(d, uname, utag))
			continue;
		if (imp->ref) {
			name = xstrdup(uname);
			tag = xstrdup(utag);
		} else if (oci_entry_name(d, &name, &tag, err) == -1) {
			goto out;
		}
		st = staged_add(imp, name, tag);
		if (oci_media_kind(d->media_type) == OCI_KIND_INDEX &&
		    pick_platform(imp, d, err) == -1)
			goto out;
		if (d->media_type && oci_media_kind(d->media_type) != OCI_KIND_MANIFEST) {
			err_set(err, 0, "manifest %s: unknown media type %s",
			        digest_short(d->digest, a, sizeof(a)), d->media_type);
			goto out;
		}
		rel = xasprintf("blobs/sha256/%s", d->digest + 7);
		if (stage_blob(imp, rel, d->digest, d->size, got, "manifest", err) == -1)
			goto out;
		snprintf(st->digest, sizeof(st->digest), "%s", d->digest);
		mpath = blob_location(imp, d->digest + 7);
		mtext = util_read_file(mpath, NULL, err);
		if (mtext == NULL || oci_parse_manifest(mtext, d->media_type, &m, err) == -1) {
			err_prefix(err, "manifest %s", digest_short(d->digest, a, sizeof(a)));
			goto out;
		}
		rel = (free(rel), xasprintf("blobs/sha256/%s", m.config.digest + 7));
		r = stage_image_body(imp, st, &m, NULL, rel, err);
		oci_manifest_free(&m);
		if (r == -1)
			goto out;
	}
	rc = 0;
out:
	oci_descs_free(ds, n);
	return rc;
}

/* A digest that a docker save path spells ("<hex>.json", "blobs/sha256/<hex>"), or NULL. */
static const char *
digest_from_path(const char *rel, char *buf, size_t len)
{
	const char *base = strrchr(rel, '/');
	char hex[DIGEST_HEX_LEN + 1];

	base = base ? base + 1 : rel;
	if (strlen(base) < DIGEST_HEX_LEN)
		return NULL;
	memcpy(hex, base, DIGEST_HEX_LEN);
	hex[DIGEST_HEX_LEN] = '\0';
	if (!digest_is_hex(hex))
		return NULL;
	if (strcmp(base + DIGEST_HEX_LEN, ".json") != 0 &&
	    !(base[DIGEST_HEX_LEN] == '\0' && strstr(rel, "sha256/") != NULL))
		return NULL;
	snprintf(buf, len, "sha256:%s", hex);
	return buf;
}

/* The media type a layer's first bytes announce (docker save layers carry none). */
static const char *
sniff_layer_type(const char *path)
{
	unsigned char m[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r = fd == -1 ? -1 : read(fd, m, sizeof(m));

	if (fd != -1)
		close(fd);
	if (r >= 2 && m[0] == 0x1f && m[1] == 0x8b)
		return OCI_MT_LAYER_GZIP;
	if (r == 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	return OCI_MT_LAYER;
}

/* Names a docker save image answers to: the user's, RepoTags, else the repositories file. */
static char **
docker_names(struct import *imp, const struct oci_docker_image *di, size_t nimgs,
             struct shoal_err *err)
{
	char **names;

	if (imp->ref) {
		names = xcalloc(2, sizeof(char *));
		names[0] = xstrdup(imp->ref);
		return names;
	}
	if (di->repo_tags && di->repo_tags[0]) {
		size_t n = 0;
		while (di->repo_tags[n])
			n++;
		names = xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			names[i] = xstrdup(di->repo_tags[i]);
		return names;
	}
	if (nimgs == 1 && exists_in(imp->srcfd, "repositories")) {
		cleanup_free char *text = read_in(imp->srcfd, "repositories", err);
		if (text == NULL)
			return NULL;
		names = oci_parse_docker_repositories(text, err);
		if (names && names[0])
			return names;
		oci_strv_free(names);
	}
	err_set(err, 0, "image %s has no RepoTags: give NAME:TAG", di->config);
	return NULL;
}

static int
import_docker(struct import *imp, struct shoal_err *err)
{
	cleanup_free char *text = read_in(imp->srcfd, "manifest.json", err);
	struct oci_docker_image *dis = NULL;
	size_t n = 0;
	int rc = -1;

	if (text == NULL || oci_parse_docker_manifest(text, &dis, &n, err) == -1)
		return -1;
	if (imp->ref && n > 1) {
		err_set(err, 0, "the archive holds %zu images: import it without NAME:TAG", n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct oci_docker_image *di = &dis[i];
		struct oci_manifest m = {0};
		cleanup_free char *ctext = NULL;
		cleanup_free char *mtext = NULL;
		cleanup_free char *cpath = NULL;
		cleanup_free char *mpath = NULL;
		char **names = NULL;
		struct oci_config c = {0};
		char hint[DIGEST_STR_LEN + 1], got[DIGEST_STR_LEN + 1], a[40], b[40];
		const char *want;
		struct staged *first = NULL;
		int r = -1;

		names = docker_names(imp, di, n, err);
		if (names == NULL)
			goto out;
		/* docker names the config by its digest: a mismatch is a damaged archive. */
		want = digest_from_path(di->config, hint, sizeof(hint));
		if (stage_blob(imp, di->config, want, -1, got, "config", err) == -1)
			goto next;
		cpath = blob_location(imp, got + 7);
		ctext = util_read_file(cpath, NULL, err);
		if (ctext == NULL || oci_parse_config(ctext, &c, err) == -1)
			goto next;
		if (c.diff_ids && c.ndiff_ids != di->nlayers) {
			err_set(err, 0,
			        "config lists %zu layers (rootfs.diff_ids), manifest.json %zu",
			        c.ndiff_ids, di->nlayers);
			goto next;
		}
		m.config.media_type = xstrdup(OCI_MT_CONFIG);
		snprintf(m.config.digest, sizeof(m.config.digest), "%s", got);
		m.config.size = (int64_t)strlen(ctext);
		m.nlayers = di->nlayers;
		m.layers = xcalloc(di->nlayers + 1, sizeof(*m.layers));
		for (size_t k = 0; k < di->nlayers; k++) {
			struct oci_desc *l = &m.layers[k];
			cleanup_free char *lpath = NULL;
			struct stat sb;

			want = digest_from_path(di->layers[k], hint, sizeof(hint));
			if (stage_blob(imp, di->layers[k], want, -1, l->digest, "layer", err) == -1)
				goto next;
			lpath = blob_location(imp, l->digest + 7);
			l->media_type = xstrdup(sniff_layer_type(lpath));
			l->size = stat(lpath, &sb) == 0 ? (int64_t)sb.st_size : 0;
			/* An uncompressed layer's digest is its diff_id: the config vouches for it.
			 */
			if (strcmp(l->media_type, OCI_MT_LAYER) == 0 && c.diff_ids &&
			    strcmp(c.diff_ids[k], l->digest) != 0) {
				err_set(err, 0, "layer %s (%s): digest mismatch (config says %s)",
				        digest_short(l->digest, a, sizeof(a)), di->layers[k],
				        digest_short(c.diff_ids[k], b, sizeof(b)));
				goto next;
			}
		}
		/* docker save has no manifest: write the OCI one that describes what we got. */
		mtext = oci_build_manifest(&m.config, m.layers, m.nlayers);
		digest_buf(mtext, strlen(mtext), got);
		mpath = xasprintf("%s/blobs/%s", imp->tmp, got + 7);
		if (util_write_file_atomic(mpath, mtext, strlen(mtext), 0644, err) == -1)
			goto next;
		for (size_t t = 0; names[t]; t++) {
			char *name = NULL, *tag = NULL;
			struct staged *st;

			if (store_ref(names[t], &name, &tag, NULL, err) == -1)
				goto next;
			st = staged_add(imp, name, tag);
			snprintf(st->digest, sizeof(st->digest), "%s", got);
			if (first == NULL) {
				/* Layers were staged by path above; the body only unpacks them. */
				if (stage_image_body(imp, st, &m, (const char *const *)di->layers,
				                     di->config, err) == -1)
					goto next;
				first = st;
			} else {
				st->size = first->size;
				st->blobs = xcalloc(m.nlayers + 3, sizeof(char *));
				st->layers = xcalloc(m.nlayers + 1, sizeof(char *));
				for (size_t k = 0; first->blobs[k]; k++)
					st->blobs[k] = xstrdup(first->blobs[k]);
				for (size_t k = 0; first->layers[k]; k++)
					st->layers[k] = xstrdup(first->layers[k]);
			}
		}
		r = 0;
	next:
		oci_manifest_free(&m);
		oci_config_free(&c);
		oci_strv_free(names);
		if (r == -1)
			goto out;
	}
	rc = 0;
out:
	oci_docker_images_free(dis, n);
	return rc;
}

/* Move a staged file or directory into the store unless it is there already. */
static int
commit_one(struct import *imp, const char *kind, const char *from_dir, const char *hex,
           struct shoal_err *err)
{
	cleanup_free char *from = xasprintf("%s/%s/%s", imp->tmp, from_dir, hex);
	cleanup_free char *to = store_path(imp->s, kind, hex);

	if (path_exists(to))
		return 0;
	if (!path_exists(from))
		return err_set(err, 0, "%s %s was removed from the store during the import: retry",
		               from_dir, hex);
	if (rename(from, to) == -1)
		return err_set(err, errno, "rename into %s", to);
	return 0;
}

static int
commit(struct import *imp, struct shoal_err *err)
{
	cleanup_unlock struct image_store *held = NULL;
	struct index ix;
	struct image_gc_stats gc = {0};
	int replaced = 0, rc = -1;
	int64_t now = util_wall_ms();

	if (image_store_lock(imp->s, err) == -1)
		return -1;
	held = imp->s;
	if (index_load(imp->s, &ix, err) == -1)
		return -1;
	/* Layers and blobs first, the index last: until it is written nothing refers to them,
	 * and a crash leaves garbage the next gc removes, not a broken image. */
	for (size_t i = 0; i < imp->nimgs; i++) {
		struct staged *st = &imp->imgs[i];
		for (size_t k = 0; st->layers[k]; k++)
			if (commit_one(imp, "layers", "layers", st->layers[k], err) == -1)
				goto out;
		for (size_t k = 0; st->blobs[k]; k++)
			if (commit_one(imp, "blobs/sha256", "blobs", st->blobs[k], err) == -1)
				goto out;
	}
	for (size_t i = 0; i < imp->nimgs; i++) {
		struct staged *st = &imp->imgs[i];
		struct entry *e = index_find(&ix, st->name, st->tag);

		if (e == NULL) {
			ix.e = xrealloc(ix.e, (ix.n + 1) * sizeof(*ix.e));
			e = &ix.e[ix.n++];
			e->name = xstrdup(st->name);
			e->tag = xstrdup(st->tag);
		} else if (strcmp(e->digest, st->digest) != 0) {
			replaced = 1;
		}
		snprintf(e->digest, sizeof(e->digest), "%s", st->digest);
		e->created_ms = now;
		e->size = st->size;
	}
	if (index_save(imp->s, &ix, err) == -1)
		goto out;
	/* A tag moved to a new image: the old one's blobs may now be garbage. */
	if (replaced && gc_locked(imp->s, &ix, &gc, err) == -1)
		goto out;
	rc = 0;
out:
	index_free(&ix);
	return rc;
}

int
image_import_verified(struct image_store *s, const char *layout, const char *ref,
                      struct shoal_err *err)
{
	return import_path(s, layout, ref, NULL, 1, err);
}

int
image_import(struct image_store *s, const char *path, const char *ref, char ***refs,
             struct shoal_err *err)
{
	return import_path(s, path, ref, refs, 0, err);
}

static int
import_path(struct image_store *s, const char *path, const char *ref, char ***refs, int verified,
            struct shoal_err *err)
{
	struct import imp = {.s = s, .ref = ref, .srcfd = -1, .verified = verified};
	cleanup_free char *blobs = NULL;
	cleanup_free char *layers = NULL;
	struct shoal_err cleanup_err;
	struct stat st;
	int rc = -1;

	if (refs)
		*refs = NULL;
	if (stat(path, &st) == -1)
		return err_set(err, errno, "%s", path);
	if (ref) {
		cleanup_free char *n = NULL;
		cleanup_free char *t = NULL;
		if (store_ref(ref, &n, &t, NULL, err) == -1)
			return -1;
	}
	imp.tmp = xasprintf("%s/tmp/import-XXXXXX", s->root);
	if (mkdtemp(imp.tmp) == NULL) {
		err_set(err, errno, "mkdtemp %s", imp.tmp);
		free(imp.tmp);
		return -1;
	}
	blobs = xasprintf("%s/blobs", imp.tmp);
	layers = xasprintf("%s/layers", imp.tmp);
	if (mkdir(blobs, 0700) == -1 || mkdir(layers, 0700) == -1) {
		err_set(err, errno, "mkdir in %s", imp.tmp);
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		cleanup_free char *src = xasprintf("%s/src", imp.tmp);
		if (mkdir(src, 0700) == -1) {
			err_set(err, errno, "mkdir %s", src);
			goto out;
		}
		/* The archive's own tar is bounded like a layer: it holds the compressed blobs. */
		if (layer_unpack_limited(path, src, 0, &s->lim, NULL, err) == -1) {
			err_prefix(err, "archive");
			goto out;
		}
		imp.srcfd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else if (S_ISDIR(st.st_mode)) {
		imp.srcfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		err_set(err, 0, "not a directory nor an archive");
		goto out;
	}
	if (imp.srcfd == -1) {
		err_set(err, errno, "open");
		goto out;
	}
	if (exists_in(imp.srcfd, "index.json"))
		rc = import_oci(&imp, err);
	else if (exists_in(imp.srcfd, "manifest.json"))
		rc = import_docker(&imp, err);
	else
		err_set(err, 0,
		        "neither an OCI image layout (no index.json) nor a docker save "
		        "archive (no manifest.json)");
	if (rc == 0)
		rc = commit(&imp, err);
	if (rc == 0 && refs) {
		*refs = xcalloc(imp.nimgs + 1, sizeof(char *));
		for (size_t i = 0; i < imp.nimgs; i++)
			(*refs)[i] = xasprintf("%s:%s", imp.imgs[i].name, imp.imgs[i].tag);
	}
out:
	if (imp.srcfd >= 0)
		close(imp.srcfd);
	for (size_t i = 0; i < imp.nimgs; i++)
		staged_free(&imp.imgs[i]);
	free(imp.imgs);
	/* The scratch directory goes whatever happened; failing that is worth reporting only
	 * when nothing else failed. */
	if (layer_remove_tree(imp.tmp, &cleanup_err) == -1 && rc == 0) {
		*err = cleanup_err;
		rc = -1;
	}
	free(imp.tmp);
	return rc;
}
