/* Push: each blob checked with HEAD and uploaded only when the registry lacks it, then the
 * manifest. */
#include "registry.h"
#include "registry_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "image.h"
#include "log.h"
#include "reference.h"
#include "util.h"

/* ---- push -------------------------------------------------------------------------------- */

/* The upload URL the registry gave (absolute or relative), with digest= added. */
static char *
upload_url(struct reg *r, const char *location, const char *digest)
{
	const char *sep = strchr(location, '?') ? "&" : "?";
	cleanup_free char *d = registry_http_escape(r->curl, digest);

	if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0)
		return xasprintf("%s%sdigest=%s", location, sep, d);
	return xasprintf("%s%s%s%sdigest=%s", r->base, location[0] == '/' ? "" : "/", location, sep,
	                 d);
}

static int
push_blob(struct reg *r, const char *root, const struct oci_desc *d, const char *kind,
          struct shoal_err *err)
{
	cleanup_free char *url = xasprintf("%s/v2/%s/blobs/%s", r->base, r->repo, d->digest);
	cleanup_free char *post = xasprintf("%s/v2/%s/blobs/uploads/", r->base, r->repo);
	cleanup_free char *path = xasprintf("%s/blobs/sha256/%s", root, d->digest + 7);
	cleanup_free char *put = NULL;
	char what[64], a[40];
	struct sink k = {.fd = -1, .max = ERRBODY_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "HEAD", .url = url, .what = what, .follow = 1};
	FILE *f = NULL;
	struct stat st;
	int rc = -1;

	snprintf(what, sizeof(what), "%s %s", kind, digest_short(d->digest, a, sizeof(a)));
	r->stats->blobs++;
	if (registry_http_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status == 200) {
		rc = 0;
		goto out;
	}
	if (rs.status != 404) {
		registry_http_status_error(r, &q, &k, &rs, err);
		goto out;
	}
	f = fopen(path, "re");
	if (f == NULL || fstat(fileno(f), &st) == -1) {
		err_set(err, errno, "%s: open %s", what, path);
		goto out;
	}
	q = (struct req){.method = "POST", .url = post, .what = what};
	if (registry_http_request(r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 202 || rs.location[0] == '\0') {
		registry_http_status_error(r, &q, &k, &rs, err);
		goto out;
	}
	put = upload_url(r, rs.location, d->digest);
	q = (struct req){.method = "PUT",
	                 .url = put,
	                 .what = what,
	                 .upload = f,
	                 .upload_len = (uint64_t)st.st_size};
	q.headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	rc = registry_http_request(r, &q, &k, &rs, err);
	curl_slist_free_all(q.headers);
	if (rc == -1)
		goto out;
	rc = -1;
	if (rs.status != 201) {
		registry_http_status_error(r, &q, &k, &rs, err);
		goto out;
	}
	r->stats->blobs_fetched++;
	r->stats->bytes += (uint64_t)st.st_size;
	rc = 0;
out:
	if (f)
		fclose(f);
	registry_http_sink_free(&k);
	registry_http_resp_clear(&rs);
	return rc;
}

int
registry_push(struct image_store *s, const char *image, const char *refstr,
              const struct registry_opts *o, struct registry_stats *stats, struct shoal_err *err)
{
	const char *root = image_store_root(s);
	struct registry_stats local = {0};
	struct reference ref;
	struct reg r;
	struct image *img = NULL;
	cleanup_free char *mpath = NULL;
	cleanup_free char *mtext = NULL;
	cleanup_free char *url = NULL;
	cleanup_free char *ctype = NULL;
	cleanup_free char *what = NULL;
	struct oci_manifest m = {0};
	struct sink k = {.fd = -1, .max = ERRBODY_MAX, .want = -1};
	struct resp rs = {0};
	struct req q = {.method = "PUT"};
	const char *mt;
	int have_m = 0, rc = -1;

	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (reference_parse(refstr, &ref, err) == -1)
		return -1;
	if (registry_http_open(&r, &ref, o, "pull,push", stats, err) == -1) {
		reference_free(&ref);
		return -1;
	}
	img = image_get(s, image, err);
	if (img == NULL)
		goto out;
	mpath = xasprintf("%s/blobs/sha256/%s", root, img->digest + 7);
	mtext = util_read_file(mpath, NULL, err);
	if (mtext == NULL)
		goto out;
	mt = registry_manifest_type(mtext, NULL, err);
	if (mt == NULL || oci_parse_manifest(mtext, mt, &m, err) == -1)
		goto out;
	have_m = 1;
	snprintf(stats->digest, sizeof(stats->digest), "%s", img->digest);
	if (push_blob(&r, root, &m.config, "config", err) == -1)
		goto out;
	for (size_t i = 0; i < m.nlayers; i++)
		if (push_blob(&r, root, &m.layers[i], "layer", err) == -1)
			goto out;
	url = xasprintf("%s/v2/%s/manifests/%s", r.base, r.repo, ref.tag ? ref.tag : ref.digest);
	what = xasprintf("manifest %s", refstr);
	ctype = xasprintf("Content-Type: %s", mt);
	q.url = url;
	q.what = what;
	q.body = mtext;
	q.body_len = strlen(mtext);
	q.headers = curl_slist_append(NULL, ctype);
	if (registry_http_request(&r, &q, &k, &rs, err) == -1)
		goto out;
	if (rs.status != 201) {
		registry_http_status_error(&r, &q, &k, &rs, err);
		goto out;
	}
	rc = 0;
out:
	if (rc == -1)
		err_prefix(err, "push %s", refstr);
	curl_slist_free_all(q.headers);
	registry_http_sink_free(&k);
	registry_http_resp_clear(&rs);
	if (have_m)
		oci_manifest_free(&m);
	image_free(img);
	registry_http_free(&r);
	reference_free(&ref);
	return rc;
}
