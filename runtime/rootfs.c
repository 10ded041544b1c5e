#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "err.h"
#include "util.h"

/* Docker's masked and read-only /proc and /sys paths. */
static const char *const masked_paths[] = {
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
};
static const char *const readonly_paths[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
};
static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};

int
rootfs_prepare(const char *state_dir, struct shoal_err *err)
{
	/* upper becomes the container's "/" (its mode shows through the overlay): 0755, or only
	 * root could walk the tree. The state dir above stays 0700. */
	static const char *const sub[] = {"upper", "work", "rootfs"};
	static const mode_t mode[] = {0755, 0700, 0755};

	for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
		cleanup_free char *p = xasprintf("%s/%s", state_dir, sub[i]);
		if (mkdir(p, mode[i]) == -1 && errno != EEXIST)
			return err_set(err, errno, "mkdir %s", p);
	}
	return 0;
}

/* Length of the directory prefix all paths share ("/a/b/" of "/a/b/c" and "/a/b/d"). */
static size_t
common_dir_prefix(char *const *paths, size_t n)
{
	size_t len = strlen(paths[0]);

	for (size_t i = 1; i < n; i++) {
		size_t j = 0;
		while (j < len && paths[i][j] == paths[0][j])
			j++;
		len = j;
	}
	while (len > 0 && paths[0][len - 1] != '/')
		len--;
	return len;
}

static char *
overlay_options(char *const *layers, size_t nlayers, const char *upper, const char *work,
                size_t strip)
{
	size_t cap = 64 + strlen(upper) + strlen(work);
	char *o, *p;

	for (size_t i = 0; i < nlayers; i++)
		cap += strlen(layers[i]) + 1;
	o = p = xmalloc(cap);
	p += sprintf(p, "lowerdir=");
	for (size_t i = nlayers; i-- > 0;)
		p += sprintf(p, "%s%s", layers[i] + strip, i ? ":" : "");
	sprintf(p, ",upperdir=%s,workdir=%s", upper + strip, work + strip);
	return o;
}

int
rootfs_mount_overlay(char *const *layers, size_t nlayers, const char *upper, const char *work,
                     const char *target, struct shoal_err *err)
{
	cleanup_free char *opts = NULL;
	long page = sysconf(_SC_PAGESIZE);

	if (nlayers == 0)
		return err_set(err, 0, "image has no layers");
	for (size_t i = 0; i < nlayers; i++)
		if (strpbrk(layers[i], ":,") != NULL)
			return err_set(err, 0, "layer path %s holds ':' or ','", layers[i]);
	opts = overlay_options(layers, nlayers, upper, work, 0);
	/* The kernel takes one page of options: many layers with long paths do not fit. Then
	 * chdir to the directory they share and pass relative paths (containerd does the same). */
	if ((long)strlen(opts) >= page) {
		char **all = xcalloc(nlayers + 2, sizeof(char *));
		size_t strip;
		memcpy(all, layers, nlayers * sizeof(char *));
		all[nlayers] = (char *)upper;
		all[nlayers + 1] = (char *)work;
		strip = common_dir_prefix(all, nlayers + 2);
		free(all);
		cleanup_free char *dir = xmalloc(strip + 1);
		memcpy(dir, upper, strip);
		dir[strip] = '\0';
		if (strip == 0 || chdir(dir) == -1)
			return err_set(err, ENAMETOOLONG, "overlay options for %zu layers",
			               nlayers);
		free(opts);
		opts = overlay_options(layers, nlayers, upper, work, strip);
	}
	/* nodev: with CAP_MKNOD (Docker's default set) a container could make a disk's node.
	 * volatile (5.10+): no syncs. Without it, the unmount when the container exits syncs
	 * the whole upper filesystem (ovl_sync_fs), milliseconds on every exit; and an upper
	 * dir is worthless after a host crash anyway, as its container is gone. Retried without
	 * on older kernels. */
	cleanup_free char *vol = xasprintf("%s,volatile", opts);
	if (mount("overlay", target, "overlay", MS_NODEV, vol) == 0)
		return 0;
	if (errno == EINVAL && mount("overlay", target, "overlay", MS_NODEV, opts) == 0)
		return 0;
	return err_set(err, errno, "mount overlay on %s", target);
}

/*
 * Mount targets inside the container's root are opened with openat2(RESOLVE_IN_ROOT), and the
 * mount goes onto /proc/self/fd/N (crun and runc do the same): the image decides what its
 * paths are, symlinks included, and a symlink resolved from the host's side would put a mount
 * anywhere on the host (/proc -> /tmp/x gave a container without procfs nor masks). Inside the
 * root, a symlink is followed as the container would see it, never out of it.
 */
static int
open_in_root(int rootfd, const char *rel, int flags, struct shoal_err *err)
{
	struct open_how how = {
	    .flags = (uint64_t)(flags | O_CLOEXEC),
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));

	if (fd == -1)
		return err_set(err, errno, "open /%s in the container's root", rel);
	return fd;
}

/* "/proc/self/fd/N": the path mount(2) takes for an fd. */
static const char *
fd_path(int fd, char *buf, size_t len)
{
	snprintf(buf, len, "/proc/self/fd/%d", fd);
	return buf;
}

