#include "layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "digest.h"
#include "err.h"
#include "util.h"

#define WH_PREFIX      ".wh."
#define WH_META_PREFIX ".wh..wh."
#define WH_OPAQUE      ".wh..wh..opq"

static void
archive_read_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
	*a = NULL;
}

static void
archive_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
	*a = NULL;
}

#define cleanup_archive_read  __attribute__((cleanup(archive_read_freep)))
#define cleanup_archive_write __attribute__((cleanup(archive_write_freep)))

/*
 * Normalise an entry name into out: drop "./" and empty components. Absolute names and ".."
 * components are refused rather than cleaned, because an archive that carries them was made
 * to escape (or by a tool we do not understand). "" means the layer's root itself.
 */
static int
clean_name(const char *name, char *out, size_t len, struct shoal_err *err)
{
	const char *p = name;
	size_t n = 0;

	if (name[0] == '/')
		return err_set(err, 0, "absolute path refused");
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t clen = (size_t)(end - p);

		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return err_set(err, 0, "path with \"..\" refused (escapes the layer)");
		if (clen > 0 && !(clen == 1 && p[0] == '.')) {
			if (n + clen + 2 > len)
				return err_set(err, ENAMETOOLONG, "path");
			if (n > 0)
				out[n++] = '/';
			memcpy(out + n, p, clen);
			n += clen;
		}
		p = *end ? end + 1 : end;
	}
	out[n] = '\0';
	return 0;
}

/*
 * Open the directory rel (clean, relative; "" is base itself) under base without following
 * any symlink, creating missing components when create is set. Returns an fd or -1.
 */
static int
open_dir_beneath(int base, const char *rel, int create, struct shoal_err *err)
{
	cleanup_close int fd = openat(base, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char comp[NAME_MAX + 1];
	const char *p = rel;

	if (fd == -1)
		return err_set(err, errno, "open layer directory");
	while (*p) {
		const char *end = strchrnul(p, '/');
		size_t clen = (size_t)(end - p);
		int next;

		if (clen > NAME_MAX)
			return err_set(err, ENAMETOOLONG, "%s", rel);
		memcpy(comp, p, clen);
		comp[clen] = '\0';
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next == -1 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) == -1 && errno != EEXIST)
				return err_set(err, errno, "mkdir %s", rel);
			next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next == -1) {
			if (errno == ELOOP || errno == ENOTDIR)
				return err_set(err, 0, "%.*s is a symlink or not a directory",
				               (int)(end - rel), rel);
			return err_set(err, errno, "open %.*s", (int)(end - rel), rel);
		}
		close(fd);
		fd = next;
		p = *end ? end + 1 : end;
	}
	return steal_fd(&fd);
}

/* Split clean into its parent ("" at the top) and its last component, in place. */
static const char *
split_last(char *clean)
{
	char *slash = strrchr(clean, '/');

	if (slash == NULL)
		return NULL;
	*slash = '\0';
	return slash + 1;
}

/* `.wh.NAME` in parent: NAME becomes a 0:0 char device, the overlayfs whiteout. */
static int
apply_whiteout(int root, const char *parent, const char *name, struct shoal_err *err)
{
	cleanup_close int fd = -1;

	if (name[0] == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return err_set(err, 0, "invalid whiteout");
	fd = open_dir_beneath(root, parent, 1, err);
	if (fd == -1)
		return -1;
	/* The same layer should not carry both NAME and its whiteout; if it does, the whiteout
	 * wins, as in overlayfs's own view of the result. */
	if (layer_remove_at(fd, name, err) == -1)
		return -1;
	if (mknodat(fd, name, S_IFCHR | 0, makedev(0, 0)) == -1)
		return err_set(err, errno, "mknod whiteout");
	return 0;
}

/* `DIR/.wh..wh..opq`: DIR hides every lower child, which overlayfs reads from an xattr. */
static int
apply_opaque(int root, const char *dir, struct shoal_err *err)
{
	cleanup_close int fd = open_dir_beneath(root, dir, 1, err);

	if (fd == -1)
		return -1;
	if (fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) == -1)
		return err_set(err, errno, "set trusted.overlay.opaque");
	return 0;
}

