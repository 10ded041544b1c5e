/* Manifests and pull: the manifest (an index picks the platform), then only the blobs the
 * store lacks, each streamed and verified, into an OCI layout image_import() commits. */
#include "registry.h"
#include "registry_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "fdio.h"
#include "digest.h"
#include "err.h"
#include "image.h"
#include "layer.h"
#include "log.h"
#include "oci.h"
#include "reference.h"
#include "util.h"

const char *
registry_platform(void)
{
#if defined(__x86_64__)
	return "linux/amd64";
#elif defined(__aarch64__)
	return "linux/arm64";
#else
	return "linux/unknown";
#endif
}

/* ---- manifests --------------------------------------------------------------------------- */

const char *
registry_manifest_type(const char *json, const char *ctype, struct shoal_err *err)
{
	static const char *const known[] = {OCI_MT_MANIFEST, OCI_MT_INDEX, MT_DOCKER_MANIFEST,
	                                    MT_DOCKER_LIST};
	cleanup_json json_t *j = NULL;
	json_error_t je;
	const char *mt;
	json_t *sv;

	j = json_loads(json, 0, &je);
	if (j == NULL || !json_is_object(j))
		return err_set(err, 0, "manifest: invalid JSON at line %d", j ? 1 : je.line), NULL;
	sv = json_object_get(j, "schemaVersion");
	mt = json_string_value(json_object_get(j, "mediaType"));
	if ((json_is_integer(sv) && json_integer_value(sv) == 1) ||
	    (mt && (strcmp(mt, MT_SCHEMA1) == 0 || strcmp(mt, MT_SCHEMA1_SIGNED) == 0)) ||
	    (!mt && ctype &&
	     (strcmp(ctype, MT_SCHEMA1) == 0 || strcmp(ctype, MT_SCHEMA1_SIGNED) == 0))) {
		err_set(err, 0,
		        "Docker schema 1 manifest: not supported (deprecated); push the image "
		        "again with a current client");
		return NULL;
	}
	if (mt == NULL)
		mt = ctype;
	for (size_t i = 0; mt && i < ARRAY_SIZE(known); i++)
		if (strcmp(mt, known[i]) == 0)
			return known[i];
	/* Neither field says (a plain application/json): the document's shape does. */
	if (mt == NULL || strcmp(mt, "application/json") == 0) {
		if (json_is_array(json_object_get(j, "manifests")))
			return OCI_MT_INDEX;
		if (json_is_object(json_object_get(j, "config")) &&
		    json_is_array(json_object_get(j, "layers")))
			return OCI_MT_MANIFEST;
	}
	err_set(err, 0, "manifest: unsupported media type %.100s", mt ? mt : "(none)");
	return NULL;
}

/* ---- pull -------------------------------------------------------------------------------- */

/* GET a manifest by tag or digest into *text (its type in mt, its digest in digest). */
static int
get_manifest(struct reg *r, const char *tag_or_digest, const char *expect_digest, char **text,
             const char **mt, char *digest, struct shoal_err *err)
{
	cleanup_free char *url =
	    xasprintf("%s/v2/%s/manifests/%s", r->base, r->repo, tag_or_digest);
	cleanup_free char *what = xasprintf("manifest %s:%s", r->repo, tag_or_digest);
	struct sink k = {.fd = -1, .max = MANIFEST_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "GET", .url = url, .what = what, .follow = 1};
	char a[40];
	int rc = -1;

	q.headers = curl_slist_append(NULL, ACCEPT_MANIFESTS);
	if (registry_http_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 200) {
		registry_http_status_error(r, &q, &k, &rs, err);
		goto out;
	}
	if (k.buf == NULL || k.len != strlen(k.buf)) {
		err_set(err, 0, "%s: empty or binary body", what);
		goto out;
	}
	digest_buf(k.buf, k.len, digest);
	if (expect_digest && strcmp(digest, expect_digest) != 0) {
		err_set(err, 0, "%s: digest mismatch (got %s)", what,
		        digest_short(digest, a, sizeof(a)));
		goto out;
	}
	if (rs.digest[0] && strncmp(rs.digest, "sha256:", 7) == 0 &&
	    strcmp(rs.digest, digest) != 0) {
		err_set(err, 0, "%s: digest mismatch (registry says %s, body is %s)", what,
		        digest_short(rs.digest, a, sizeof(a)), digest);
		goto out;
	}
	*mt = registry_manifest_type(k.buf, rs.ctype[0] ? rs.ctype : NULL, err);
	if (*mt == NULL) {
		err_prefix(err, "%s", what);
		goto out;
	}
	*text = steal_ptr(&k.buf);
	rc = 0;
out:
	curl_slist_free_all(q.headers);
	registry_http_sink_free(&k);
	registry_http_resp_clear(&rs);
	return rc;
}

