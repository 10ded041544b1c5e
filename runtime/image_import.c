/* Import into the image store: OCI layouts and docker save archives, verified, staged, then
 * committed at once, so a failed import leaves the store as it was. */
#include "image.h"
#include "image_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "err.h"
#include "oci.h"
#include "util.h"

/* JSON documents of an archive (index.json, manifest.json) are small; a huge one is hostile. */
#define JSON_MAX (16 << 20)

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

	if (image_path_exists(p))
		return p;
	free(p);
	return image_store_path(imp->s, "blobs/sha256", hex);
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
		cleanup_free char *q = image_store_path(imp->s, "blobs/sha256", want + 7);
		have = image_path_exists(p) || image_path_exists(q);
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
	cleanup_free char *stored = image_store_path(imp->s, "layers", hex);
	cleanup_free char *dir = xasprintf("%s/layers/%s", imp->tmp, hex);
	return image_path_exists(stored) || image_path_exists(dir);
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
	cleanup_free char *stored = image_store_path(imp->s, "layers", hex);
	cleanup_free char *dir = xasprintf("%s/layers/%s", imp->tmp, hex);
	cleanup_free char *blob = NULL;
	struct layer_limits lim = imp->s->lim;
	struct layer_stats ls;
	char a[40], b[40];

	if (image_path_exists(stored))
		return layer_size(stored, size, err);
	if (!image_path_exists(dir)) {
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
	return image_ref_split(d->ref_name, name, tag, NULL, err);
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
	return image_ref_split(d->ref_name, &rn, &rt, NULL, &e) == 0 && strcmp(rn, name) == 0 &&
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
	if (imp->ref && image_ref_split(imp->ref, &uname, &utag, NULL, err) == -1)
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

			if (image_ref_split(names[t], &name, &tag, NULL, err) == -1)
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
	cleanup_free char *to = image_store_path(imp->s, kind, hex);

	if (image_path_exists(to))
		return 0;
	if (!image_path_exists(from))
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
	if (image_index_load(imp->s, &ix, err) == -1)
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
		struct entry *e = image_index_find(&ix, st->name, st->tag);

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
	if (image_index_save(imp->s, &ix, err) == -1)
		goto out;
	/* A tag moved to a new image: the old one's blobs may now be garbage. */
	if (replaced && image_gc_locked(imp->s, &ix, &gc, err) == -1)
		goto out;
	rc = 0;
out:
	image_index_free(&ix);
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
		if (image_ref_split(ref, &n, &t, NULL, err) == -1)
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
