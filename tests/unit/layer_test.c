/*
 * Unit tests for runtime/layer: what overlayfs sees after an OCI layer is unpacked (whiteout
 * devices, opaque xattrs, owners, modes) and that hostile archives are refused without
 * touching anything outside the layer directory. Needs root (mknod, trusted.* xattrs, chown);
 * skipped otherwise.
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
#include <sys/xattr.h>
#include <unistd.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>

#include "fixture.h"
#include "err.h"
#include "runtime/layer.h"
#include "util.h"

/* One entry of a test archive. */
struct ent {
	const char *path;
	mode_t type; /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, AE_IFBLK; 0 = hardlink */
	const char *data_or_link;
	unsigned mode;
	int uid, gid;
	dev_t rdev;
	const char *xattr; /* "name=value" */
};

struct fixture {
	char top[FIXTURE_TOP]; /* temp dir holding everything the test makes */
	char archive[96];      /* top/layer.tar */
	char dest[96];         /* top/layer: where it unpacks */
	char outside[96];      /* top/outside: must stay empty */
};

/* Write entries as a tar (gz: 1 gzip, 2 zstd) with libarchive's writer. */
static void
write_tar(const char *path, const struct ent *e, size_t n, int gz)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();

	archive_write_set_format_pax_restricted(a);
	if (gz == 1)
		archive_write_add_filter_gzip(a);
	if (gz == 2 && archive_write_add_filter_zstd(a) != ARCHIVE_OK)
		skip(); /* libarchive built without zstd */
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;

		archive_entry_clear(ae);
		archive_entry_set_pathname(ae, e[i].path);
		archive_entry_set_uid(ae, e[i].uid);
		archive_entry_set_gid(ae, e[i].gid);
		archive_entry_set_mtime(ae, 1767225600, 0);
		if (e[i].type == 0) {
			archive_entry_set_filetype(ae, AE_IFREG);
			archive_entry_set_hardlink(ae, e[i].data_or_link);
			archive_entry_set_perm(ae, 0644);
		} else {
			archive_entry_set_filetype(ae, e[i].type);
			archive_entry_set_perm(
			    ae, e[i].mode ? e[i].mode : (e[i].type == AE_IFDIR ? 0755 : 0644));
		}
		if (e[i].type == AE_IFLNK)
			archive_entry_set_symlink(ae, e[i].data_or_link);
		if (e[i].type == AE_IFCHR || e[i].type == AE_IFBLK)
			archive_entry_set_rdev(ae, e[i].rdev);
		if (e[i].type == AE_IFREG && e[i].data_or_link)
			len = strlen(e[i].data_or_link);
		archive_entry_set_size(ae, (la_int64_t)len);
		if (e[i].xattr) {
			const char *eq = strchr(e[i].xattr, '=');
			char name[64];
			snprintf(name, sizeof(name), "%.*s", (int)(eq - e[i].xattr), e[i].xattr);
			archive_entry_xattr_add_entry(ae, name, eq + 1, strlen(eq + 1));
		}
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (len)
			assert_int_equal(archive_write_data(a, e[i].data_or_link, len),
			                 (ssize_t)len);
	}
	archive_entry_free(ae);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

static int
setup(void **state)
{
	struct fixture *f = fixture_new(sizeof(*f), "layer");

	if (f == NULL)
		return -1;
	snprintf(f->archive, sizeof(f->archive), "%s/layer.tar", f->top);
	snprintf(f->dest, sizeof(f->dest), "%s/layer", f->top);
	snprintf(f->outside, sizeof(f->outside), "%s/outside", f->top);
	mkdir(f->dest, 0755);
	mkdir(f->outside, 0755);
	*state = f;
	return 0;
}

static int
dir_is_empty(const char *path)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", path);
	return system(cmd) == 0;
}

