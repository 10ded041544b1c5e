#include "oci.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

/* json_decrefp comes with jansson (its json_auto_t). */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

static char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

static json_t *
load(const char *text, const char *what, struct shoal_err *err)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &je);

	if (j == NULL) {
		err_set(err, 0, "%s: invalid JSON at line %d: %s", what, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(j) && !json_is_array(j)) {
		json_decref(j);
		err_set(err, 0, "%s: not a JSON object", what);
		return NULL;
	}
	return j;
}

enum oci_kind
oci_media_kind(const char *mt)
{
	if (mt == NULL)
		return OCI_KIND_OTHER;
	if (strcmp(mt, OCI_MT_INDEX) == 0 ||
	    strcmp(mt, "application/vnd.docker.distribution.manifest.list.v2+json") == 0)
		return OCI_KIND_INDEX;
	if (strcmp(mt, OCI_MT_MANIFEST) == 0 ||
	    strcmp(mt, "application/vnd.docker.distribution.manifest.v2+json") == 0)
		return OCI_KIND_MANIFEST;
	return OCI_KIND_OTHER;
}

int
oci_layer_type_ok(const char *mt)
{
	static const char *const ok[] = {
	    "application/vnd.oci.image.layer.v1.tar",
	    "application/vnd.oci.image.layer.v1.tar+gzip",
	    "application/vnd.oci.image.layer.v1.tar+zstd",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
	    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
	    "application/vnd.docker.image.rootfs.diff.tar.gzip",
	    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	};

	if (mt == NULL)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (strcmp(mt, ok[i]) == 0)
			return 1;
	return 0;
}

static int
config_type_ok(const char *mt)
{
	return strcmp(mt, OCI_MT_CONFIG) == 0 ||
	       strcmp(mt, "application/vnd.docker.container.image.v1+json") == 0;
}

