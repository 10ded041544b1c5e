#ifndef SHOAL_RUNTIME_SPAWN_H
#define SHOAL_RUNTIME_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netns.h"

struct shoal_err;
struct cgroup;
struct cgroup_limits;
struct sock_fprog;
struct rlimit;

/* The program a container runs and the identity it runs it under: the same for the
 * container's first process and for every process later exec'd into it. All borrowed. */
struct spawn_process {
	char *const *argv;                /* argv[0] resolved against PATH of env */
	char *const *env;                 /* KEY=VALUE, NULL-terminated */
	const char *cwd;                  /* NULL: "/" */
	const char *user;                 /* "uid[:gid]" or "name[:group]"; NULL: root */
	const struct sock_fprog *seccomp; /* NULL: no filter */
	bool no_new_privs; /* set PR_SET_NO_NEW_PRIVS: setuid and file caps then grant nothing */
	int stdio[3];      /* its stdin, stdout, stderr */
	/* spawn_exec only: run on a new pseudo-terminal of the container's own devpts (its
	 * controlling terminal, as stdin, stdout and stderr); its master goes down console, a
	 * unix socket (SCM_RIGHTS), to whoever relays it (runc's console socket). */
	bool tty;
	int console;
};

/* Everything the container's first process is made from. All fields are borrowed. */
struct spawn_config {
	char *const *layers; /* image layer dirs, base first */
	size_t nlayers;
	const char *upper, *work, *rootfs; /* per-container overlay dirs and mount point */
	struct spawn_process proc;
	const char *hostname;
	/* A dir with hosts, hostname, resolv.conf bound over the root's /etc ones; NULL: none. */
	const char *etc_dir;
	struct netns_config net;
	/* The container's cgroup, not created yet: spawn_container creates it with limits while
	 * the child builds its root, and the child joins it before anything of the image runs.
	 * NULL: none. */
	struct cgroup *cg;
	const struct cgroup_limits *limits;
};

/* How a start failed: in the runtime's setup (125), or at the exec itself (126 when the file
 * cannot be run, 127 when it does not exist), as docker run reports it. */
enum spawn_stage {
	SPAWN_SETUP = 1,
	SPAWN_EXEC = 2,
};

/*
 * Clone the container's first process into new PID, mount, UTS, IPC, cgroup and (unless host
 * or join) network namespaces, build its root and exec argv. Returns its pid once the exec has
 * happened: the child holds the write end of a close-on-exec pipe, so EOF on it means execve
 * succeeded, and a failing child writes its struct shoal_err down it instead (and is reaped
 * here). On failure *exit_code is 125, 126 or 127.
 */
pid_t spawn_container(const struct spawn_config *c, int *exit_code, struct shoal_err *err);

/*
 * Run p in the running container whose init is pid (started at pid_start, see
 * spawn_proc_start_time), exactly as confined as that init: its cgroup in every hierarchy,
 * its pid, mount, UTS, IPC, network and cgroup namespaces, its resource limits, then the very
 * steps spawn_container ends with (user, capabilities, no_new_privs, seccomp filter, exec).
 * no_new_privs is set when p asks for it or when the init has it (read from its
 * /proc/PID/status): an exec is never less confined than the init.
 * This is how anything runs inside a container after its start (health checks, shoalrt
 * exec): never by joining namespaces alone, which keeps the runtime's capabilities.
 *
 * Returns the new process's pid (in our pid namespace) once it has exec'd; it leads a process
 * group of its own, so kill(-pid, sig) reaches what it started. It keeps SIGKILL as its
 * parent-death signal: it dies with the caller. On failure *exit_code is 125, 126 or 127 as
 * for spawn_container.
 *
 * Joining a pid namespace cannot be undone, and every later child of the caller is born in
 * the container's: call this from a process of its own (`shoal-shim exec`). The caller itself
 * joins nothing else and stays out of the container's reach.
 */
pid_t spawn_exec(pid_t pid, uint64_t pid_start, const struct spawn_process *p, int *exit_code,
                 struct shoal_err *err);

/* The start time of pid in clock ticks since boot (field 22 of /proc/PID/stat): with the pid
 * it names a process for good, as pids are reused. 0 if pid does not exist. */
uint64_t spawn_proc_start_time(pid_t pid);

/* The default capability set, as a bit mask (Docker's). */
uint64_t spawn_default_caps(void);

/*
 * Find the directory of the cgroup named by one line of /proc/PID/cgroup ("4:cpu,cpuacct:/a"
 * or "0::/a") among the cgroup mounts listed in mountinfo (the text of /proc/self/mountinfo).
 * Writes it to out; -1 when no mount shows that hierarchy or that part of it.
 */
int spawn_cgroup_dir(const char *mountinfo, const char *line, char *out, size_t outlen);

/* Parse the text of /proc/PID/limits into limits[RLIM_NLIMITS] (RLIMIT_* order). */
int spawn_parse_limits(const char *text, struct rlimit *limits, struct shoal_err *err);

#endif
