#ifndef SHOAL_RUNTIME_SPAWN_EXEC_H
#define SHOAL_RUNTIME_SPAWN_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h"

struct shoal_err;
struct rlimit;

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

/*
 * Find the directory of the cgroup named by one line of /proc/PID/cgroup ("4:cpu,cpuacct:/a"
 * or "0::/a") among the cgroup mounts listed in mountinfo (the text of /proc/self/mountinfo).
 * Writes it to out; -1 when no mount shows that hierarchy or that part of it.
 */
int spawn_exec_cgroup_dir(const char *mountinfo, const char *line, char *out, size_t outlen);

/* Parse the text of /proc/PID/limits into limits[RLIM_NLIMITS] (RLIMIT_* order). */
int spawn_exec_parse_limits(const char *text, struct rlimit *limits, struct shoal_err *err);

#endif