/* Drop trusted.* xattrs: overlayfs trusts trusted.overlay.* for whiteouts and redirects. */
static void
strip_trusted_xattrs(struct archive_entry *e)
{
	struct keep {
		char *name;
		void *value;
		size_t size;
	} *keep = NULL;
	size_t n = 0, total = (size_t)archive_entry_xattr_reset(e);
	const char *name;
	const void *value;
	size_t size;
	int dropped = 0;

	if (total == 0)
		return;
	keep = xcalloc(total, sizeof(*keep));
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (strncmp(name, "trusted.", 8) == 0) {
			dropped = 1;
			continue;
		}
		keep[n].name = xstrdup(name);
		keep[n].value = xmalloc(size);
		memcpy(keep[n].value, value, size);
		keep[n].size = size;
		n++;
	}
	if (dropped) {
		archive_entry_xattr_clear(e);
		for (size_t i = 0; i < n; i++)
			archive_entry_xattr_add_entry(e, keep[i].name, keep[i].value, keep[i].size);
	}
	for (size_t i = 0; i < n; i++) {
		free(keep[i].name);
		free(keep[i].value);
	}
	free(keep);
}

/* Refuse the entry types a layer must not create; returns 1 for an overlay-format whiteout. */
static int
check_type(struct archive_entry *e, unsigned flags, struct shoal_err *err)
{
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
	case AE_IFDIR:
	case AE_IFLNK:
		return 0;
	case AE_IFIFO:
		if (flags & LAYER_OCI)
			return 0;
		return err_set(err, 0, "fifo refused");
	case AE_IFCHR:
		if ((flags & LAYER_OCI) && archive_entry_rdev(e) == 0)
			return 1;
		return err_set(err, 0, "device node refused (char %u:%u)",
		               (unsigned)archive_entry_rdevmajor(e),
		               (unsigned)archive_entry_rdevminor(e));
	case AE_IFBLK:
		return err_set(err, 0, "device node refused (block %u:%u)",
		               (unsigned)archive_entry_rdevmajor(e),
		               (unsigned)archive_entry_rdevminor(e));
	default:
		return err_set(err, 0, "unsupported file type refused");
	}
}

/*
 * A hardlink's target must be an entry of this layer already written, reached without any
 * symlink (link(2) would otherwise pin a host file into the image).
 */
