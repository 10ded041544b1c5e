/*
 * Unit tests for the image store (runtime/image, oci, digest): what an import leaves in the
 * store, what image_get() hands a container, and that every failed import leaves the store
 * byte for byte as it was. Layouts are built here with libarchive's writer. Root is needed to
 * unpack layers as images carry them (owners, whiteouts); skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "fixture.h"
#include "err.h"
#include "runtime/digest.h"
#include "runtime/image.h"
#include "runtime/layer.h"
#include "runtime/oci.h"
#include "util.h"

struct fixture {
	char top[FIXTURE_TOP];
	char root[96]; /* the store */
	char src[96];  /* layouts are built under here */
};

struct file {
	const char *path;
	const char *data; /* NULL: directory */
	mode_t type;      /* 0 = from data; AE_IFCHR for a device */
};

/* Write a tar of files to path; returns its bytes via a malloc'd buffer in *out. */
static void
tar_bytes(const struct file *f, size_t n, char **out, size_t *len)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	size_t cap = 1 << 20, used = 0;
	char *buf = xmalloc(cap);

	archive_write_set_format_pax_restricted(a);
	archive_write_set_bytes_in_last_block(a, 1);
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		size_t dlen = f[i].data ? strlen(f[i].data) : 0;

		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, f[i].path);
		archive_entry_set_mtime(ae, 1767225600, 0);
		if (f[i].type == AE_IFCHR) {
			archive_entry_set_filetype(ae, AE_IFCHR);
			archive_entry_set_rdev(ae, makedev(1, 3));
			archive_entry_set_perm(ae, 0666);
			dlen = 0;
		} else if (f[i].data == NULL) {
			archive_entry_set_filetype(ae, AE_IFDIR);
			archive_entry_set_perm(ae, 0755);
		} else {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_perm(ae, 0644);
		}
		archive_entry_set_size(ae, (la_int64_t)dlen);
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (dlen)
			assert_int_equal(archive_write_data(a, f[i].data, dlen), (ssize_t)dlen);
	}
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	archive_entry_free(ae);
	*out = buf;
	*len = used;
}

static void
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Store data as a blob of the layout at dir; digest written to out. */
static void
put_blob(const char *dir, const void *data, size_t len, char *out)
{
	char path[256];

	digest_buf(data, len, out);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", dir, out + 7);
	write_file(path, data, len);
}

struct layout {
	char dir[160];
	char manifest[DIGEST_STR_LEN + 1];
	char config[DIGEST_STR_LEN + 1];
	char layers[4][DIGEST_STR_LEN + 1];
	size_t nlayers;
};

/* An empty OCI layout at f->src/name (its blobs dir made) for l. */
static void
layout_begin(struct fixture *f, struct layout *l, const char *name)
{
	char path[256];

	memset(l, 0, sizeof(*l));
	snprintf(l->dir, sizeof(l->dir), "%s/%s", f->src, name);
	snprintf(path, sizeof(path), "%s/blobs/sha256", l->dir);
	assert_int_equal(util_mkdir_p(path, 0755, NULL), 0);
}

/* The rest of l once its layers are blobs: the config blob, a manifest of it and the layer
 * descriptors descs (JSON, comma-separated), an index naming it ref, and oci-layout. */
static void
layout_finish(struct layout *l, const char *ref, const char *config, const char *descs)
{
	char *json, path[256];
	size_t len;

	put_blob(l->dir, config, strlen(config), l->config);
	len = strlen(config);
	json = xasprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
	                 "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[%s]}",
	                 OCI_MT_MANIFEST, OCI_MT_CONFIG, l->config, len, descs);
	put_blob(l->dir, json, strlen(json), l->manifest);
	len = strlen(json);
	free(json);
	json = xasprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":"
	                 "\"%s\",\"size\":%zu,\"annotations\":{\"%s\":\"%s\"}}]}",
	                 OCI_MT_MANIFEST, l->manifest, len, OCI_ANN_REF_NAME, ref);
	snprintf(path, sizeof(path), "%s/index.json", l->dir);
	write_file(path, json, strlen(json));
	free(json);
	snprintf(path, sizeof(path), "%s/oci-layout", l->dir);
	write_file(path, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
}

/*
 * Build an OCI layout under f->src/name: one image named ref, whose layers are the given
 * file lists (base first), with layer_type as media type (NULL: plain tar).
 */
