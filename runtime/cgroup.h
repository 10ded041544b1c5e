#ifndef SHOAL_RUNTIME_CGROUP_H
#define SHOAL_RUNTIME_CGROUP_H

#include <stdbool.h>
#include <stdint.h>

struct shoal_err;

/*
 * A container's cgroup, behind an ops table like crun's cgroup manager: v2 when the unified
 * hierarchy at the cgroupfs root lists resource controllers, else v1 with one directory per
 * controller (/sys/fs/cgroup/<ctrl>/<path>). A hybrid host whose unified tree lists no
 * cpu/memory/pids controller is treated as v1.
 */

/*
 * The pids limit of a container whose spec sets none. Without one, a fork bomb in any container
 * takes every pid of the host, its agent's included. 4096 is what Docker-style hosts commonly
 * configure (dockerd --default-pids-limit, podman's 2048, containerd's CRI 0..4096): far above
 * what a service forks (busybox httpd with CGI: a handful), far below the host's pid_max. A
 * spec raises it up to the kernel's PID_MAX_LIMIT (4194304: no limit in effect).
 */
#define CGROUP_DEFAULT_PIDS 4096

/* Every container together (their parent cgroup, "shoal/") gets 3/4 of the host's pids
 * (min of kernel.pid_max and kernel.threads-max), so the rest stays for the host and its agent
 * however many containers fork at once. 0 if unknown. */
int64_t cgroup_host_pids_cap(void);

/* Limits; 0 means "no limit" for every field but pids, where it means CGROUP_DEFAULT_PIDS. */
struct cgroup_limits {
	int64_t cpu_quota_us;  /* CFS quota per period */
	int64_t cpu_period_us; /* CFS period, 100000 when a quota is set */
	int64_t memory_bytes;  /* hard limit; swap is disabled when set */
	int64_t pids;          /* max tasks; 0: CGROUP_DEFAULT_PIDS */
};

struct cgroup;

struct cgroup_ops {
	const char *name; /* "v1" or "v2" */
	/* Create the directories, write the limits and open the files for joining (v1 tasks,
	 * v2 cgroup.procs). */
	int (*create)(struct cgroup *cg, const struct cgroup_limits *l, struct shoal_err *err);
	/* Did the kernel's OOM killer fire in this cgroup? */
	int (*oom_killed)(struct cgroup *cg, bool *killed, struct shoal_err *err);
	/* Remove the directories; the cgroup must be empty (or about to be). */
	int (*destroy)(struct cgroup *cg, struct shoal_err *err);
};

extern const struct cgroup_ops cgroup_ops_v1;
extern const struct cgroup_ops cgroup_ops_v2;

#define CGROUP_MAX_FDS 8

struct cgroup {
	const struct cgroup_ops *ops;
	char *fsroot;                 /* "/sys/fs/cgroup" */
	char *path;                   /* relative: "shoal/<id>" */
	int procs_fd[CGROUP_MAX_FDS]; /* open join file (tasks / cgroup.procs) per hierarchy */
	int nprocs;
};

/* Pick the manager for the cgroupfs mounted at fsroot ("/sys/fs/cgroup" when NULL). */
const struct cgroup_ops *cgroup_detect(const char *fsroot);

/* A handle for fsroot/path (nothing created yet). Caller frees with cgroup_free. */
struct cgroup *cgroup_new(const char *fsroot, const char *path, const struct cgroup_ops *ops);
void cgroup_free(struct cgroup *cg);

/* Create, set limits and open the procs files (ops->create). */
int cgroup_create(struct cgroup *cg, const struct cgroup_limits *l, struct shoal_err *err);

/* Move the calling process into the cgroup through the open join files: a child calls this
 * between clone and unshare(CLONE_NEWCGROUP), so its cgroup namespace is rooted there. The
 * caller must be single-threaded (v1 joins through "tasks", which moves one thread). */
int cgroup_enter_self(struct cgroup *cg, struct shoal_err *err);

/* Close the procs files (the parent does not need them after the child joined). */
void cgroup_close_fds(struct cgroup *cg);

int cgroup_oom_killed(struct cgroup *cg, bool *killed, struct shoal_err *err);

/* Remove the cgroup, retrying briefly while the last tasks finish exiting. Missing is fine. */
int cgroup_destroy(struct cgroup *cg, struct shoal_err *err);

/* "0.5" -> quota 50000 us per period 100000 us. */
int cgroup_parse_cpus(const char *s, int64_t *quota_us, int64_t *period_us, struct shoal_err *err);

/* "64Mi" -> bytes; refuses values under 4 MiB, where a container cannot even start. */
int cgroup_parse_memory(const char *s, int64_t *bytes, struct shoal_err *err);

/* "256" -> pids limit, at least 1. */
int cgroup_parse_pids(const char *s, int64_t *pids, struct shoal_err *err);

#endif
