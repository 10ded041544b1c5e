#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

#define CGROUP_FSROOT "/sys/fs/cgroup"

/* The v1 hierarchies a container joins: those a limit lives in, plus cpuacct for accounting. */
static const char *const v1_controllers[] = {"cpu", "cpuacct", "memory", "pids"};

/* Write one value to dir/file. O_CREAT lets the writer run against a fake cgroupfs (a plain
 * directory) in unit tests; on a real cgroupfs every file we write already exists. */
static int
write_value(const char *dir, const char *file, const char *value, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/%s", dir, file);
	cleanup_close int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t n = strlen(value);

	if (fd == -1)
		return err_set(err, errno, "open %s", p);
	if (write(fd, value, n) != (ssize_t)n)
		return err_set(err, errno, "write %s to %s", value, p);
	return 0;
}

/* Open the file through which the container's child joins the cgroup by writing "0" (itself).
 * v2 has only cgroup.procs. v1 uses "tasks": writing "0" there moves the calling thread alone,
 * and since Linux 6.0 (cgroup_procs_write_start) the kernel then skips the global
 * cgroup_threadgroup_rwsem; a write to cgroup.procs takes it for writing, which waits for an
 * RCU grace period: 8-40 ms per container start measured on this host (crun pays it too), vs
 * ~0.05 ms through tasks. The child is single-threaded (a clone of the single-threaded shim),
 * so moving its thread moves the whole process. */
static int
open_procs(struct cgroup *cg, const char *dir, const char *file, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/%s", dir, file);
	int fd;

	SHOAL_ASSERT(cg->nprocs < CGROUP_MAX_FDS);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1)
		return err_set(err, errno, "open %s", p);
	cg->procs_fd[cg->nprocs++] = fd;
	return 0;
}

/*
 * The pids.max to write: the spec's, else the default. A default is best effort where the pids
 * controller is missing (a host without it runs containers as before); a limit the spec asked
 * for is not.
 */
static int64_t
pids_limit(const struct cgroup_limits *l, bool *required)
{
	*required = l->pids > 0;
	return l->pids > 0 ? l->pids : CGROUP_DEFAULT_PIDS;
}

int64_t
cgroup_host_pids_cap(void)
{
	static const char *const files[] = {"/proc/sys/kernel/pid_max",
	                                    "/proc/sys/kernel/threads-max"};
	int64_t min = 0;

	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		cleanup_free char *data = util_read_file(files[i], NULL, NULL);
		int64_t v = data ? strtoll(data, NULL, 10) : 0;
		if (v > 0 && (min == 0 || v < min))
			min = v;
	}
	return min > 0 ? min / 4 * 3 : 0;
}

/*
 * Cap the parent of leaf_dir (".../shoal", every container's) at cgroup_host_pids_cap(): the
 * per-container default stops one fork bomb, this stops eight at once on a host whose pid_max
 * is 32768. Rewritten at every create (one small write), so a changed pid_max or a parent made
 * by an older version is caught up. Best effort: the leaf's own limit stands without it.
 */
static void
cap_parent_pids(const char *leaf_dir)
{
	cleanup_free char *parent = xstrdup(leaf_dir);
	char *slash = strrchr(parent, '/');
	int64_t cap = cgroup_host_pids_cap();
	struct shoal_err ignored;
	char buf[32];

	if (slash == NULL || cap <= 0)
		return;
	*slash = '\0';
	snprintf(buf, sizeof(buf), "%" PRId64, cap);
	(void)write_value(parent, "pids.max", buf, &ignored);
}

static int
is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* rmdir, retrying for up to a second on EBUSY: the kernel may still be tearing down the last
 * tasks of a pid namespace whose init we just reaped. */
