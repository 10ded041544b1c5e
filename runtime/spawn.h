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

/* The start time of pid in clock ticks since boot (field 22 of /proc/PID/stat): with the pid
 * it names a process for good, as pids are reused. 0 if pid does not exist. */
uint64_t spawn_proc_start_time(pid_t pid);

/* Every signal to its default action and none blocked: what a child of a process with
 * handlers (libevent's, shoalrt run's forwarding) starts from before it execs or serves. */
int spawn_signals_default(struct shoal_err *err);

/* The default capability set, as a bit mask (Docker's). */
uint64_t spawn_default_caps(void);

#endif