static void
make_layout(struct fixture *f, struct layout *l, const char *name, const char *ref,
            const struct file *const *layers, const size_t *nfiles, size_t nlayers,
            const char *layer_type)
{
	char *buf, *json, descs[2048] = "", diffs[1024] = "";
	size_t len;

	layout_begin(f, l, name);
	for (size_t i = 0; i < nlayers; i++) {
		size_t n = strlen(descs);
		tar_bytes(layers[i], nfiles[i], &buf, &len);
		put_blob(l->dir, buf, len, l->layers[i]);
		free(buf);
		snprintf(descs + n, sizeof(descs) - n,
		         "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", i ? "," : "",
		         layer_type ? layer_type : OCI_MT_LAYER, l->layers[i], len);
		n = strlen(diffs);
		snprintf(diffs + n, sizeof(diffs) - n, "%s\"%s\"", i ? "," : "", l->layers[i]);
	}
	l->nlayers = nlayers;
	json =
	    xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
	              "\"Entrypoint\":[\"/bin/app\"],\"Cmd\":[\"--port\",\"80\"],"
	              "\"Env\":[\"PATH=/bin\",\"MODE=test\"],\"WorkingDir\":\"/srv\","
	              "\"User\":\"1000:1000\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]}}",
	              diffs);
	layout_finish(l, ref, json, descs);
	free(json);
}

static const struct file base_files[] = {
    {"bin/", NULL, 0},
    {"bin/app", "#!/bin/sh\necho app\n", 0},
    {"etc/", NULL, 0},
    {"etc/os-release", "ID=shoal\n", 0},
};
static const struct file top1_files[] = {{"srv/", NULL, 0}, {"srv/version", "1\n", 0}};
static const struct file top2_files[] = {{"srv/", NULL, 0}, {"srv/version", "2\n", 0}};

static void
make_app(struct fixture *f, struct layout *l, const char *name, const char *ref, int v)
{
	const struct file *layers[] = {base_files, v == 1 ? top1_files : top2_files};
	const size_t n[] = {ARRAY_SIZE(base_files), 2};

	make_layout(f, l, name, ref, layers, n, 2, NULL);
}

/* Every path under root with type, mode, owner, size and content digest: a store snapshot. */
static char *
snapshot(const char *root)
{
	char cmd[512], buf[4096];
	FILE *p;
	size_t cap = 1 << 16, n = 0;
	char *out = xmalloc(cap);

	snprintf(cmd, sizeof(cmd),
	         "cd '%s' && find . -printf '%%p %%y %%m %%U:%%G %%s\\n' | sort && "
	         "find . -type f -exec sha256sum {} + | sort",
	         root);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (fgets(buf, sizeof(buf), p)) {
		size_t l = strlen(buf);
		if (n + l + 1 > cap) {
			cap *= 2;
			out = xrealloc(out, cap);
		}
		memcpy(out + n, buf, l);
		n += l;
	}
	out[n] = '\0';
	assert_int_equal(pclose(p), 0);
	return out;
}

static int
count_entries(const char *dir)
{
	char cmd[256];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static int
setup(void **state)
{
	struct fixture *f = fixture_new(sizeof(*f), "image");

	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "%s/root", f->top);
	snprintf(f->src, sizeof(f->src), "%s/src", f->top);
	mkdir(f->src, 0755);
	*state = f;
	return 0;
}