static int
rmdir_retry(const char *p, struct shoal_err *err)
{
	for (int i = 0; i < 200; i++) {
		if (rmdir(p) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			break;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return err_set(err, errno, "rmdir %s", p);
}

/* ---- v1 ---- */

static int
v1_create(struct cgroup *cg, const struct cgroup_limits *l, struct shoal_err *err)
{
	char buf[32];
	bool pids_required;
	int64_t pids = pids_limit(l, &pids_required);

	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		const char *c = v1_controllers[i];
		cleanup_free char *mnt = xasprintf("%s/%s", cg->fsroot, c);
		cleanup_free char *dir = xasprintf("%s/%s", mnt, cg->path);

		/* A controller that is not mounted cannot be joined; fail only if a limit needs it.
		 */
		if (!is_dir(mnt)) {
			if ((strcmp(c, "cpu") == 0 && l->cpu_quota_us > 0) ||
			    (strcmp(c, "memory") == 0 && l->memory_bytes > 0) ||
			    (strcmp(c, "pids") == 0 && pids_required))
				return err_set(err, ENOENT, "cgroup v1 controller %s", c);
			continue;
		}
		if (util_mkdir_p(dir, 0755, err) == -1)
			return -1;
		if (strcmp(c, "cpu") == 0 && l->cpu_quota_us > 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, l->cpu_period_us);
			if (write_value(dir, "cpu.cfs_period_us", buf, err) == -1)
				return -1;
			snprintf(buf, sizeof(buf), "%" PRId64, l->cpu_quota_us);
			if (write_value(dir, "cpu.cfs_quota_us", buf, err) == -1)
				return -1;
		}
		if (strcmp(c, "memory") == 0 && l->memory_bytes > 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, l->memory_bytes);
			if (write_value(dir, "memory.limit_in_bytes", buf, err) == -1)
				return -1;
			/* memory+swap equal to memory: no swap, so the limit means an OOM kill. The
			 * file exists only with swap accounting; without it there is nothing to do.
			 */
			cleanup_free char *memsw = xasprintf("%s/memory.memsw.limit_in_bytes", dir);
			if (access(memsw, F_OK) == 0 &&
			    write_value(dir, "memory.memsw.limit_in_bytes", buf, err) == -1)
				return -1;
		}
		if (strcmp(c, "pids") == 0) {
			snprintf(buf, sizeof(buf), "%" PRId64, pids);
			if (write_value(dir, "pids.max", buf, err) == -1)
				return -1;
			if (strchr(cg->path, '/') != NULL)
				cap_parent_pids(dir);
		}
		if (open_procs(cg, dir, "tasks", err) == -1)
			return -1;
	}
	return 0;
}

/* Find "key N" in a flat-keyed cgroup file (memory.oom_control, memory.events). */
static int
read_key(const char *path, const char *key, int64_t *v, struct shoal_err *err)
{
	cleanup_free char *data = util_read_file(path, NULL, err);
	size_t kl = strlen(key);

	if (data == NULL)
		return -1;
	*v = 0;
	for (char *line = data; line && *line;
	     line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
			*v = strtoll(line + kl + 1, NULL, 10);
			return 0;
		}
	}
	return 0;
}

static int
v1_oom_killed(struct cgroup *cg, bool *killed, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/memory/%s/memory.oom_control", cg->fsroot, cg->path);
	int64_t n;

	*killed = false;
	if (read_key(p, "oom_kill", &n, err) == -1)
		return -1;
	*killed = n > 0;
	return 0;
}

static int
v1_destroy(struct cgroup *cg, struct shoal_err *err)
{
	int rc = 0;

	for (size_t i = 0; i < ARRAY_SIZE(v1_controllers); i++) {
		cleanup_free char *dir =
		    xasprintf("%s/%s/%s", cg->fsroot, v1_controllers[i], cg->path);
		if (rmdir_retry(dir, err) == -1)
			rc = -1;
	}
	return rc;
}

const struct cgroup_ops cgroup_ops_v1 = {"v1", v1_create, v1_oom_killed, v1_destroy};

/* ---- v2 ---- */

/* Enable the controllers for children at every level from the root down to the parent of our
 * cgroup: a v2 controller is only available where the parent's subtree_control lists it. */
static int
v2_enable_controllers(struct cgroup *cg, struct shoal_err *err)
{
	cleanup_free char *rel = xstrdup(cg->path);
	cleanup_free char *dir = xstrdup(cg->fsroot);
	char *save = NULL;
	char *comp = strtok_r(rel, "/", &save);

	while (comp) {
		char *next = strtok_r(NULL, "/", &save);
		if (write_value(dir, "cgroup.subtree_control", "+cpu +memory +pids", err) == -1)
			return -1;
		char *sub = xasprintf("%s/%s", dir, comp);
		free(dir);
		dir = sub;
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			return err_set(err, errno, "mkdir %s", dir);
		comp = next;
	}
	return 0;
}

static int
v2_create(struct cgroup *cg, const struct cgroup_limits *l, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/%s", cg->fsroot, cg->path);
	char buf[64];
	bool pids_required;
	int64_t pids = pids_limit(l, &pids_required);

	if (v2_enable_controllers(cg, err) == -1)
		return -1;
	if (l->cpu_quota_us > 0) {
		snprintf(buf, sizeof(buf), "%" PRId64 " %" PRId64, l->cpu_quota_us,
		         l->cpu_period_us);
		if (write_value(dir, "cpu.max", buf, err) == -1)
			return -1;
	}
	if (l->memory_bytes > 0) {
		snprintf(buf, sizeof(buf), "%" PRId64, l->memory_bytes);
		if (write_value(dir, "memory.max", buf, err) == -1)
			return -1;
		/* memory.swap.max exists only with swap enabled; without swap there is none to cap.
		 */
		struct shoal_err ignored;
		(void)write_value(dir, "memory.swap.max", "0", &ignored);
	}
	if (strchr(cg->path, '/') != NULL)
		cap_parent_pids(dir);
	snprintf(buf, sizeof(buf), "%" PRId64, pids);
	if (pids_required) {
		if (write_value(dir, "pids.max", buf, err) == -1)
			return -1;
	} else {
		struct shoal_err ignored;
		(void)write_value(dir, "pids.max", buf, &ignored);
	}
	return open_procs(cg, dir, "cgroup.procs", err);
}