static void
test_whiteouts(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"./", AE_IFDIR, NULL, 0755, 0, 0, 0, NULL},
	    {"etc/", AE_IFDIR, NULL, 0755, 0, 0, 0, NULL},
	    {"etc/.wh.passwd", AE_IFREG, NULL, 0, 0, 0, 0, NULL},
	    {"var/", AE_IFDIR, NULL, 0755, 0, 0, 0, NULL},
	    {"var/.wh..wh..opq", AE_IFREG, NULL, 0, 0, 0, 0, NULL},
	    {"var/new", AE_IFREG, "fresh\n", 0644, 0, 0, 0, NULL},
	    {"deep/dir/.wh.gone", AE_IFREG, NULL, 0, 0, 0, 0, NULL},
	    {".wh..wh.plnk", AE_IFDIR, NULL, 0700, 0, 0, 0, NULL},
	};
	struct layer_stats st;
	struct shoal_err err;
	struct stat sb;
	char path[256], val[8];
	ssize_t n;

	fixture_need_root();
	write_tar(f->archive, e, ARRAY_SIZE(e), 1);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, &st, &err), 0);

	snprintf(path, sizeof(path), "%s/etc/passwd", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISCHR(sb.st_mode));
	assert_int_equal(major(sb.st_rdev), 0);
	assert_int_equal(minor(sb.st_rdev), 0);
	snprintf(path, sizeof(path), "%s/etc/.wh.passwd", f->dest);
	assert_int_equal(lstat(path, &sb), -1);

	snprintf(path, sizeof(path), "%s/var", f->dest);
	n = getxattr(path, "trusted.overlay.opaque", val, sizeof(val));
	assert_int_equal(n, 1);
	assert_int_equal(val[0], 'y');
	snprintf(path, sizeof(path), "%s/var/.wh..wh..opq", f->dest);
	assert_int_equal(lstat(path, &sb), -1);
	snprintf(path, sizeof(path), "%s/var/new", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_size, 6);

	/* A whiteout whose parent no entry created still lands in the right place. */
	snprintf(path, sizeof(path), "%s/deep/dir/gone", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISCHR(sb.st_mode) && sb.st_rdev == 0);
	/* aufs bookkeeping is dropped. */
	snprintf(path, sizeof(path), "%s/.wh..wh.plnk", f->dest);
	assert_int_equal(lstat(path, &sb), -1);
}

static void
test_owners_modes_links(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"bin/", AE_IFDIR, NULL, 0755, 0, 0, 0, NULL},
	    {"bin/tool", AE_IFREG, "#!/bin/sh\n", 04755, 1234, 5678, 0, "user.note=kept"},
	    {"bin/sh", AE_IFLNK, "/bin/busybox", 0777, 0, 0, 0, NULL}, /* absolute: fine */
	    {"bin/up", AE_IFLNK, "../../../../etc", 0777, 0, 0, 0, NULL},
	    {"bin/tool2", 0, "bin/tool", 0, 0, 0, 0, NULL},
	    {"tmp/", AE_IFDIR, NULL, 01777, 0, 0, 0, NULL},
	    {"etc/x", AE_IFREG, "x", 0600, 0, 0, 0, "trusted.overlay.redirect=/etc"},
	};
	struct shoal_err err;
	struct stat sb, sb2;
	char path[256], link[64], val[16];
	ssize_t n;

	fixture_need_root();
	write_tar(f->archive, e, ARRAY_SIZE(e), 0);
	if (layer_unpack(f->archive, f->dest, LAYER_OCI, NULL, &err) != 0)
		fail_msg("%s", err.msg);
	snprintf(path, sizeof(path), "%s/bin/tool", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 1234);
	assert_int_equal(sb.st_gid, 5678);
	assert_int_equal(sb.st_mode & 07777, 04755);
	n = getxattr(path, "user.note", val, sizeof(val));
	assert_int_equal(n, 4);
	snprintf(path, sizeof(path), "%s/bin/tool2", f->dest);
	assert_int_equal(lstat(path, &sb2), 0);
	assert_int_equal(sb.st_ino, sb2.st_ino);
	snprintf(path, sizeof(path), "%s/bin/sh", f->dest);
	n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = '\0';
	assert_string_equal(link, "/bin/busybox");
	snprintf(path, sizeof(path), "%s/tmp", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 01777);
	/* An image must not forge overlayfs metadata by xattr. */
	snprintf(path, sizeof(path), "%s/etc/x", f->dest);
	assert_int_equal(getxattr(path, "trusted.overlay.redirect", val, sizeof(val)), -1);
}

