#ifndef SHOAL_AGENT_HEALTH_H
#define SHOAL_AGENT_HEALTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include "health-t.h"

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
