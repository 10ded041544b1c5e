#ifndef SHOAL_AGENT_LOGS_T_H
#define SHOAL_AGENT_LOGS_T_H

/* The types of logs.h (a types header: the structs others embed). */

#include <stdint.h>

struct agent_server;
struct event;
struct logfile;

struct log_follow {
	uint64_t id; /* the request's envelope id: every chunk echoes it */
	char task_id[16];
	struct logfile *lf;
	struct log_follow *next;
};

/* A `shoal exec` command running in a task's container (exec.c). */
struct agent_exec;

struct logs {
	struct agent_server *agent;
	struct log_follow *follows;
	struct event *poll;       /* runs while any follow is open */
	struct agent_exec *execs; /* commands of `shoal exec` running now */
};

#endif