/* Unpack e and expect a refusal whose message names the entry; nothing may leak outside. */
static void
expect_refused(struct fixture *f, const struct ent *e, size_t n, const char *entry, const char *why)
{
	struct shoal_err err = {0};

	write_tar(f->archive, e, n, 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, NULL, &err), -1);
	if (strstr(err.msg, entry) == NULL || strstr(err.msg, why) == NULL)
		fail_msg("message \"%s\" lacks \"%s\" or \"%s\"", err.msg, entry, why);
	assert_true(dir_is_empty(f->outside));
}

static void
test_refuse_dotdot(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {{"a/../../outside/evil", AE_IFREG, "x", 0644, 0, 0, 0, NULL}};

	fixture_need_root();
	expect_refused(f, e, 1, "a/../../outside/evil", "\"..\" refused");
}

static void
test_refuse_absolute(void **state)
{
	struct fixture *f = *state;
	char abs[160];
	struct ent e[] = {{abs, AE_IFREG, "x", 0644, 0, 0, 0, NULL}};

	fixture_need_root();
	snprintf(abs, sizeof(abs), "%s/evil", f->outside);
	expect_refused(f, e, 1, abs, "absolute path refused");
}

static void
test_refuse_hardlink_escape(void **state)
{
	struct fixture *f = *state;
	char target[160];
	const struct ent dotdot[] = {{"h", 0, "../outside/x", 0, 0, 0, 0, NULL}};
	const struct ent via_symlink[] = {
	    {"s", AE_IFLNK, f->outside, 0777, 0, 0, 0, NULL},
	    {"h", 0, "s/secret", 0, 0, 0, 0, NULL},
	};
	struct shoal_err err;

	fixture_need_root();
	/* A file outside that a hardlink through a symlink would pin into the layer. */
	snprintf(target, sizeof(target), "%s/secret", f->outside);
	expect_refused(f, dotdot, 1, "\"h\"", "hardlink target");
	assert_int_equal(layer_remove_tree(f->dest, &err), 0);
	assert_int_equal(mkdir(f->dest, 0755), 0);
	{
		int fd = open(target, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	write_tar(f->archive, via_symlink, 2, 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "\"h\""));
	assert_non_null(strstr(err.msg, "symlink"));
	{
		struct stat sb;
		assert_int_equal(stat(target, &sb), 0);
		assert_int_equal(sb.st_nlink, 1); /* not linked into the layer */
	}
	unlink(target);
}

static void
test_refuse_write_through_symlink(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"s", AE_IFLNK, f->outside, 0777, 0, 0, 0, NULL},
	    {"s/evil", AE_IFREG, "x", 0644, 0, 0, 0, NULL},
	};

	fixture_need_root();
	expect_refused(f, e, 2, "s/evil", "symlink");
}

static void
test_refuse_whiteout_through_symlink(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"s", AE_IFLNK, f->outside, 0777, 0, 0, 0, NULL},
	    {"s/.wh.x", AE_IFREG, NULL, 0, 0, 0, 0, NULL},
	};

	fixture_need_root();
	expect_refused(f, e, 2, "s/.wh.x", "symlink");
}

static void
test_refuse_devices(void **state)
{
	struct fixture *f = *state;
	const struct ent chr[] = {{"dev/null", AE_IFCHR, NULL, 0666, 0, 0, makedev(1, 3), NULL}};
	const struct ent blk[] = {{"dev/sda", AE_IFBLK, NULL, 0660, 0, 0, makedev(8, 0), NULL}};
	/* overlay-format whiteouts (docker export of an overlay upper dir) are fine */
	const struct ent wh[] = {{"gone", AE_IFCHR, NULL, 0, 0, 0, makedev(0, 0), NULL}};
	struct shoal_err err;
	struct stat sb;
	char path[256];

	fixture_need_root();
	expect_refused(f, chr, 1, "dev/null", "device node refused (char 1:3)");
	expect_refused(f, blk, 1, "dev/sda", "device node refused (block 8:0)");
	snprintf(path, sizeof(path), "%s/dev/null", f->dest);
	assert_int_equal(lstat(path, &sb), -1);
	write_tar(f->archive, wh, 1, 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, NULL, &err), 0);
	snprintf(path, sizeof(path), "%s/gone", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_true(S_ISCHR(sb.st_mode) && sb.st_rdev == 0);
}

