#ifndef SHOAL_AGENT_HEALTH_T_H
#define SHOAL_AGENT_HEALTH_T_H

/* The types of health.h (a types header: the structs others embed). */

#include <stdint.h>
#include <sys/types.h>

struct agent_task;
struct event;
struct bufferevent;

enum health_status {
	HEALTH_NONE = 0, /* no check configured */
	HEALTH_STARTING, /* configured, no verdict yet */
	HEALTH_HEALTHY,
	HEALTH_UNHEALTHY,
};

struct health {
	struct agent_task *task;
	enum health_status status;
	char reason[160];        /* the last failure, e.g. "GET /healthz: 500" */
	uint32_t failures;       /* consecutive */
	int64_t started_mono;    /* when the container started (start_period) */
	struct event *timer;     /* next check */
	struct event *deadline;  /* the running check's timeout */
	struct bufferevent *bev; /* http/tcp check in flight */
	pid_t child;             /* cmd check in flight: its shoal-shim exec */
	int child_fd;            /* its pidfd */
	struct event *child_ev;
	void (*changed)(struct agent_task *t); /* status changed: report it */
};

#endif
