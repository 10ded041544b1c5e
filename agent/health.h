#ifndef SHOAL_AGENT_HEALTH_H
#define SHOAL_AGENT_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct agent_task;
struct event;
struct bufferevent;

/*
 * Health checks of the agent's own tasks (the manifest's `health`), run on the agent's loop:
 * http (GET a path on the container's address, healthy on 2xx/3xx), tcp (a connect), or cmd
 * (a command run inside the container exactly as confined as its init, through `shoal-shim
 * exec`; healthy on exit 0). A check never blocks the loop: connects and reads are events, a
 * command is a child whose exit is a pidfd event; a timeout kills the command and everything
 * it started.
 *
 * Failures inside start_period do not count; `retries` failures in a row make the task
 * unhealthy; one success makes it healthy again.
 */
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

/* Start checking t (its spec says how; a task without a check stays HEALTH_NONE). */
void health_start(struct health *h, struct agent_task *t, void (*changed)(struct agent_task *t));
void health_stop(struct health *h);

/* "" | "starting" | "healthy" | "unhealthy: REASON" */
const char *health_text(const struct health *h, char *buf, size_t len);
/* h's verdict as the wire's HealthState (TaskStatus.health_state; the reason is h->reason
 * when unhealthy). */
int health_wire_state(const struct health *h);

/* Parse an HTTP status line; returns the code or -1. */
int health_http_status(const char *line, size_t len);

#endif