static void
test_truncated(void **state)
{
	struct fixture *f = *state;
	char big[4096];
	const struct ent e[] = {{"big", AE_IFREG, big, 0644, 0, 0, 0, NULL}};
	struct shoal_err err;

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_tar(f->archive, e, 1, 0);
	assert_int_equal(truncate(f->archive, 1024), 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, 0, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "runcated"));
}

static void
test_plain_archive_refuses_devices_and_owners(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"index.json", AE_IFREG, "{}", 0644, 4321, 4321, 0, NULL},
	    {".wh.x", AE_IFREG, "kept: no whiteouts in a transport archive", 0644, 0, 0, 0, NULL},
	};
	const struct ent fifo[] = {{"p", AE_IFIFO, NULL, 0644, 0, 0, 0, NULL}};
	struct shoal_err err;
	struct stat sb;
	char path[256];

	write_tar(f->archive, e, 2, 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, 0, NULL, &err), 0);
	snprintf(path, sizeof(path), "%s/index.json", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	assert_int_equal(sb.st_uid, geteuid());
	snprintf(path, sizeof(path), "%s/.wh.x", f->dest);
	assert_int_equal(lstat(path, &sb), 0);
	write_tar(f->archive, fifo, 1, 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, 0, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "fifo refused"));
}

static void
test_zstd(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {{"etc/motd", AE_IFREG, "zstd layer\n", 0644, 0, 0, 0, NULL}};
	struct shoal_err err;
	struct layer_stats st;
	char path[256];
	struct stat sb;

	write_tar(f->archive, e, 1, 2);
	if (layer_unpack(f->archive, f->dest, 0, &st, &err) != 0)
		fail_msg("%s", err.msg);
	assert_int_equal(st.bytes, 11);
	snprintf(path, sizeof(path), "%s/etc/motd", f->dest);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, 11);
}

static void
test_size_and_remove(void **state)
{
	struct fixture *f = *state;
	const struct ent e[] = {
	    {"a/b/c", AE_IFREG, "12345", 0644, 0, 0, 0, NULL},
	    {"a/d", AE_IFREG, "123", 0000, 0, 0, 0, NULL},
	    {"a/l", AE_IFLNK, "/", 0777, 0, 0, 0, NULL},
	    {"ro/", AE_IFDIR, NULL, 0500, 0, 0, 0, NULL},
	};
	struct shoal_err err;
	uint64_t bytes;
	struct stat sb;

	fixture_need_root();
	write_tar(f->archive, e, ARRAY_SIZE(e), 0);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, NULL, &err), 0);
	assert_int_equal(layer_size(f->dest, &bytes, &err), 0);
	assert_int_equal(bytes, 8);
	assert_int_equal(layer_remove_tree(f->dest, &err), 0);
	assert_int_equal(lstat(f->dest, &sb), -1);
	assert_int_equal(layer_remove_tree(f->dest, &err), 0); /* already gone: fine */
	assert_int_equal(mkdir(f->dest, 0755), 0);
}