/* mount(2) with the target rel resolved in the root (see open_in_root). */
static int
mount_at(int rootfd, const char *rel, const char *src, const char *type, unsigned long flags,
         const char *data, struct shoal_err *err)
{
	cleanup_close int fd = open_in_root(rootfd, rel, O_PATH, err);
	char p[64];

	if (fd == -1)
		return -1;
	if (mount(src, fd_path(fd, p, sizeof(p)), type, flags, data) == -1)
		return err_set(err, errno, "mount %s on /%s", type ? type : src, rel);
	return 0;
}

/*
 * One of the runtime's own top-level mount points (proc, dev, sys): a real directory of the
 * root, whatever the image put there. A symlink or file is replaced (in the container's upper
 * dir only: the image is never written), as runc refuses to mount procfs anywhere but on a
 * plain directory; the container then finds procfs at /proc and not wherever /proc pointed.
 */
static int
top_dir(int rootfd, const char *name, mode_t mode, struct shoal_err *err)
{
	struct stat st;

	if (fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		if (unlinkat(rootfd, name, 0) == -1)
			return err_set(err, errno, "replace /%s (not a directory)", name);
	} else if (errno != ENOENT) {
		return err_set(err, errno, "stat /%s", name);
	}
	if (mkdirat(rootfd, name, mode) == -1 && errno != EEXIST)
		return err_set(err, errno, "mkdir /%s", name);
	return 0;
}

/* A directory in the fresh /dev tmpfs (nothing of the image is there). */
static int
dev_dir(int devfd, const char *name, mode_t mode, struct shoal_err *err)
{
	if (mkdirat(devfd, name, mode) == -1 && errno != EEXIST)
		return err_set(err, errno, "mkdir /dev/%s", name);
	return 0;
}

