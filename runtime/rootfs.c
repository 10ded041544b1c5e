#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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

/* mkdir that tolerates an existing entry (the image may ship /proc, /dev, /sys). */
static int
ensure_dir(const char *p, mode_t mode, struct shoal_err *err)
{
	if (mkdir(p, mode) == -1 && errno != EEXIST)
		return err_set(err, errno, "mkdir %s", p);
	return 0;
}

static int
ensure_file(const char *p, struct shoal_err *err)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);

	if (fd == -1)
		return err_set(err, errno, "create %s", p);
	close(fd);
	return 0;
}

static int
bind_readonly(const char *p, struct shoal_err *err)
{
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) == -1)
		return err_set(err, errno, "bind %s", p);
	if (mount(NULL, p, NULL,
	          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
		return err_set(err, errno, "remount %s read-only", p);
	return 0;
}

static int
mount_dev(const char *target, struct shoal_err *err)
{
	cleanup_free char *dev = xasprintf("%s/dev", target);
	char p[PATH_MAX], src[64];

	if (ensure_dir(dev, 0755, err) == -1)
		return -1;
	/* nodev: only the nodes bound from the host below (whose mounts keep the host's flags)
	 * can be opened; anything made with mknod cannot. */
	if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
	          "mode=755,size=65536k") == -1)
		return err_set(err, errno, "mount tmpfs on %s", dev);
	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		snprintf(p, sizeof(p), "%s/%s", dev, devices[i]);
		snprintf(src, sizeof(src), "/dev/%s", devices[i]);
		if (ensure_file(p, err) == -1)
			return -1;
		if (mount(src, p, NULL, MS_BIND, NULL) == -1)
			return err_set(err, errno, "bind %s", src);
	}
	snprintf(p, sizeof(p), "%s/pts", dev);
	if (ensure_dir(p, 0755, err) == -1)
		return -1;
	if (mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC,
	          "newinstance,ptmxmode=0666,mode=0620,gid=5") == -1)
		return err_set(err, errno, "mount devpts on %s", p);
	snprintf(p, sizeof(p), "%s/shm", dev);
	if (ensure_dir(p, 01777, err) == -1)
		return -1;
	if (mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") ==
	    -1)
		return err_set(err, errno, "mount tmpfs on %s", p);
	static const char *const links[][2] = {
	    {"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},
	    {"/proc/self/fd/0", "stdin"},  {"/proc/self/fd/1", "stdout"},
	    {"/proc/self/fd/2", "stderr"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
		snprintf(p, sizeof(p), "%s/%s", dev, links[i][1]);
		if (symlink(links[i][0], p) == -1)
			return err_set(err, errno, "symlink %s", p);
	}
	return 0;
}

int
rootfs_setup_mounts(const char *target, struct shoal_err *err)
{
	cleanup_free char *proc = xasprintf("%s/proc", target);
	cleanup_free char *sys = xasprintf("%s/sys", target);
	char p[PATH_MAX];
	struct stat st;

	if (ensure_dir(proc, 0555, err) == -1)
		return -1;
	/* A fresh proc: the caller is PID 1 of its own namespace, so it shows only the container.
	 */
	if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
		return err_set(err, errno, "mount proc on %s", proc);
	if (mount_dev(target, err) == -1)
		return -1;
	if (ensure_dir(sys, 0555, err) == -1)
		return -1;
	if (mount("sysfs", sys, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) == -1)
		return err_set(err, errno, "mount sysfs on %s", sys);
	for (size_t i = 0; i < ARRAY_SIZE(readonly_paths); i++) {
		snprintf(p, sizeof(p), "%s%s", target, readonly_paths[i]);
		if (lstat(p, &st) == -1)
			continue;
		if (bind_readonly(p, err) == -1)
			return -1;
	}
	/* Files are masked by /dev/null (still the host's: we have not pivoted), dirs by an
	 * empty read-only tmpfs. */
	for (size_t i = 0; i < ARRAY_SIZE(masked_paths); i++) {
		snprintf(p, sizeof(p), "%s%s", target, masked_paths[i]);
		if (lstat(p, &st) == -1)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			          "size=0") == -1)
				return err_set(err, errno, "mask %s", masked_paths[i]);
		} else if (mount("/dev/null", p, NULL, MS_BIND, NULL) == -1) {
			return err_set(err, errno, "mask %s", masked_paths[i]);
		}
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