static char *
dup_string(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

/* Fill d from a descriptor object; what names it in messages. */
static int
parse_desc(json_t *j, struct oci_desc *d, const char *what, struct shoal_err *err)
{
	json_t *digest = json_object_get(j, "digest");
	json_t *size = json_object_get(j, "size");
	json_t *ann = json_object_get(j, "annotations");
	json_t *plat = json_object_get(j, "platform");
	char hex[DIGEST_HEX_LEN + 1];

	memset(d, 0, sizeof(*d));
	if (!json_is_object(j))
		return err_set(err, 0, "%s: not an object", what);
	if (!json_is_string(digest))
		return err_set(err, 0, "%s: missing digest", what);
	if (digest_parse(json_string_value(digest), hex, err) == -1)
		return err_prefix(err, "%s", what);
	snprintf(d->digest, sizeof(d->digest), "sha256:%s", hex);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return err_set(err, 0, "%s %s: missing or invalid size", what, d->digest);
	d->size = json_integer_value(size);
	d->media_type = dup_string(j, "mediaType");
	if (json_is_object(ann)) {
		/* containerd and `docker save` (v25+) put the full reference in their own
		 * annotation and only the tag in ref.name: prefer the full one then. */
		char *full = dup_string(ann, "io.containerd.image.name");

		d->ref_name = dup_string(ann, OCI_ANN_REF_NAME);
		if (full && (d->ref_name == NULL || strpbrk(d->ref_name, ":/") == NULL)) {
			free(d->ref_name);
			d->ref_name = full;
		} else {
			free(full);
		}
	}
	if (json_is_object(plat)) {
		json_t *os = json_object_get(plat, "os"),
		       *arch = json_object_get(plat, "architecture");
		if (json_is_string(os) && json_is_string(arch))
			d->platform =
			    xasprintf("%s/%s", json_string_value(os), json_string_value(arch));
	}
	return 0;
}

void
oci_desc_free(struct oci_desc *d)
{
	if (d == NULL)
		return;
	free(d->media_type);
	free(d->ref_name);
	free(d->platform);
	memset(d, 0, sizeof(*d));
}

void
oci_descs_free(struct oci_desc *d, size_t n)
{
	for (size_t i = 0; d && i < n; i++)
		oci_desc_free(&d[i]);
	free(d);
}

int
oci_parse_index(const char *json, struct oci_desc **descs, size_t *n, struct shoal_err *err)
{
	cleanup_json json_t *j = load(json, "index", err);
	json_t *ms, *m;
	struct oci_desc *out;
	size_t i;

	*descs = NULL;
	*n = 0;
	if (j == NULL)
		return -1;
	ms = json_object_get(j, "manifests");
	if (!json_is_array(ms))
		return err_set(err, 0, "index: no \"manifests\" array");
	if (json_array_size(ms) == 0)
		return err_set(err, 0, "index: no manifests (an empty layout)");
	out = xcalloc(json_array_size(ms), sizeof(*out));
	json_array_foreach(ms, i, m)
	{
		char what[48];

		snprintf(what, sizeof(what), "index manifest %zu", i);
		if (parse_desc(m, &out[i], what, err) == -1) {
			oci_descs_free(out, i + 1);
			return -1;
		}
	}
	*descs = out;
	*n = json_array_size(ms);
	return 0;
}

void
oci_manifest_free(struct oci_manifest *m)
{
	if (m == NULL)
		return;
	oci_desc_free(&m->config);
	oci_descs_free(m->layers, m->nlayers);
	memset(m, 0, sizeof(*m));
}

/* Append "; " and a formatted problem to a cumulative message. */
static void __attribute__((format(printf, 3, 4)))
add_problem(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n > 0 && n + 2 < len) {
		memcpy(buf + n, "; ", 3);
		n += 2;
	}
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

int
oci_parse_manifest(const char *json, const char *media_type, struct oci_manifest *m,
                   struct shoal_err *err)
{
	cleanup_json json_t *j = load(json, "manifest", err);
	char problems[sizeof(err->msg)] = "";
	json_t *mt, *ls, *l, *sv;
	size_t i;

	memset(m, 0, sizeof(*m));
	if (j == NULL)
		return -1;
	if (!json_is_object(j))
		return err_set(err, 0, "manifest: not a JSON object");
	sv = json_object_get(j, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2)
		return err_set(err, 0,
		               "manifest: schemaVersion must be 2 (Docker schema1 is not "
		               "supported)");
	mt = json_object_get(j, "mediaType");
	if (json_is_string(mt))
		media_type = json_string_value(mt);
	if (media_type && oci_media_kind(media_type) == OCI_KIND_INDEX)
		return err_set(err, 0, "manifest: is an image index");
	if (media_type && oci_media_kind(media_type) != OCI_KIND_MANIFEST)
		return err_set(err, 0, "manifest: unknown media type %s", media_type);
	if (parse_desc(json_object_get(j, "config"), &m->config, "config", err) == -1)
		return err_prefix(err, "manifest");
	if (m->config.media_type == NULL || !config_type_ok(m->config.media_type))
		add_problem(problems, sizeof(problems), "config %s: unknown media type %s",
		            m->config.digest,
		            m->config.media_type ? m->config.media_type : "(none)");
	ls = json_object_get(j, "layers");
	if (!json_is_array(ls)) {
		oci_manifest_free(m);
		return err_set(err, 0, "manifest: no \"layers\" array");
	}
	m->layers = xcalloc(json_array_size(ls), sizeof(*m->layers));
	json_array_foreach(ls, i, l)
	{
		char what[32];

		snprintf(what, sizeof(what), "layer %zu", i);
		if (parse_desc(l, &m->layers[i], what, err) == -1) {
			m->nlayers = i + 1;
			oci_manifest_free(m);
			return err_prefix(err, "manifest");
		}
		m->nlayers = i + 1;
		if (!oci_layer_type_ok(m->layers[i].media_type))
			add_problem(problems, sizeof(problems), "layer %s: unknown media type %s",
			            m->layers[i].digest,
			            m->layers[i].media_type ? m->layers[i].media_type : "(none)");
	}
	if (problems[0]) {
		oci_manifest_free(m);
		return err_set(err, 0, "manifest: %s", problems);
	}
	return 0;
}

void
oci_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

/* A JSON array of strings as a NULL-terminated list; NULL when absent or null. */
static int
strv_from(json_t *a, const char *what, char ***out, struct shoal_err *err)
{
	json_t *v;
	size_t i;
	char **list;

	*out = NULL;
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return err_set(err, 0, "%s: not a list", what);
	list = xcalloc(json_array_size(a) + 1, sizeof(*list));
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v)) {
			oci_strv_free(list);
			return err_set(err, 0, "%s: item %zu is not a string", what, i);
		}
		list[i] = xstrdup(json_string_value(v));
	}
	*out = list;
	return 0;
}