static int
bind_readonly(int rootfd, const char *rel, struct shoal_err *err)
{
	cleanup_close int fd = open_in_root(rootfd, rel, O_PATH, err);
	cleanup_close int top = -1;
	char p[64];

	if (fd == -1)
		return -1;
	fd_path(fd, p, sizeof(p));
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) == -1)
		return err_set(err, errno, "bind /%s", rel);
	/* fd still names the mount below the bind: reopen to reach the bind itself. */
	top = open_in_root(rootfd, rel, O_PATH, err);
	if (top == -1)
		return -1;
	if (mount(NULL, fd_path(top, p, sizeof(p)), NULL,
	          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
		return err_set(err, errno, "remount /%s read-only", rel);
	return 0;
}

static int
mount_dev(int rootfd, struct shoal_err *err)
{
	cleanup_close int devfd = -1;
	char rel[64], src[64], p[64];

	if (top_dir(rootfd, "dev", 0755, err) == -1)
		return -1;
	/* nodev: only the nodes bound from the host below (whose mounts keep the host's flags)
	 * can be opened; anything made with mknod cannot. */
	if (mount_at(rootfd, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
	             "mode=755,size=65536k", err) == -1)
		return -1;
	/* The fresh tmpfs, ours alone from here on. */
	devfd = open_in_root(rootfd, "dev", O_RDONLY | O_DIRECTORY, err);
	if (devfd == -1)
		return -1;
	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		int fd =
		    openat(devfd, devices[i], O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd == -1)
			return err_set(err, errno, "create /dev/%s", devices[i]);
		snprintf(src, sizeof(src), "/dev/%s", devices[i]);
		if (mount(src, fd_path(fd, p, sizeof(p)), NULL, MS_BIND, NULL) == -1) {
			close(fd);
			return err_set(err, errno, "bind %s", src);
		}
		close(fd);
	}
	if (dev_dir(devfd, "pts", 0755, err) == -1)
		return -1;
	if (mount_at(rootfd, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
	             "newinstance,ptmxmode=0666,mode=0620,gid=5", err) == -1)
		return -1;
	if (dev_dir(devfd, "shm", 01777, err) == -1)
		return -1;
	if (mount_at(rootfd, "dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
	             "mode=1777,size=65536k", err) == -1)
		return -1;
	static const char *const links[][2] = {
	    {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},
	    {"/proc/self/fd/0", "stdin"},  {"/proc/self/fd/1", "stdout"},
	    {"/proc/self/fd/2", "stderr"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		if (symlinkat(links[i][0], devfd, links[i][1]) == -1) {
			snprintf(rel, sizeof(rel), "/dev/%s", links[i][1]);
			return err_set(err, errno, "symlink %s", rel);
		}
	}
	return 0;
}

/* Does rel exist in the root (resolved as in the container)? What it is, in *st. */
static int
stat_in_root(int rootfd, const char *rel, struct stat *st)
{
	struct shoal_err ignored;
	cleanup_close int fd = open_in_root(rootfd, rel, O_PATH, &ignored);

	return fd != -1 && fstat(fd, st) == 0;
}

int
rootfs_setup_mounts(const char *target, struct shoal_err *err)
{
	cleanup_close int rootfd = open(target, O_PATH | O_DIRECTORY | O_CLOEXEC);
	struct stat st;

	if (rootfd == -1)
		return err_set(err, errno, "open %s", target);
	if (top_dir(rootfd, "proc", 0555, err) == -1)
		return -1;
	/* A fresh proc: the caller is PID 1 of its own namespace, so it shows only the container.
	 */
	if (mount_at(rootfd, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) ==
	    -1)
		return -1;
	if (mount_dev(rootfd, err) == -1)
		return -1;
	if (top_dir(rootfd, "sys", 0555, err) == -1)
		return -1;
	if (mount_at(rootfd, "sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
	             NULL, err) == -1)
		return -1;
	/* From here every path is inside the fresh proc and sys, but resolved in the root all the
	 * same: one rule for every mount. */
	for (size_t i = 0; i < ARRAY_SIZE(readonly_paths); i++) {
		const char *rel = readonly_paths[i] + 1;
		if (!stat_in_root(rootfd, rel, &st))
			continue;
		if (bind_readonly(rootfd, rel, err) == -1)
			return -1;
	}
	/* Files are masked by /dev/null (still the host's: we have not pivoted), dirs by an
	 * empty read-only tmpfs. */
	for (size_t i = 0; i < ARRAY_SIZE(masked_paths); i++) {
		const char *rel = masked_paths[i] + 1;
		if (!stat_in_root(rootfd, rel, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (mount_at(rootfd, rel, "tmpfs", "tmpfs",
			             MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0",
			             err) == -1)
				return err_prefix(err, "mask %s", masked_paths[i]);
		} else if (mount_at(rootfd, rel, "/dev/null", NULL, MS_BIND, NULL, err) == -1) {
			return err_prefix(err, "mask %s", masked_paths[i]);
		}
	}
	return 0;
}

int
rootfs_bind_etc_files(const char *target, const char *state_dir, struct shoal_err *err)
{
	static const char *const files[] = {"hosts", "hostname", "resolv.conf"};
	cleanup_close int rootfd = open(target, O_PATH | O_DIRECTORY | O_CLOEXEC);
	cleanup_close int etcfd = -1;
	struct stat st;
	char p[64];

	if (rootfd == -1)
		return err_set(err, errno, "open %s", target);
	/* /etc as the container resolves it (a symlink to /private/etc stays inside). */
	etcfd = open_in_root(rootfd, "etc", O_RDONLY | O_DIRECTORY, err);
	if (etcfd == -1) {
		if (err->code != ENOENT)
			return -1;
		if (mkdirat(rootfd, "etc", 0755) == -1 && errno != EEXIST)
			return err_set(err, errno, "mkdir /etc");
		etcfd = open_in_root(rootfd, "etc", O_RDONLY | O_DIRECTORY, err);
		if (etcfd == -1)
			return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		cleanup_free char *src = xasprintf("%s/%s", state_dir, files[i]);
		cleanup_close int fd = -1;
		bool have = false;

		if (access(src, F_OK) == -1)
			continue;
		if (fstatat(etcfd, files[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (S_ISDIR(st.st_mode))
				return err_set(err, 0, "/etc/%s is a directory in the image",
				               files[i]);
			/* Never follow the image's symlink: it could point anywhere in the root,
			 * and the mount would land there. */
			have = S_ISREG(st.st_mode);
			if (!have && unlinkat(etcfd, files[i], 0) == -1)
				return err_set(err, errno, "replace /etc/%s", files[i]);
		} else if (errno != ENOENT) {
			return err_set(err, errno, "stat /etc/%s", files[i]);
		}
		/* The image's own file is covered, not opened for writing (no copy-up). */
		if (!have) {
			fd = openat(etcfd, files[i],
			            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
			if (fd == -1)
				return err_set(err, errno, "create /etc/%s", files[i]);
			close(fd);
		}
		fd = openat(etcfd, files[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)
			return err_set(err, errno, "open /etc/%s", files[i]);
		if (mount(src, fd_path(fd, p, sizeof(p)), NULL, MS_BIND, NULL) == -1)
			return err_set(err, errno, "bind %s on /etc/%s", src, files[i]);
		/* Reopen to reach the bind itself (fd names what is below it). */
		close(fd);
		fd = openat(etcfd, files[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd == -1)
			return err_set(err, errno, "open /etc/%s", files[i]);
		if (mount(NULL, fd_path(fd, p, sizeof(p)), NULL,
		          MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
			return err_set(err, errno, "remount /etc/%s", files[i]);
	}
	return 0;
}

int
rootfs_pivot(const char *target, struct shoal_err *err)
{
	/* pivot_root(".", "."): the old root ends up stacked under the new one, then detached;
	 * no put_old directory is needed in the image (runc's trick). */
	if (chdir(target) == -1)
		return err_set(err, errno, "chdir %s", target);
	if (syscall(SYS_pivot_root, ".", ".") == -1)
		return err_set(err, errno, "pivot_root %s", target);
	if (umount2(".", MNT_DETACH) == -1)
		return err_set(err, errno, "detach old root");
	if (chdir("/") == -1)
		return err_set(err, errno, "chdir /");
	return 0;
}
