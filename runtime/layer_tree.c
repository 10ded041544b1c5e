/*
 * The tree half of layer.h: removing and measuring unpacked directories. Apart from layer.c,
 * which unpacks archives, so that programs that only remove layers (shoalrt's rmi and prune)
 * link neither libarchive nor libcrypto: shoalrt is linked statically for its start time.
 */
#include "layer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

static void
closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
	*d = NULL;
}

#define cleanup_dir __attribute__((cleanup(closedirp)))

int
layer_remove_at(int parent, const char *name, struct shoal_err *err)
{
	struct stat st;

	if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			return 0;
		return err_set(err, errno, "stat %s", name);
	}
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		cleanup_dir DIR *d = NULL;
		struct dirent *de;
		struct stat sub;

		if (fd == -1)
			return err_set(err, errno, "open %s", name);
		/* A mount point under a layer is not ours to empty (a bind mount of the host). */
		if (fstat(fd, &sub) == -1 || sub.st_dev != st.st_dev) {
			close(fd);
			return err_set(err, EBUSY, "remove %s", name);
		}
		d = fdopendir(fd);
		if (d == NULL) {
			close(fd);
			return err_set(err, errno, "open %s", name);
		}
		while ((errno = 0, de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (layer_remove_at(dirfd(d), de->d_name, err) == -1)
				return err_prefix(err, "%s", name);
		}
		if (errno != 0)
			return err_set(err, errno, "read directory %s", name);
		if (unlinkat(parent, name, AT_REMOVEDIR) == -1)
			return err_set(err, errno, "rmdir %s", name);
		return 0;
	}
	if (unlinkat(parent, name, 0) == -1 && errno != ENOENT)
		return err_set(err, errno, "unlink %s", name);
	return 0;
}

int
layer_remove_tree(const char *path, struct shoal_err *err)
{
	cleanup_free char *copy = xstrdup(path);
	char *slash = strrchr(copy, '/');
	cleanup_close int dirfd = -1;
	const char *name;

	if (slash == NULL) {
		dirfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		name = copy;
	} else {
		*slash = '\0';
		dirfd = open(slash == copy ? "/" : copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		name = slash + 1;
	}
	if (dirfd == -1)
		return errno == ENOENT ? 0 : err_set(err, errno, "open parent of %s", path);
	if (layer_remove_at(dirfd, name, err) == -1)
		return err_prefix(err, "remove %s", path);
	return 0;
}

static int
size_at(int fd, uint64_t *bytes, struct shoal_err *err)
{
	cleanup_dir DIR *d = fdopendir(fd);
	struct dirent *de;

	if (d == NULL) {
		close(fd);
		return err_set(err, errno, "opendir");
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return err_set(err, errno, "stat %s", de->d_name);
		if (S_ISREG(st.st_mode)) {
			*bytes += (uint64_t)st.st_size;
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), de->d_name,
			                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub == -1)
				return err_set(err, errno, "open %s", de->d_name);
			if (size_at(sub, bytes, err) == -1)
				return err_prefix(err, "%s", de->d_name);
		}
	}
	if (errno != 0)
		return err_set(err, errno, "readdir");
	return 0;
}

int
layer_size(const char *dir, uint64_t *bytes, struct shoal_err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*bytes = 0;
	if (fd == -1)
		return err_set(err, errno, "open %s", dir);
	if (size_at(fd, bytes, err) == -1)
		return err_prefix(err, "%s", dir);
	return 0;
}