/* A gzip tar holding one file of mib MiB of zeros: about 1 KiB of archive per MiB. */
static void
write_zero_bomb(const char *path, size_t mib)
{
	struct archive *a = archive_write_new();
	struct archive_entry *ae = archive_entry_new();
	static char zeros[1 << 20];

	archive_write_set_format_pax_restricted(a);
	archive_write_add_filter_gzip(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	archive_entry_set_pathname(ae, "zeros");
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_size(ae, (la_int64_t)mib << 20);
	assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
	for (size_t i = 0; i < mib; i++)
		assert_int_equal(archive_write_data(a, zeros, sizeof(zeros)),
		                 (ssize_t)sizeof(zeros));
	archive_entry_free(ae);
	assert_int_equal(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
}

/* The case: ~200 KiB of gzip that unpacks to 200 MiB. Refused under the default
 * limits before a byte of the file is written. */
static void
test_refuse_decompression_bomb(void **state)
{
	struct fixture *f = *state;
	struct shoal_err err;
	struct layer_stats st;
	uint64_t bytes = 1;
	struct stat sb;

	fixture_need_root();
	write_zero_bomb(f->archive, 200);
	assert_int_equal(stat(f->archive, &sb), 0);
	assert_true(sb.st_size < 512 * 1024);
	assert_int_equal(layer_unpack(f->archive, f->dest, LAYER_OCI, &st, &err), -1);
	assert_int_equal(err.code, EFBIG);
	if (strstr(err.msg, "at entry \"zeros\": expands more than 100 times") == NULL ||
	    strstr(err.msg, "refused as a decompression bomb") == NULL)
		fail_msg("message: %s", err.msg);
	assert_int_equal(layer_size(f->dest, &bytes, &err), 0);
	assert_int_equal(bytes, 0);

	/* The same archive within limits that allow it unpacks (the check is the only cause). */
	const struct layer_limits lax = {0, 0, 0};
	assert_int_equal(layer_unpack_limited(f->archive, f->dest, LAYER_OCI, &lax, &st, &err), 0);
	assert_int_equal(layer_size(f->dest, &bytes, &err), 0);
	assert_int_equal(bytes, 200 << 20);
}

/* max_bytes: a cap on what the archive unpacks to, file data and entries alike. */
static void
test_max_bytes(void **state)
{
	struct fixture *f = *state;
	static char big[4097];
	const struct ent e[] = {
	    {"small", AE_IFREG, "12345", 0644, 0, 0, 0, NULL},
	    {"big", AE_IFREG, big, 0644, 0, 0, 0, NULL},
	};
	struct layer_limits lim = {4096, 0, 0};
	struct shoal_err err;
	struct stat sb;
	char path[256];

	fixture_need_root();
	memset(big, 'x', sizeof(big) - 1);
	write_tar(f->archive, e, ARRAY_SIZE(e), 0);
	assert_int_equal(layer_unpack_limited(f->archive, f->dest, LAYER_OCI, &lim, NULL, &err),
	                 -1);
	assert_int_equal(err.code, EFBIG);
	assert_string_equal(err.msg, "at entry \"big\": unpacks to more than the limit of 4Ki");
	snprintf(path, sizeof(path), "%s/big", f->dest);
	assert_int_equal(lstat(path, &sb), -1);

	/* Entries cost LAYER_ENTRY_COST each, so a flood of empty files is bounded too. */
	struct ent many[20];
	char names[20][16];
	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof(names[i]), "e%d", i);
		many[i] = (struct ent){names[i], AE_IFREG, NULL, 0644, 0, 0, 0, NULL};
	}
	assert_int_equal(layer_remove_tree(f->dest, &err), 0);
	assert_int_equal(mkdir(f->dest, 0755), 0);
	write_tar(f->archive, many, 20, 0);
	lim.max_bytes = 10 * LAYER_ENTRY_COST;
	assert_int_equal(layer_unpack_limited(f->archive, f->dest, LAYER_OCI, &lim, NULL, &err),
	                 -1);
	assert_string_equal(err.msg, "at entry \"e10\": unpacks to more than the limit of 5Ki");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_whiteouts, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_owners_modes_links, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_dotdot, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_absolute, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_hardlink_escape, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_write_through_symlink, setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_whiteout_through_symlink, setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_devices, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_truncated, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_plain_archive_refuses_devices_and_owners, setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_zstd, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_size_and_remove, setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_refuse_decompression_bomb, setup,
	                                    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_max_bytes, setup, fixture_teardown),
	};
	return cmocka_run_group_tests_name("layer", tests, NULL, NULL);
}