/*
 * Fetch blob d into dst, through ROOT/tmp/partial/<hex>: what is there from an interrupted
 * pull is hashed again and the rest asked for with Range. The partial moves to dst only with
 * the right size and digest; a wrong one is deleted.
 */
static int
fetch_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *dst,
           const char *kind, struct shoal_err *err)
{
	cleanup_free char *pdir = xasprintf("%s/tmp/partial", root);
	cleanup_free char *partial = xasprintf("%s/%s", pdir, d->digest + 7);
	cleanup_free char *url = xasprintf("%s/v2/%s/blobs/%s", r->base, r->repo, d->digest);
	cleanup_free char *range = NULL;
	char what[64], a[40], got[DIGEST_STR_LEN + 1];
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned hlen = 0;
	struct sink k = {.fd = -1, .want = d->size};
	struct resp rs = {0};
	struct req q = {.method = "GET", .url = url, .what = what, .follow = 1};
	struct stat st, st2;
	int rc = -1;

	snprintf(what, sizeof(what), "%s %s", kind, digest_short(d->digest, a, sizeof(a)));
	if (util_mkdir_p(pdir, 0700, err) == -1)
		return -1;
	/* Two pulls of one blob take turns; the second refetches if the first moved it away. */
	for (;;) {
		k.fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (k.fd == -1)
			return err_set(err, errno, "open %s", partial);
		if (flock(k.fd, LOCK_EX) == -1) {
			close(k.fd);
			return err_set(err, errno, "lock %s", partial);
		}
		if (fstat(k.fd, &st) == 0 && stat(partial, &st2) == 0 && st.st_ino == st2.st_ino)
			break;
		close(k.fd);
	}
	/* While we waited, a concurrent pull may have put the blob in the store. */
	{
		cleanup_free char *have = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
		if (link(have, dst) == 0) {
			if (st.st_size == 0)
				unlink(partial);
			rc = 0;
			goto out;
		}
	}
	k.h = EVP_MD_CTX_new();
	if (k.h == NULL || EVP_DigestInit_ex(k.h, EVP_sha256(), NULL) != 1) {
		err_set(err, 0, "%s: OpenSSL cannot hash", what);
		goto out;
	}
	if ((uint64_t)st.st_size > (uint64_t)d->size && ftruncate(k.fd, 0) == -1) {
		err_set(err, errno, "truncate %s", partial);
		goto out;
	}
	if ((uint64_t)st.st_size <= (uint64_t)d->size && st.st_size > 0) {
		cleanup_free char *buf = xmalloc(1 << 16);
		ssize_t n;
		while ((n = read(k.fd, buf, 1 << 16)) > 0) {
			EVP_DigestUpdate(k.h, buf, (size_t)n);
			k.got += (uint64_t)n;
		}
		if (n == -1) {
			err_set(err, errno, "read %s", partial);
			goto out;
		}
	}
	k.resumed = k.got;
	k.counter = r->stats ? &r->stats->bytes : NULL;
	k.progress = r;
	if (k.got < (uint64_t)d->size) {
		if (k.got > 0) {
			range = xasprintf("Range: bytes=%llu-", (unsigned long long)k.got);
			q.headers = curl_slist_append(NULL, range);
			if (r->stats)
				r->stats->resumed += k.got;
		}
		if (registry_http_request(r, &q, &k, &rs, err) == -1)
			goto out;
		if (rs.status != 200 && rs.status != 206) {
			registry_http_status_error(r, &q, &k, &rs, err);
			goto out;
		}
		if (rs.status == 200 && r->stats) /* the registry ignored the Range */
			r->stats->resumed -= k.resumed;
	}
	EVP_DigestFinal_ex(k.h, h, &hlen);
	SHOAL_ASSERT(hlen == DIGEST_HEX_LEN / 2);
	memcpy(got, "sha256:", 7);
	util_hex(h, hlen, got + 7);
	if (k.got != (uint64_t)d->size) {
		err_set(err, 0, "%s: %llu bytes, descriptor says %lld (truncated)", what,
		        (unsigned long long)k.got, (long long)d->size);
		goto out; /* keep the partial: the next pull resumes from it */
	}
	if (strcmp(got, d->digest) != 0) {
		unlink(partial);
		err_set(err, 0, "%s: digest mismatch (got %s)", what,
		        digest_short(got, a, sizeof(a)));
		goto out;
	}
	if (fsync(k.fd) == -1) {
		err_set(err, errno, "fsync %s", partial);
		goto out;
	}
	/* Linked, not moved: a concurrent pull of the same blob waiting on the lock finds it
	 * whole and verifies it instead of fetching it again. The pull deletes it once the
	 * store holds the blob. */
	if (link(partial, dst) == -1) {
		err_set(err, errno, "link %s", partial);
		goto out;
	}
	r->partials = xrealloc(r->partials, (r->npartials + 1) * sizeof(*r->partials));
	r->partials[r->npartials++] = steal_ptr(&partial);
	if (r->stats && k.got > k.resumed)
		r->stats->blobs_fetched++;
	rc = 0;
out:
	close(k.fd);
	EVP_MD_CTX_free(k.h);
	curl_slist_free_all(q.headers);
	registry_http_sink_free(&k);
	registry_http_resp_clear(&rs);
	return rc;
}