void
oci_config_free(struct oci_config *c)
{
	if (c == NULL)
		return;
	oci_strv_free(c->entrypoint);
	oci_strv_free(c->cmd);
	oci_strv_free(c->env);
	oci_strv_free(c->diff_ids);
	free(c->workdir);
	free(c->user);
	memset(c, 0, sizeof(*c));
}

int
oci_parse_config(const char *json, struct oci_config *c, struct shoal_err *err)
{
	cleanup_json json_t *j = load(json, "config", err);
	json_t *cfg, *rootfs;

	memset(c, 0, sizeof(*c));
	if (j == NULL)
		return -1;
	if (!json_is_object(j))
		return err_set(err, 0, "config: not a JSON object");
	cfg = json_object_get(j, "config");
	if (cfg != NULL && !json_is_null(cfg)) {
		json_t *wd, *user;

		if (!json_is_object(cfg))
			return err_set(err, 0, "config: \"config\" is not an object");
		if (strv_from(json_object_get(cfg, "Entrypoint"), "config Entrypoint",
		              &c->entrypoint, err) == -1 ||
		    strv_from(json_object_get(cfg, "Cmd"), "config Cmd", &c->cmd, err) == -1 ||
		    strv_from(json_object_get(cfg, "Env"), "config Env", &c->env, err) == -1)
			goto fail;
		wd = json_object_get(cfg, "WorkingDir");
		user = json_object_get(cfg, "User");
		if (json_is_string(wd) && json_string_length(wd) > 0)
			c->workdir = xstrdup(json_string_value(wd));
		if (json_is_string(user) && json_string_length(user) > 0)
			c->user = xstrdup(json_string_value(user));
	}
	rootfs = json_object_get(j, "rootfs");
	if (json_is_object(rootfs)) {
		if (strv_from(json_object_get(rootfs, "diff_ids"), "config rootfs.diff_ids",
		              &c->diff_ids, err) == -1)
			goto fail;
		while (c->diff_ids && c->diff_ids[c->ndiff_ids])
			c->ndiff_ids++;
	}
	return 0;
fail:
	oci_config_free(c);
	return -1;
}

void
oci_docker_images_free(struct oci_docker_image *imgs, size_t n)
{
	for (size_t i = 0; imgs && i < n; i++) {
		free(imgs[i].config);
		oci_strv_free(imgs[i].repo_tags);
		for (size_t k = 0; k < imgs[i].nlayers; k++)
			free(imgs[i].layers[k]);
		free(imgs[i].layers);
	}
	free(imgs);
}

int
oci_parse_docker_manifest(const char *json, struct oci_docker_image **imgs, size_t *n,
                          struct shoal_err *err)
{
	cleanup_json json_t *j = load(json, "manifest.json", err);
	struct oci_docker_image *out;
	json_t *e;
	size_t i;