static int
v2_oom_killed(struct cgroup *cg, bool *killed, struct shoal_err *err)
{
	cleanup_free char *p = xasprintf("%s/%s/memory.events", cg->fsroot, cg->path);
	int64_t n;

	*killed = false;
	if (read_key(p, "oom_kill", &n, err) == -1)
		return -1;
	*killed = n > 0;
	return 0;
}

static int
v2_destroy(struct cgroup *cg, struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/%s", cg->fsroot, cg->path);
	cleanup_free char *kill = xasprintf("%s/cgroup.kill", dir);
	int fd = open(kill, O_WRONLY | O_CLOEXEC);

	/* Anything left (a container whose init died without its pid namespace) goes now. */
	if (fd != -1) {
		(void)!write(fd, "1", 1);
		close(fd);
	}
	return rmdir_retry(dir, err);
}

const struct cgroup_ops cgroup_ops_v2 = {"v2", v2_create, v2_oom_killed, v2_destroy};

/* ---- common ---- */

const struct cgroup_ops *
cgroup_detect(const char *fsroot)
{
	cleanup_free char *p = xasprintf("%s/cgroup.controllers", fsroot ? fsroot : CGROUP_FSROOT);
	cleanup_free char *data = util_read_file(p, NULL, NULL);

	/* The unified hierarchy must be mounted at the root AND carry the controllers we limit;
	 * a hybrid host's /sys/fs/cgroup/unified (hugetlb only) does not qualify. */
	char *save = NULL;

	if (data != NULL) {
		for (char *tok = strtok_r(data, " \n", &save); tok;
		     tok = strtok_r(NULL, " \n", &save))
			if (strcmp(tok, "cpu") == 0 || strcmp(tok, "memory") == 0 ||
			    strcmp(tok, "pids") == 0)
				return &cgroup_ops_v2;
	}
	return &cgroup_ops_v1;
}

struct cgroup *
cgroup_new(const char *fsroot, const char *path, const struct cgroup_ops *ops)
{
	struct cgroup *cg = xcalloc(1, sizeof(*cg));

	cg->fsroot = xstrdup(fsroot ? fsroot : CGROUP_FSROOT);
	cg->path = xstrdup(path);
	cg->ops = ops ? ops : cgroup_detect(cg->fsroot);
	for (int i = 0; i < CGROUP_MAX_FDS; i++)
		cg->procs_fd[i] = -1;
	return cg;
}

void
cgroup_close_fds(struct cgroup *cg)
{
	for (int i = 0; i < cg->nprocs; i++)
		util_closep(&cg->procs_fd[i]);
	cg->nprocs = 0;
}

void
cgroup_free(struct cgroup *cg)
{
	if (cg == NULL)
		return;
	cgroup_close_fds(cg);
	free(cg->fsroot);
	free(cg->path);
	free(cg);
}

int
cgroup_create(struct cgroup *cg, const struct cgroup_limits *l, struct shoal_err *err)
{
	if (cg->ops->create(cg, l, err) == -1)
		return err_prefix(err, "cgroup %s (%s)", cg->path, cg->ops->name);
	return 0;
}

int
cgroup_enter_self(struct cgroup *cg, struct shoal_err *err)
{
	for (int i = 0; i < cg->nprocs; i++)
		if (write(cg->procs_fd[i], "0", 1) != 1)
			return err_set(err, errno, "join cgroup %s", cg->path);
	return 0;
}

int
cgroup_oom_killed(struct cgroup *cg, bool *killed, struct shoal_err *err)
{
	return cg->ops->oom_killed(cg, killed, err);
}

int
cgroup_destroy(struct cgroup *cg, struct shoal_err *err)
{
	if (cg->ops->destroy(cg, err) == -1)
		return err_prefix(err, "remove cgroup %s", cg->path);
	return 0;
}

int
cgroup_parse_cpus(const char *s, int64_t *quota_us, int64_t *period_us, struct shoal_err *err)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v <= 0 || v > 1024)
		return err_set(err, 0, "invalid cpus \"%s\" (want a number of CPUs such as 0.5)",
		               s);
	*period_us = 100000;
	*quota_us = (int64_t)llround(v * 100000);
	/* The kernel refuses quotas under 1 ms. */
	if (*quota_us < 1000)
		return err_set(err, 0, "invalid cpus \"%s\" (at least 0.01)", s);
	return 0;
}

int
cgroup_parse_memory(const char *s, int64_t *bytes, struct shoal_err *err)
{
	if (util_parse_bytes(s, bytes, err) == -1)
		return err_prefix(err, "memory");
	if (*bytes < 4 * 1024 * 1024)
		return err_set(err, 0, "memory \"%s\" too small (at least 4Mi)", s);
	return 0;
}

int
cgroup_parse_pids(const char *s, int64_t *pids, struct shoal_err *err)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < 1)
		return err_set(err, 0, "invalid pids limit \"%s\" (want a positive integer)", s);
	*pids = v;
	return 0;
}