/* Put blob d into the layout at dst: a link to the store's copy, else fetched. */
static int
layout_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *layout,
            const char *kind, struct shoal_err *err)
{
	cleanup_free char *dst = xasprintf("%s/blobs/sha256/%s", layout, d->digest + 7);
	cleanup_free char *have = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
	struct stat st;

	if (r->stats)
		r->stats->blobs++;
	if (lstat(dst, &st) == 0)
		return 0; /* listed twice */
	if (link(have, dst) == 0)
		return 0;
	if (errno != ENOENT)
		return err_set(err, errno, "link %s", have);
	return fetch_blob(r, root, d, dst, kind, err);
}

static int
write_layout(const char *layout, const char *mtext, const char *mt, const char *digest,
             const char *refname, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/blobs/sha256/%s", layout, digest + 7);
	cleanup_free char *ip = xasprintf("%s/index.json", layout);
	cleanup_free char *lp = xasprintf("%s/oci-layout", layout);
	cleanup_json json_t *ix = NULL;
	cleanup_free char *text = NULL;
	static const char layout_text[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

	if (util_write_file_atomic(p, mtext, strlen(mtext), 0644, err) == -1 ||
	    util_write_file_atomic(lp, layout_text, strlen(layout_text), 0644, err) == -1)
		return -1;
	ix = json_pack("{s:i, s:[{s:s, s:s, s:I, s:{s:s}}]}", "schemaVersion", 2, "manifests",
	               "mediaType", mt, "digest", digest, "size", (json_int_t)strlen(mtext),
	               "annotations", OCI_ANN_REF_NAME, refname);
	SHOAL_ASSERT(ix != NULL);
	text = json_dumps(ix, JSON_COMPACT);
	return util_write_file_atomic(ip, text, strlen(text), 0644, err);
}

int
registry_pull(struct image_store *s, const char *refstr, const struct registry_opts *o,
              struct registry_stats *stats, char **stored, struct shoal_err *err)
{
	const char *root = image_store_root(s);
	const char *want = o && o->platform ? o->platform : registry_platform();
	struct registry_stats local = {0};
	struct reference ref;
	struct reg r;
	cleanup_free char *mtext = NULL;
	cleanup_free char *layout = NULL;
	cleanup_free char *name = NULL;
	cleanup_free char *storeref = NULL;
	struct oci_manifest m = {0};
	struct shoal_err e2;
	const char *mt = NULL;
	char digest[DIGEST_STR_LEN + 1], a[40];
	struct oci_config cfg;
	int have_m = 0, have_c = 0, rc = -1;

	if (stored)
		*stored = NULL;
	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (reference_parse(refstr, &ref, err) == -1)
		return -1;
	if (registry_http_open(&r, &ref, o, "pull", stats, err) == -1) {
		reference_free(&ref);
		return -1;
	}
	name = reference_familiar_name(&ref);
	storeref =
	    ref.tag ? xasprintf("%s:%s", name, ref.tag) : xasprintf("%s@%s", name, ref.digest);
	if (get_manifest(&r, ref.digest ? ref.digest : ref.tag, ref.digest, &mtext, &mt, digest,
	                 err) == -1)
		goto out;
	if (oci_media_kind(mt) == OCI_KIND_INDEX) {
		struct oci_desc *ds = NULL;
		size_t n = 0, pick = SIZE_MAX;
		char child[DIGEST_STR_LEN + 1];

		if (oci_parse_index(mtext, &ds, &n, err) == -1) {
			err_prefix(err, "index %s", digest_short(digest, a, sizeof(a)));
			goto out;
		}
		for (size_t i = 0; i < n && pick == SIZE_MAX; i++)
			if (ds[i].platform && strcmp(ds[i].platform, want) == 0 &&
			    (ds[i].media_type == NULL ||
			     oci_media_kind(ds[i].media_type) == OCI_KIND_MANIFEST))
				pick = i;
		if (pick == SIZE_MAX) {
			char have[160] = "";
			for (size_t i = 0; i < n; i++) {
				size_t l = strlen(have);
				snprintf(have + l, sizeof(have) - l, "%s%s", l ? ", " : "",
				         ds[i].platform ? ds[i].platform : "?");
			}
			oci_descs_free(ds, n);
			err_set(err, 0, "index: no image for %s (it has %s)", want,
			        have[0] ? have : "none");
			goto out;
		}
		snprintf(child, sizeof(child), "%s", ds[pick].digest);
		oci_descs_free(ds, n);
		mtext = (free(mtext), NULL);
		if (get_manifest(&r, child, child, &mtext, &mt, digest, err) == -1)
			goto out;
		if (oci_media_kind(mt) != OCI_KIND_MANIFEST) {
			err_set(err, 0, "index: the entry for %s is not an image manifest", want);
			goto out;
		}
	}
	if (oci_parse_manifest(mtext, mt, &m, err) == -1) {
		err_prefix(err, "manifest %s", digest_short(digest, a, sizeof(a)));
		goto out;
	}
	have_m = 1;
	snprintf(stats->digest, sizeof(stats->digest), "%s", digest);
	layout = xasprintf("%s/tmp/pull-XXXXXX", root);
	if (mkdtemp(layout) == NULL) {
		err_set(err, errno, "mkdtemp %s", layout);
		layout = (free(layout), NULL);
		goto out;
	}
	{
		cleanup_free char *b = xasprintf("%s/blobs/sha256", layout);
		if (util_mkdir_p(b, 0700, err) == -1)
			goto out;
	}
	r.layers = m.nlayers;
	registry_http_progress(&r, 1);
	if (layout_blob(&r, root, &m.config, layout, "config", err) == -1)
		goto out;
	{
		/* The config first: a layer the store has unpacked by its diff_id, from any
		 * compression, is not fetched (the import checks the diff_ids again). */
		cleanup_free char *cp =
		    xasprintf("%s/blobs/sha256/%s", layout, m.config.digest + 7);
		cleanup_free char *ct = util_read_file(cp, NULL, err);
		if (ct == NULL || oci_parse_config(ct, &cfg, err) == -1) {
			err_prefix(err, "config %s", digest_short(m.config.digest, a, sizeof(a)));
			goto out;
		}
		have_c = 1;
	}
	for (size_t i = 0; i < m.nlayers; i++) {
		if (cfg.diff_ids && cfg.ndiff_ids == m.nlayers &&
		    strncmp(cfg.diff_ids[i], "sha256:", 7) == 0 &&
		    digest_is_hex(cfg.diff_ids[i] + 7)) {
			cleanup_free char *ld =
			    xasprintf("%s/layers/%s", root, cfg.diff_ids[i] + 7);
			cleanup_free char *bl =
			    xasprintf("%s/blobs/sha256/%s", root, m.layers[i].digest + 7);
			struct stat sb;
			/* The store's own blob is linked as before (push can then send it). */
			if (lstat(ld, &sb) == 0 && lstat(bl, &sb) == -1) {
				if (r.stats)
					r.stats->blobs++;
				r.layers_done = i + 1;
				registry_http_progress(&r, 1);
				continue;
			}
		}
		if (layout_blob(&r, root, &m.layers[i], layout, "layer", err) == -1)
			goto out;
		r.layers_done = i + 1;
		registry_http_progress(&r, 1);
	}
	if (write_layout(layout, mtext, mt, digest, storeref, err) == -1)
		goto out;
	if (image_import_verified(s, layout, storeref, err) == -1)
		goto out;
	/* Only now: a failed import keeps them whole and verified for the next pull. */
	for (size_t i = 0; i < r.npartials; i++)
		unlink(r.partials[i]);
	if (stored)
		*stored = steal_ptr(&storeref);
	rc = 0;
out:
	if (rc == -1)
		err_prefix(err, "pull %s", refstr);
	if (layout && layer_remove_tree(layout, &e2) == -1 && rc == 0) {
		*err = e2;
		rc = -1;
	}
	if (have_m)
		oci_manifest_free(&m);
	if (have_c)
		oci_config_free(&cfg);
	registry_http_free(&r);
	reference_free(&ref);
	return rc;
}
