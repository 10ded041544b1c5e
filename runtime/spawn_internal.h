#ifndef SHOAL_RUNTIME_SPAWN_INTERNAL_H
#define SHOAL_RUNTIME_SPAWN_INTERNAL_H

/* The steps a container's first process (spawn.c) and a process exec'd into it later
 * (spawn_exec.c) share. Not for other modules. */

#include <sys/types.h>

#include "err.h"

struct spawn_process;

/* What a failing child writes down the sync pipe. */
struct spawn_report {
	int stage; /* enum spawn_stage */
	struct shoal_err err;
};

/* First thing in a new child: default signals, death with the parent, not dumpable, stdio. */
int spawn_child_begin(const struct spawn_process *p, struct shoal_err *err);
/* Last: user, cwd, capabilities, no_new_privs, seccomp, exec. Returns only on failure. */
int spawn_child_exec(const struct spawn_process *p, int parent, int *stage, struct shoal_err *err);
/* The starter's half of the sync pipe: pid once the child exec'd, else -1 (child reaped). */
pid_t spawn_await_exec(pid_t pid, int fd, int *exit_code, struct shoal_err *err);

#endif
