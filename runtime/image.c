#include "image.h"
#include "image_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "err.h"
#include "oci.h"
#include "reference.h"
#include "util.h"

/* json_decrefp comes with jansson (its json_auto_t). */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

void
image_index_free(struct index *ix)
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
char *
image_store_path(const struct image_store *s, const char *dir, const char *name)
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
int
image_ref_split(const char *ref, char **name, char **tag, char **digest, struct shoal_err *err)
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

void
image_store_unlockp(struct image_store **s)
{
	if (*s)
		image_store_unlock(*s);
}

/* ---- index ------------------------------------------------------------------------------- */

int
image_index_load(struct image_store *s, struct index *ix, struct shoal_err *err)
{
	cleanup_free char *path = image_store_path(s, "index.json", NULL);
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
			image_index_free(ix);
			return err_set(err, 0, "%s: image %zu: missing name, tag or digest", path,
			               i);
		}
		/* Entries written before names were normalised ("docker.io/x/y") read as
		 * their familiar name, so every spelling finds them. */
		if (image_ref_split(name, &e->name, &e->tag, NULL, err) == 0) {
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

int
image_index_save(struct image_store *s, const struct index *ix, struct shoal_err *err)
{
	cleanup_free char *path = image_store_path(s, "index.json", NULL);
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

struct entry *
image_index_find(struct index *ix, const char *name, const char *tag)
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

int
image_path_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

char *
image_read_blob(struct image_store *s, const char *digest, struct shoal_err *err)
{
	cleanup_free char *path = image_store_path(s, "blobs/sha256", digest + 7);
	return util_read_file(path, NULL, err);
}

/*
 * The directory under layers/ that holds layer blob_digest whose diff_id (NULL if the config
 * lists none) is given: layers are unpacked by diff_id, so one layer in gzip, zstd and plain is
 * unpacked once. A store written before that keyed them by the compressed blob's digest: such
 * a directory is used while no diff_id directory exists (containers list it by that name).
 */
const char *
image_layer_key(const struct image_store *s, const char *blob_digest, const char *diff_id)
{
	cleanup_free char *byid = NULL;
	cleanup_free char *old = NULL;

	if (diff_id == NULL || !digest_is_hex(diff_id + 7))
		return blob_digest + 7;
	byid = image_store_path(s, "layers", diff_id + 7);
	old = image_store_path(s, "layers", blob_digest + 7);
	if (!image_path_exists(byid) && image_path_exists(old))
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

	mtext = image_read_blob(s, e->digest, err);
	if (mtext == NULL || oci_parse_manifest(mtext, NULL, &m, err) == -1)
		goto fail;
	ctext = image_read_blob(s, m.config.digest, err);
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
		const char *key = image_layer_key(
		    s, m.layers[i].digest, c.diff_ids && i < c.ndiff_ids ? c.diff_ids[i] : NULL);
		img->layer_digests[i] = xstrdup(key);
		img->layer_dirs[i] = image_store_path(s, "layers", key);
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

	if (image_ref_split(ref, &name, &tag, &digest, err) == -1)
		return NULL;
	if (image_index_load(s, &ix, err) == -1)
		return NULL;
	e = image_index_find(&ix, name, tag);
	/* name@digest: any tag of that name whose manifest it is. */
	for (size_t i = 0; e == NULL && digest && i < ix.n; i++)
		if (strcmp(ix.e[i].name, name) == 0 && strcmp(ix.e[i].digest, digest) == 0)
			e = &ix.e[i];
	if (e == NULL) {
		err_set(err, 0, "no image %s:%s", name, tag);
		err->code = ENOENT; /* callers may test it; the message says it better */
		image_index_free(&ix);
		return NULL;
	}
	img = image_from_entry(s, e, err);
	image_index_free(&ix);
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
	if (image_index_load(s, &ix, err) == -1)
		return -1;
	if (ix.n > 0)
		qsort(ix.e, ix.n, sizeof(*ix.e), entry_cmp);
	out = xcalloc(ix.n + 1, sizeof(*out));
	for (size_t i = 0; i < ix.n; i++) {
		out[i] = image_from_entry(s, &ix.e[i], err);
		if (out[i] == NULL) {
			image_list_free(out, i);
			image_index_free(&ix);
			return -1;
		}
	}
	*imgs = out;
	*n = ix.n;
	image_index_free(&ix);
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