static void
test_digest(void **state)
{
	char d[DIGEST_STR_LEN + 1], hex[DIGEST_HEX_LEN + 1], s[40];
	struct shoal_err err;

	(void)state;
	digest_buf("abc", 3, d);
	assert_string_equal(
	    d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(digest_parse(d, hex, &err), 0);
	assert_string_equal(hex, d + 7);
	assert_string_equal(digest_short(d, s, sizeof(s)), "sha256:ba7816bf8f01…");
	assert_int_equal(digest_parse("sha256:../../../etc/passwd", hex, &err), -1);
	assert_int_equal(digest_parse("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410"
	                              "FF61F20015AD",
	                              hex, &err),
	                 -1);
	assert_int_equal(digest_parse("sha256:ba78", hex, &err), -1);
	assert_int_equal(digest_parse("sha512:abcd", hex, &err), -1);
	assert_non_null(strstr(err.msg, "unsupported algorithm sha512"));
}

static void
test_ref(void **state)
{
	char *name, *tag;
	struct shoal_err err;

	(void)state;
	assert_int_equal(oci_parse_ref("shoal/web:1", &name, &tag, &err), 0);
	assert_string_equal(name, "shoal/web");
	assert_string_equal(tag, "1");
	free(name);
	free(tag);
	assert_int_equal(oci_parse_ref("localhost:5000/busybox", &name, &tag, &err), 0);
	assert_string_equal(name, "localhost:5000/busybox");
	assert_string_equal(tag, "latest");
	free(name);
	free(tag);
	assert_int_equal(oci_parse_ref("web:", &name, &tag, &err), -1);
	assert_int_equal(oci_parse_ref("web@sha256:abc", &name, &tag, &err), -1);
	assert_int_equal(oci_parse_ref("../x:1", &name, &tag, &err), 0); /* a name, not a path */
	free(name);
	free(tag);
	assert_int_equal(oci_parse_ref("a b:1", &name, &tag, &err), -1);
}

static void
test_index_names(void **state)
{
	/* docker save v25: the tag alone in ref.name, the full name in containerd's key */
	const char *ix =
	    "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" OCI_MT_MANIFEST "\","
	    "\"digest\":\"sha256:"
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
	    "\"size\":3,\"annotations\":{\"io.containerd.image.name\":"
	    "\"docker.io/library/busybox:1.36\",\"" OCI_ANN_REF_NAME "\":\"1.36\"}},"
	    "{\"mediaType\":\"" OCI_MT_MANIFEST "\","
	    "\"digest\":\"sha256:"
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
	    "\"size\":3,\"annotations\":{\"" OCI_ANN_REF_NAME "\":\"shoal/web:1\"}}]}";
	struct oci_desc *d;
	size_t n;
	struct shoal_err err;

	(void)state;
	assert_int_equal(oci_parse_index(ix, &d, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(d[0].ref_name, "docker.io/library/busybox:1.36");
	assert_string_equal(d[1].ref_name, "shoal/web:1");
	oci_descs_free(d, n);
	assert_int_equal(oci_parse_index("{\"manifests\":[]}", &d, &n, &err), -1);
	assert_int_equal(oci_parse_index("[1", &d, &n, &err), -1);
	assert_non_null(strstr(err.msg, "invalid JSON"));
}

static void
test_manifest_problems_collected(void **state)
{
	const char *m =
	    "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/x-weird\",\"digest\":"
	    "\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
	    "\"size\":3},\"layers\":[{\"mediaType\":\"application/x-rar\",\"digest\":"
	    "\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
	    "\"size\":3}]}";
	struct oci_manifest man;
	struct shoal_err err;

	(void)state;
	assert_int_equal(oci_parse_manifest(m, NULL, &man, &err), -1);
	assert_non_null(strstr(err.msg, "unknown media type application/x-weird"));
	assert_non_null(strstr(err.msg, "unknown media type application/x-rar"));
}

static void
test_import_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct layout l;
	struct shoal_err err;
	struct image_store *s;
	struct image *img, **imgs;
	char **refs = NULL, path[512];
	struct stat sb;
	size_t n;

	fixture_need_root();
	make_app(f, &l, "app_v1", "test/app:v1", 1);
	s = image_store_open(f->root, &err);
	assert_non_null(s);
	if (image_import(s, l.dir, NULL, &refs, &err) == -1)
		fail_msg("%s", err.msg);
	assert_string_equal(refs[0], "test/app:v1");
	assert_null(refs[1]);
	image_refs_free(refs);
	image_store_close(s);

	/* A fresh handle reads the same index back. */
	s = image_store_open(f->root, &err);
	img = image_get(s, "test/app:v1", &err);
	assert_non_null(img);
	assert_string_equal(img->name, "test/app");
	assert_string_equal(img->tag, "v1");
	assert_string_equal(img->digest, l.manifest);
	assert_int_equal(img->nlayers, 2);
	assert_string_equal(img->layer_digests[0], l.layers[0] + 7); /* base first */
	assert_string_equal(img->layer_digests[1], l.layers[1] + 7);
	snprintf(path, sizeof(path), "%s/layers/%s", f->root, l.layers[0] + 7);
	assert_string_equal(img->layer_dirs[0], path);
	snprintf(path, sizeof(path), "%s/bin/app", img->layer_dirs[0]);
	assert_int_equal(stat(path, &sb), 0);
	assert_null(img->layer_dirs[2]);
	assert_string_equal(img->entrypoint[0], "/bin/app");
	assert_null(img->entrypoint[1]);
	assert_string_equal(img->cmd[1], "80");
	assert_string_equal(img->env[1], "MODE=test");
	assert_string_equal(img->workdir, "/srv");
	assert_string_equal(img->user, "1000:1000");
	assert_int_equal(img->size, 19 + 9 + 2);
	assert_true(img->created_ms > 0);
	image_free(img);

	assert_null(image_get(s, "test/app:v2", &err));
	assert_int_equal(err.code, ENOENT);
	assert_string_equal(err.msg, "no image test/app:v2");
	assert_int_equal(image_list(s, &imgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(imgs[0]->digest, l.manifest);
	image_list_free(imgs, n);

	/* Importing the same layout under another name shares everything. */
	assert_int_equal(image_import(s, l.dir, "other:latest", NULL, &err), 0);
	snprintf(path, sizeof(path), "%s/layers", f->root);
	assert_int_equal(count_entries(path), 2);
	img = image_get(s, "other", &err);
	assert_non_null(img);
	assert_string_equal(img->digest, l.manifest);
	image_free(img);
	image_store_close(s);
}

static void
test_shared_base_and_rmi(void **state)
{
	struct fixture *f = *state;
	struct layout a, b;
	struct shoal_err err;
	struct image_store *s;
	struct image_gc_stats st;
	char path[512], layers[256], blobs[256];

	fixture_need_root();
	make_app(f, &a, "app_1", "test/app:1", 1);
	make_app(f, &b, "app_2", "test/app:2", 2);
	assert_string_equal(a.layers[0], b.layers[0]);
	s = image_store_open(f->root, &err);
	assert_int_equal(image_import(s, a.dir, NULL, NULL, &err), 0);
	assert_int_equal(image_import(s, b.dir, NULL, NULL, &err), 0);
	snprintf(layers, sizeof(layers), "%s/layers", f->root);
	snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", f->root);
	assert_int_equal(count_entries(layers), 3);
	assert_int_equal(count_entries(blobs), 7); /* 2 manifests, 2 configs, 3 layers */

	/* A container of app:1 pins its top layer. */
	snprintf(path, sizeof(path), "%s/containers/c1", f->root);
	assert_int_equal(util_mkdir_p(path, 0700, &err), 0);
	snprintf(path, sizeof(path), "%s/containers/c1/layers", f->root);
	{
		char *text = xasprintf("%s\n%s\n", a.layers[0] + 7, a.layers[1] + 7);
		write_file(path, text, strlen(text));
		free(text);
	}
	assert_int_equal(image_remove(s, "test/app:1", &st, &err), 0);
	assert_int_equal(st.blobs, 3); /* manifest, config, top layer blob */
	assert_int_equal(st.layers, 0);
	assert_int_equal(count_entries(layers), 3);
	assert_int_equal(image_remove(s, "test/app:1", &st, &err), -1);
	assert_int_equal(err.code, ENOENT);

	assert_int_equal(image_remove(s, "test/app:2", &st, &err), 0);
	assert_int_equal(st.layers, 1); /* app:2's top; the container pins the other two */
	assert_int_equal(count_entries(layers), 2);
	assert_int_equal(count_entries(blobs), 0);

	unlink(path);
	assert_int_equal(image_store_gc(s, &st, &err), 0);
	assert_int_equal(st.layers, 2);
	assert_int_equal(count_entries(layers), 0);
	image_store_close(s);
}

/* Import must fail with a message containing want, and leave the store as it was. */
static void
expect_failure(struct fixture *f, const char *dir, const char *want)
{
	struct shoal_err err = {0};
	struct image_store *s = image_store_open(f->root, &err);
	char *before, *after;

	assert_non_null(s);
	before = snapshot(f->root);
	assert_int_equal(image_import(s, dir, NULL, NULL, &err), -1);
	if (strstr(err.msg, want) == NULL)
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
	after = snapshot(f->root);
	assert_string_equal(before, after);
	free(before);
	free(after);
	image_store_close(s);
}

static void
test_failed_imports_leave_store_unchanged(void **state)
{
	struct fixture *f = *state;
	struct layout good, l;
	struct shoal_err err;
	struct image_store *s;
	char path[512], *want;

	fixture_need_root();
	/* A store with something in it already: the shared base must survive untouched. */
	make_app(f, &good, "good", "test/app:1", 1);
	s = image_store_open(f->root, &err);
	assert_int_equal(image_import(s, good.dir, NULL, NULL, &err), 0);
	image_store_close(s);

	/* bad digest: one byte of the top layer changed, size kept */
	make_app(f, &l, "bad_digest", "test/app:2", 2);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", l.dir, l.layers[1] + 7);
	{
		int fd = open(path, O_WRONLY);
		assert_int_equal(pwrite(fd, "X", 1, 600), 1);
		close(fd);
	}
	want = xasprintf("layer sha256:%.12s…: digest mismatch (got sha256:", l.layers[1] + 7);
	expect_failure(f, l.dir, want);
	free(want);

	/* truncated blob */
	make_app(f, &l, "truncated", "test/app:2", 2);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", l.dir, l.layers[1] + 7);
	assert_int_equal(truncate(path, 100), 0);
	expect_failure(f, l.dir, "(truncated)");

	/* missing layer */
	make_app(f, &l, "missing", "test/app:2", 2);
	snprintf(path, sizeof(path), "%s/blobs/sha256/%s", l.dir, l.layers[1] + 7);
	assert_int_equal(unlink(path), 0);
	expect_failure(f, l.dir, "missing from the archive");

	/* unknown media type */
	{
		const struct file *layers[] = {base_files, top2_files};
		const size_t n[] = {ARRAY_SIZE(base_files), 2};
		make_layout(f, &l, "mediatype", "test/app:2", layers, n, 2,
		            "application/vnd.example.squashfs");
		expect_failure(f, l.dir, "unknown media type application/vnd.example.squashfs");
	}

	/* a layer escaping with ../ (after a good base layer was unpacked) */
	{
		const struct file evil[] = {{"srv/../../../../tmp/shoal-evil", "x", 0}};
		const struct file *layers[] = {base_files, evil};
		const size_t n[] = {ARRAY_SIZE(base_files), 1};
		struct stat sb;
		make_layout(f, &l, "dotdot", "test/app:2", layers, n, 2, NULL);
		expect_failure(f, l.dir, "entry \"srv/../../../../tmp/shoal-evil\": path with");
		assert_int_equal(stat("/tmp/shoal-evil", &sb), -1);
	}

	/* a device node, in a fresh base layer so nothing of it is in the store */
	{
		const struct file dev[] = {{"dev/", NULL, 0}, {"dev/mem", NULL, AE_IFCHR}};
		const struct file *layers[] = {dev};
		const size_t n[] = {2};
		make_layout(f, &l, "device", "test/dev:1", layers, n, 1, NULL);
		expect_failure(f, l.dir, "entry \"dev/mem\": device node refused (char 1:3)");
	}

	/* not an image at all */
	snprintf(path, sizeof(path), "%s/empty", f->src);
	mkdir(path, 0755);
	expect_failure(f, path, "neither an OCI image layout");
}

/* The unpacked-size cap ($SHOAL_IMAGE_MAX_SIZE): over it an import fails with a message
 * naming the limit, and the store is as it was; layers the store already holds count too. */
/* data compressed by libarchive's filter (ARCHIVE_FILTER_GZIP, _ZSTD); 0 when not built in. */
static int
compress_bytes(const char *data, size_t dlen, int filter, char **out, size_t *len)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	size_t cap = 1 << 20, used = 0;
	char *buf = xmalloc(cap);

	archive_write_set_format_raw(a);
	if (archive_write_add_filter(a, filter) != ARCHIVE_OK) {
		archive_write_free(a);
		archive_entry_free(ae);
		free(buf);
		return 0;
	}
	archive_write_set_bytes_in_last_block(a, 1);
	assert_int_equal(archive_write_open_memory(a, buf, cap, &used), ARCHIVE_OK);
	archive_entry_set_pathname(ae, "layer.tar");
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, (la_int64_t)dlen);
	assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
	assert_int_equal(archive_write_data(a, data, dlen), (ssize_t)dlen);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	archive_entry_free(ae);
	*out = buf;
	*len = used;
	return 1;
}

/* An OCI layout under f->src/name, image ref, with one layer: blob as mt, config diff_id. */
static void
make_one_layer(struct fixture *f, struct layout *l, const char *name, const char *ref,
               const char *blob, size_t blen, const char *mt, const char *diff_id)
{
	char *config, *descs;

	layout_begin(f, l, name);
	put_blob(l->dir, blob, blen, l->layers[0]);
	l->nlayers = 1;
	config = xasprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
	                   "\"Cmd\":[\"/bin/app\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":"
	                   "[\"%s\"]}}",
	                   diff_id);
	descs = xasprintf("{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}", mt, l->layers[0],
	                  blen);
	layout_finish(l, ref, config, descs);
	free(config);
	free(descs);
}

/* image_get(ref) resolves its one layer to ROOT/layers/hex, and the layer holds bin/app. */
static void
expect_layer(struct fixture *f, struct image_store *s, const char *ref, const char *hex)
{
	struct shoal_err err;
	struct image *img = image_get(s, ref, &err);
	char want[512], app[600];
	struct stat sb;

	if (img == NULL)
		fail_msg("%s: %s", ref, err.msg);
	assert_int_equal(img->nlayers, 1);
	snprintf(want, sizeof(want), "%s/layers/%s", f->root, hex);
	assert_string_equal(img->layer_dirs[0], want);
	assert_string_equal(img->layer_digests[0], hex);
	snprintf(app, sizeof(app), "%s/bin/app", want);
	assert_int_equal(stat(app, &sb), 0);
	image_free(img);
}

static void
write_container_layers(struct fixture *f, const char *id, const char *hex)
{
	char path[512];
	char *text = xasprintf("%s\n", hex);

	snprintf(path, sizeof(path), "%s/containers/%s", f->root, id);
	assert_int_equal(util_mkdir_p(path, 0700, NULL), 0);
	snprintf(path, sizeof(path), "%s/containers/%s/layers", f->root, id);
	write_file(path, text, strlen(text));
	free(text);
}

/*
 * One layer as plain tar, gzip and zstd in three images: unpacked once, by its diff_id, and
 * every image resolves to that directory; gc keeps it while any image or container uses it.
 */
static void
test_layers_by_diff_id(void **state)
{
	struct fixture *f = *state;
	struct layout plain, gz, zst;
	struct shoal_err err;
	struct image_store *s;
	struct image_gc_stats st;
	char *tar, *gzb, *zstb, diff[DIGEST_STR_LEN + 1], layers[256], blobs[256], path[512];
	size_t tlen, gzlen, zstlen;
	int have_zstd;

	fixture_need_root();
	tar_bytes(base_files, ARRAY_SIZE(base_files), &tar, &tlen);
	digest_buf(tar, tlen, diff);
	assert_int_equal(compress_bytes(tar, tlen, ARCHIVE_FILTER_GZIP, &gzb, &gzlen), 1);
	have_zstd = compress_bytes(tar, tlen, ARCHIVE_FILTER_ZSTD, &zstb, &zstlen);
	if (!have_zstd) /* libarchive without zstd: a second gzip (other level) stands in */
		assert_int_equal(compress_bytes(tar, tlen, ARCHIVE_FILTER_GZIP, &zstb, &zstlen), 1);
	make_one_layer(f, &plain, "plain", "test/one:plain", tar, tlen, OCI_MT_LAYER, diff);
	make_one_layer(f, &gz, "gz", "test/one:gz", gzb, gzlen, OCI_MT_LAYER_GZIP, diff);
	make_one_layer(f, &zst, "zst", "test/one:zst", zstb, zstlen,
	               have_zstd ? OCI_MT_LAYER "+zstd" : OCI_MT_LAYER_GZIP, diff);
	assert_string_not_equal(gz.layers[0], plain.layers[0]);
	if (have_zstd)
		assert_string_not_equal(zst.layers[0], gz.layers[0]);

	s = image_store_open(f->root, &err);
	assert_non_null(s);
	assert_int_equal(image_import(s, gz.dir, NULL, NULL, &err), 0);
	assert_int_equal(image_import(s, zst.dir, NULL, NULL, &err), 0);
	assert_int_equal(image_import(s, plain.dir, NULL, NULL, &err), 0);
	snprintf(layers, sizeof(layers), "%s/layers", f->root);
	snprintf(blobs, sizeof(blobs), "%s/blobs/sha256", f->root);
	assert_int_equal(count_entries(layers), 1);
	snprintf(path, sizeof(path), "%s/%s", layers, diff + 7);
	assert_int_equal(access(path, F_OK), 0);
	expect_layer(f, s, "test/one:plain", diff + 7);
	expect_layer(f, s, "test/one:gz", diff + 7);
	expect_layer(f, s, "test/one:zst", diff + 7);
	/* A layout without the layer blob (what a pull leaves when it skipped fetching it)
	 * imports while the store has the layer by diff_id: nothing is unpacked. */
	{
		struct layout nb;
		char *bz;
		size_t bzlen;

		/* bzip2: a blob digest the store has never seen (not an OCI type: never read) */
		assert_int_equal(compress_bytes(tar, tlen, ARCHIVE_FILTER_BZIP2, &bz, &bzlen), 1);
		make_one_layer(f, &nb, "noblob", "test/one:noblob", bz, bzlen, OCI_MT_LAYER_GZIP,
		               diff);
		free(bz);
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", nb.dir, nb.layers[0] + 7);
		assert_int_equal(unlink(path), 0);
		if (image_import(s, nb.dir, NULL, NULL, &err) == -1)
			fail_msg("%s", err.msg);
		assert_int_equal(count_entries(layers), 1);
		expect_layer(f, s, "test/one:noblob", diff + 7);
		assert_int_equal(image_remove(s, "test/one:noblob", &st, &err), 0);
	}

	/* gc: the layer stays while one image or one container uses it. */
	assert_int_equal(image_remove(s, "test/one:plain", &st, &err), 0);
	assert_int_equal(image_remove(s, "test/one:gz", &st, &err), 0);
	assert_int_equal(st.layers, 0);
	expect_layer(f, s, "test/one:zst", diff + 7);
	write_container_layers(f, "c1", diff + 7);
	assert_int_equal(image_remove(s, "test/one:zst", &st, &err), 0);
	assert_int_equal(st.layers, 0);
	assert_int_equal(count_entries(layers), 1);
	assert_int_equal(count_entries(blobs), 0);
	snprintf(path, sizeof(path), "%s/containers/c1/layers", f->root);
	unlink(path);
	assert_int_equal(image_store_gc(s, &st, &err), 0);
	assert_int_equal(st.layers, 1);
	assert_int_equal(count_entries(layers), 0);
	image_store_close(s);
	free(tar);
	free(gzb);
	free(zstb);
}

/*
 * A store written before layers were keyed by diff_id has layers/<compressed blob hex>: its
 * images keep resolving there (and its containers keep it through gc) until the layer arrives
 * by diff_id; then images resolve to the new directory and the old one goes once no container
 * lists it.
 */
static void
test_old_store_layer_dirs(void **state)
{
	struct fixture *f = *state;
	struct layout gz, plain;
	struct shoal_err err;
	struct image_store *s;
	struct image_gc_stats st;
	char *tar, *gzb, diff[DIGEST_STR_LEN + 1], from[1024], to[1024], layers[256];
	size_t tlen, gzlen;

	fixture_need_root();
	tar_bytes(base_files, ARRAY_SIZE(base_files), &tar, &tlen);
	digest_buf(tar, tlen, diff);
	assert_int_equal(compress_bytes(tar, tlen, ARCHIVE_FILTER_GZIP, &gzb, &gzlen), 1);
	make_one_layer(f, &gz, "gz", "test/one:gz", gzb, gzlen, OCI_MT_LAYER_GZIP, diff);
	make_one_layer(f, &plain, "plain", "test/one:plain", tar, tlen, OCI_MT_LAYER, diff);
	s = image_store_open(f->root, &err);
	assert_non_null(s);
	assert_int_equal(image_import(s, gz.dir, NULL, NULL, &err), 0);
	/* What the old store did: the layer under its compressed digest. */
	snprintf(layers, sizeof(layers), "%s/layers", f->root);
	snprintf(from, sizeof(from), "%s/%s", layers, diff + 7);
	snprintf(to, sizeof(to), "%s/%s", layers, gz.layers[0] + 7);
	assert_int_equal(rename(from, to), 0);
	expect_layer(f, s, "test/one:gz", gz.layers[0] + 7);
	write_container_layers(f, "old", gz.layers[0] + 7);
	assert_int_equal(image_store_gc(s, &st, &err), 0);
	assert_int_equal(st.layers, 0);

	assert_int_equal(image_import(s, plain.dir, NULL, NULL, &err), 0);
	assert_int_equal(count_entries(layers), 2);
	expect_layer(f, s, "test/one:gz", diff + 7);
	expect_layer(f, s, "test/one:plain", diff + 7);
	/* The old container still lists the old directory: kept. */
	assert_int_equal(image_store_gc(s, &st, &err), 0);
	assert_int_equal(st.layers, 0);
	assert_int_equal(access(to, F_OK), 0);
	snprintf(from, sizeof(from), "%s/containers/old/layers", f->root);
	unlink(from);
	assert_int_equal(image_store_gc(s, &st, &err), 0);
	assert_int_equal(st.layers, 1);
	assert_int_equal(count_entries(layers), 1);
	expect_layer(f, s, "test/one:gz", diff + 7);
	image_store_close(s);
	free(tar);
	free(gzb);
}

/* A layer whose content is not the config's diff_id is refused; the store stays as it was. */
static void
test_diff_id_mismatch(void **state)
{
	struct fixture *f = *state;
	struct layout good, bad;
	struct shoal_err err;
	struct image_store *s;
	char *tar, *top, *gzb, diff[DIGEST_STR_LEN + 1], wrong[DIGEST_STR_LEN + 1];
	size_t tlen, toplen, gzlen;

	fixture_need_root();
	tar_bytes(base_files, ARRAY_SIZE(base_files), &tar, &tlen);
	digest_buf(tar, tlen, diff);
	tar_bytes(top1_files, ARRAY_SIZE(top1_files), &top, &toplen);
	digest_buf(top, toplen, wrong);
	make_one_layer(f, &good, "good", "test/one:good", tar, tlen, OCI_MT_LAYER, diff);
	s = image_store_open(f->root, &err);
	assert_non_null(s);
	assert_int_equal(image_import(s, good.dir, NULL, NULL, &err), 0);
	image_store_close(s);
	/* base_files' layer (gzip) claiming to be top1_files' diff_id. */
	assert_int_equal(compress_bytes(tar, tlen, ARCHIVE_FILTER_GZIP, &gzb, &gzlen), 1);
	make_one_layer(f, &bad, "bad", "test/one:bad", gzb, gzlen, OCI_MT_LAYER_GZIP, wrong);
	expect_failure(f, bad.dir, "diff_id");
	/* Without its blob, a layer the store lacks cannot be imported. */
	{
		char path[512];
		snprintf(path, sizeof(path), "%s/blobs/sha256/%s", bad.dir, bad.layers[0] + 7);
		assert_int_equal(unlink(path), 0);
		expect_failure(f, bad.dir, "missing from the archive");
	}
	free(tar);
	free(top);
	free(gzb);
}

static void
test_size_cap(void **state)
{
	struct fixture *f = *state;
	struct layout good, l;
	struct shoal_err err;
	struct image_store *s;
	static char big[8193];
	char *want;

	fixture_need_root();
	make_app(f, &good, "good", "test/app:1", 1);
	s = image_store_open(f->root, &err);
	assert_int_equal(image_import(s, good.dir, NULL, NULL, &err), 0);
	image_store_close(s);

	/* A new layer past the cap: refused while unpacking, before its big file is written. */
	memset(big, 'x', sizeof(big) - 1);
	{
		const struct file top[] = {{"srv/", NULL, 0}, {"srv/big", big, 0}};
		const struct file *layers[] = {base_files, top};
		const size_t n[] = {ARRAY_SIZE(base_files), 2};
		make_layout(f, &l, "big", "test/big:1", layers, n, 2, NULL);
	}
	assert_int_equal(setenv("SHOAL_IMAGE_MAX_SIZE", "4Ki", 1), 0);
	want = xasprintf("layer sha256:%.12s…: at entry \"srv/big\": unpacks to more than the "
	                 "limit of ",
	                 l.layers[1] + 7);
	expect_failure(f, l.dir, want);
	free(want);
	expect_failure(f, l.dir, "(limits: SHOAL_IMAGE_MAX_SIZE, SHOAL_LAYER_MAX_RATIO)");

	/* Under a cap smaller than the base layer the store already has: still refused. */
	make_app(f, &l, "small", "test/app:2", 2);
	assert_int_equal(setenv("SHOAL_IMAGE_MAX_SIZE", "16", 1), 0);
	expect_failure(f, l.dir, "image unpacks to more than 16 (limits: SHOAL_IMAGE_MAX_SIZE");

	/* A bad setting is one clear line, not a silent default. */
	assert_int_equal(setenv("SHOAL_IMAGE_MAX_SIZE", "lots", 1), 0);
	assert_null(image_store_open(f->root, &err));
	assert_string_equal(err.msg, "SHOAL_IMAGE_MAX_SIZE=lots: want a size such as 8Gi");
	assert_int_equal(unsetenv("SHOAL_IMAGE_MAX_SIZE"), 0);
	assert_int_equal(setenv("SHOAL_LAYER_MAX_RATIO", "-1", 1), 0);
	assert_null(image_store_open(f->root, &err));
	assert_string_equal(err.msg, "SHOAL_LAYER_MAX_RATIO=-1: want a whole number (0: no check)");
	assert_int_equal(unsetenv("SHOAL_LAYER_MAX_RATIO"), 0);

	/* Without the cap the same image imports. */
	s = image_store_open(f->root, &err);
	assert_non_null(s);
	assert_int_equal(image_import(s, l.dir, NULL, NULL, &err), 0);
	image_store_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digest),
	    cmocka_unit_test(test_ref),
	    cmocka_unit_test(test_index_names),
	    cmocka_unit_test(test_manifest_problems_collected),
	    cmocka_unit_test_setup_teardown(test_import_roundtrip, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_shared_base_and_rmi, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_imports_leave_store_unchanged, setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_size_cap, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_layers_by_diff_id, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_old_store_layer_dirs, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_diff_id_mismatch, setup, fixture_teardown),
	};
	return cmocka_run_group_tests_name("image", tests, NULL, NULL);
}