static int
check_hardlink(int root, const char *target, struct shoal_err *err)
{
	char buf[PATH_MAX];
	const char *leaf;
	cleanup_close int fd = -1;
	struct stat st;

	snprintf(buf, sizeof(buf), "%s", target);
	leaf = split_last(buf);
	fd = open_dir_beneath(root, leaf ? buf : "", 0, err);
	if (fd == -1)
		return err_prefix(err, "hardlink target %s", target);
	if (fstatat(fd, leaf ? leaf : buf, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return err_set(err, errno, "hardlink target %s", target);
	if (S_ISDIR(st.st_mode))
		return err_set(err, 0, "hardlink target %s is a directory", target);
	return 0;
}

static int
copy_data(struct archive *in, struct archive *out, struct shoal_err *err)
{
	const void *buf;
	size_t size;
	la_int64_t off;

	for (;;) {
		int r = archive_read_data_block(in, &buf, &size, &off);
		if (r == ARCHIVE_EOF)
			return 0;
		if (r < ARCHIVE_WARN)
			return err_set(err, 0, "read: %s", archive_error_string(in));
		if (archive_write_data_block(out, buf, size, off) < ARCHIVE_WARN)
			return err_set(err, 0, "write: %s", archive_error_string(out));
	}
}

/* A limit was hit: EFBIG for callers to tell, without strerror's "File too large" appended. */
__attribute__((format(printf, 2, 3))) static int
too_big(struct shoal_err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = EFBIG;
	return -1;
}

/* Charge entry e against the limits before anything of it is written. */
static int
charge(struct archive_entry *e, const struct layer_limits *lim, uint64_t archive_size,
       struct layer_stats *stats, struct shoal_err *err)
{
	la_int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
	uint64_t c =
	    LAYER_ENTRY_COST + (size > 0 && archive_entry_hardlink(e) == NULL ? (uint64_t)size : 0);
	char a[32], b[32];

	/* Saturate: a forged size near 2^64 must not wrap the sum back under the limits. */
	stats->charged = c > UINT64_MAX - stats->charged ? UINT64_MAX : stats->charged + c;
	if (lim->max_bytes && stats->charged > lim->max_bytes)
		return too_big(err, "unpacks to more than the limit of %s",
		               util_format_bytes((int64_t)lim->max_bytes, a, sizeof(a)));
	if (lim->max_ratio && stats->charged > lim->ratio_floor &&
	    stats->charged / lim->max_ratio > archive_size)
		return too_big(
		    err,
		    "expands more than %llu times (%s archive, over %s unpacked): "
		    "refused as a decompression bomb",
		    (unsigned long long)lim->max_ratio,
		    util_format_bytes((int64_t)archive_size, a, sizeof(a)),
		    util_format_bytes((int64_t)MIN(stats->charged, INT64_MAX), b, sizeof(b)));
	return 0;
}

/* One archive entry; the caller prefixes errors with the entry's name. */
static int
unpack_entry(struct archive *in, struct archive *out, struct archive_entry *e, int root,
             const char *rootpath, unsigned flags, struct layer_stats *stats, struct shoal_err *err)
{
	char clean[PATH_MAX], parent[PATH_MAX];
	const char *base;
	const char *link = archive_entry_hardlink(e);
	int overlay_whiteout;

	if (clean_name(archive_entry_pathname(e), clean, sizeof(clean), err) == -1)
		return -1;
	if (clean[0] == '\0')
		return 0; /* "./": the layer directory itself already exists */
	snprintf(parent, sizeof(parent), "%s", clean);
	base = split_last(parent);
	if (base == NULL) {
		base = clean;
		parent[0] = '\0';
	}
	if ((flags & LAYER_OCI) && strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
		stats->entries++;
		if (strcmp(base, WH_OPAQUE) == 0)
			return apply_opaque(root, parent, err);
		if (strncmp(base, WH_META_PREFIX, strlen(WH_META_PREFIX)) == 0)
			return 0; /* aufs bookkeeping (.wh..wh.plnk, ...): meaningless here */
		return apply_whiteout(root, parent, base + strlen(WH_PREFIX), err);
	}
	/* A hardlink's own type field is whatever the writer left; its target is checked. */
	overlay_whiteout = link ? 0 : check_type(e, flags, err);
	if (overlay_whiteout == -1)
		return -1;
	if (overlay_whiteout) {
		stats->entries++;
		return apply_whiteout(root, parent, base, err);
	}
	if (link != NULL) {
		char lclean[PATH_MAX];
		cleanup_free char *abs = NULL;

		if (clean_name(link, lclean, sizeof(lclean), err) == -1)
			return err_prefix(err, "hardlink target %s", link);
		if (lclean[0] == '\0')
			return err_set(err, 0, "hardlink to the layer directory refused");
		if (check_hardlink(root, lclean, err) == -1)
			return -1;
		abs = xasprintf("%s/%s", rootpath, lclean);
		archive_entry_set_hardlink(e, abs);
	}
	if (flags & LAYER_OCI) {
		strip_trusted_xattrs(e);
	} else {
		/* A transport archive's files are ours to read, whoever made them. */
		archive_entry_set_uid(e, 0);
		archive_entry_set_gid(e, 0);
	}
	{
		cleanup_free char *abs = xasprintf("%s/%s", rootpath, clean);
		archive_entry_set_pathname(e, abs);
	}
	if (archive_write_header(out, e) < ARCHIVE_WARN)
		return err_set(err, 0, "%s", archive_error_string(out));
	if (archive_entry_size(e) > 0 && link == NULL) {
		if (copy_data(in, out, err) == -1)
			return -1;
		stats->bytes += (uint64_t)archive_entry_size(e);
	}
	if (archive_write_finish_entry(out) < ARCHIVE_WARN)
		return err_set(err, 0, "%s", archive_error_string(out));
	stats->entries++;
	return 0;
}

/*
 * The tar reader reads the decompressed stream through this: an outer reader (all filters,
 * raw format) decompresses, and every byte the tar reader sees is hashed on the way, so the
 * diff_id costs a hash and a copy, not a second decompression. OpenSSL's SHA-256 (it uses the
 * CPU's SHA extensions) rather than libsodium's, which made a 390 MB layer's import ~25% slower.
 */
struct hashed_src {
	struct archive *outer;
	EVP_MD_CTX *h;
	uint64_t size;
	uint8_t buf[1 << 16];
};

static void
hashed_srcp(struct hashed_src **p)
{
	if (*p) {
		EVP_MD_CTX_free((*p)->h);
		free(*p);
	}
}

static la_ssize_t
hashed_read(struct archive *a, void *arg, const void **out)
{
	struct hashed_src *h = arg;
	la_ssize_t n = archive_read_data(h->outer, h->buf, sizeof(h->buf));

	if (n < 0) {
		archive_set_error(a, EIO, "%s", archive_error_string(h->outer));
		return -1;
	}
	EVP_DigestUpdate(h->h, h->buf, (size_t)n);
	h->size += (uint64_t)n;
	*out = h->buf;
	return n;
}

int
layer_unpack(const char *archive, const char *dir, unsigned flags, struct layer_stats *stats,
             struct shoal_err *err)
{
	return layer_unpack_limited(archive, dir, flags, NULL, stats, err);
}

int
layer_unpack_limited(const char *archive, const char *dir, unsigned flags,
                     const struct layer_limits *lim, struct layer_stats *stats,
                     struct shoal_err *err)
{
	static const struct layer_limits defaults = {
	    LAYER_DEFAULT_MAX_BYTES, LAYER_DEFAULT_MAX_RATIO, LAYER_DEFAULT_RATIO_FLOOR};
	cleanup_archive_read struct archive *outer = archive_read_new();
	cleanup_archive_read struct archive *in = archive_read_new();
	cleanup_archive_write struct archive *out = archive_write_disk_new();
	cleanup_free char *rootpath = realpath(dir, NULL);
	__attribute__((cleanup(hashed_srcp))) struct hashed_src *src = xcalloc(1, sizeof(*src));
	struct archive_entry *raw;
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hlen = 0;
	const void *rest;
	cleanup_close int root = -1;
	struct layer_stats local = {0};
	struct archive_entry *e;
	struct stat ast;
	int opts;

	if (lim == NULL)
		lim = &defaults;
	if (stats == NULL)
		stats = &local;
	memset(stats, 0, sizeof(*stats));
	if (in == NULL || out == NULL || outer == NULL)
		return err_set(err, ENOMEM, "libarchive");
	/* A canonical prefix: libarchive refuses to write through any symlink in the path. */
	if (rootpath == NULL)
		return err_set(err, errno, "%s", dir);
	root = open(rootpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root == -1)
		return err_set(err, errno, "open %s", rootpath);

	archive_read_support_filter_all(outer);
	archive_read_support_format_raw(outer);
	if (archive_read_open_filename(outer, archive, 1 << 16) != ARCHIVE_OK ||
	    archive_read_next_header(outer, &raw) != ARCHIVE_OK)
		return err_set(err, 0, "%s", archive_error_string(outer));
	src->outer = outer;
	src->h = EVP_MD_CTX_new();
	if (src->h == NULL || EVP_DigestInit_ex(src->h, EVP_sha256(), NULL) != 1)
		return err_set(err, ENOMEM, "sha256");
	archive_read_support_format_tar(in);
	if (archive_read_open(in, src, NULL, hashed_read, NULL) != ARCHIVE_OK)
		return err_set(err, 0, "%s", archive_error_string(in));
	/* The ratio's denominator: the archive as stored (compressed). */
	if (stat(archive, &ast) == -1)
		return err_set(err, errno, "stat %s", archive);

	/* Paths are made absolute below (no chdir: other threads share the cwd), after our own
	 * checks for absolute and ".." names; SECURE_SYMLINKS still refuses writing through a
	 * symlink the archive planted (no EXTRACT_UNLINK: it would quietly replace that symlink
	 * by a directory instead of refusing). No name lookup: layer uids are numeric. */
	opts = ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT;
	if (flags & LAYER_OCI)
		opts |= ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
		        ARCHIVE_EXTRACT_XATTR;
	archive_write_disk_set_options(out, opts);

	for (;;) {
		int r = archive_read_next_header(in, &e);
		cleanup_free char *name = NULL;

		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return err_set(err, 0, "after %llu entries: %s",
			               (unsigned long long)stats->entries,
			               archive_error_string(in));
		name = xstrdup(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
		if (charge(e, lim, (uint64_t)ast.st_size, stats, err) == -1)
			return err_prefix(err, "at entry \"%s\"", name);
		if (unpack_entry(in, out, e, root, rootpath, flags, stats, err) == -1)
			return err_prefix(err, "entry \"%s\"", name);
	}
	/* The tar reader stops at the end-of-archive blocks; the diff_id covers the whole
	 * stream, padding included. */
	for (;;) {
		la_ssize_t n = hashed_read(in, src, &rest);
		if (n < 0)
			return err_set(err, 0, "%s", archive_error_string(in));
		if (n == 0)
			break;
	}
	if (EVP_DigestFinal_ex(src->h, h, &hlen) != 1 || hlen != 32)
		return err_set(err, 0, "sha256 of the layer failed");
	memcpy(stats->diff_id, "sha256:", 7);
	util_hex(h, hlen, stats->diff_id + 7);
	/* Directory modes and times are applied at close (after their children were written). */
	if (archive_write_close(out) < ARCHIVE_WARN)
		return err_set(err, 0, "%s", archive_error_string(out));
	return 0;
}