	*imgs = NULL;
	*n = 0;
	if (j == NULL)
		return -1;
	if (!json_is_array(j) || json_array_size(j) == 0)
		return err_set(err, 0, "manifest.json: not a non-empty list");
	out = xcalloc(json_array_size(j), sizeof(*out));
	json_array_foreach(j, i, e)
	{
		json_t *cfg = json_object_get(e, "Config");
		char **layers = NULL;

		if (!json_is_string(cfg)) {
			err_set(err, 0, "manifest.json: image %zu: no Config", i);
			goto fail;
		}
		out[i].config = xstrdup(json_string_value(cfg));
		if (strv_from(json_object_get(e, "RepoTags"), "RepoTags", &out[i].repo_tags, err) ==
		        -1 ||
		    strv_from(json_object_get(e, "Layers"), "Layers", &layers, err) == -1) {
			err_prefix(err, "manifest.json: image %zu", i);
			goto fail;
		}
		if (layers == NULL) {
			err_set(err, 0, "manifest.json: image %zu: no Layers", i);
			goto fail;
		}
		out[i].layers = layers;
		while (layers[out[i].nlayers])
			out[i].nlayers++;
	}
	*imgs = out;
	*n = json_array_size(j);
	return 0;
fail:
	oci_docker_images_free(out, json_array_size(j));
	return -1;
}

char **
oci_parse_docker_repositories(const char *json, struct shoal_err *err)
{
	cleanup_json json_t *j = load(json, "repositories", err);
	const char *name, *tag;
	json_t *tags, *id;
	char **out;
	size_t n = 0, cap = 4;

	if (j == NULL)
		return NULL;
	if (!json_is_object(j)) {
		err_set(err, 0, "repositories: not a JSON object");
		return NULL;
	}
	out = xcalloc(cap, sizeof(*out));
	json_object_foreach(j, name, tags)
	{
		if (!json_is_object(tags))
			continue;
		json_object_foreach(tags, tag, id)
		{
			if (n + 2 > cap) {
				cap *= 2;
				out = xrealloc(out, cap * sizeof(*out));
			}
			out[n++] = xasprintf("%s:%s", name, tag);
			out[n] = NULL;
		}
	}
	return out;
}

static json_t *
desc_json(const struct oci_desc *d)
{
	return json_pack("{s:s, s:s, s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
	                 (json_int_t)d->size);
}

char *
oci_build_manifest(const struct oci_desc *config, const struct oci_desc *layers, size_t n)
{
	cleanup_json json_t *j = NULL;
	json_t *ls = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(ls, desc_json(&layers[i]));
	j = json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType", OCI_MT_MANIFEST,
	              "config", desc_json(config), "layers", ls);
	SHOAL_ASSERT(j != NULL);
	return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static int
tag_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return t[0] != '.' && t[0] != '-';
}

static int
name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 255 || s[0] == '/' || s[n - 1] == '/')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-' || c == '/' || c == ':'))
			return 0;
		if (c == '/' && s[i + 1] == '/')
			return 0;
	}
	return 1;
}

int
oci_parse_ref(const char *ref, char **name, char **tag, struct shoal_err *err)
{
	const char *slash = strrchr(ref, '/');
	const char *colon = strrchr(slash ? slash : ref, ':');
	cleanup_free char *n = NULL;
	cleanup_free char *t = NULL;

	*name = *tag = NULL;
	if (strchr(ref, '@'))
		return err_set(err, 0,
		               "reference \"%.80s\": digests are not supported, use NAME:TAG", ref);
	n = colon ? xstrndup(ref, (size_t)(colon - ref)) : xstrdup(ref);
	t = xstrdup(colon ? colon + 1 : "latest");
	if (!name_ok(n))
		return err_set(err, 0, "invalid image name \"%.80s\"", n);
	if (!tag_ok(t))
		return err_set(err, 0, "invalid tag \"%.80s\"", t);
	*name = steal_ptr(&n);
	*tag = steal_ptr(&t);
	return 0;
}
