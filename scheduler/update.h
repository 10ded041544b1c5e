#ifndef SHOAL_SCHEDULER_UPDATE_H
#define SHOAL_SCHEDULER_UPDATE_H

#include <stdbool.h>
#include <stdint.h>

struct sched_server;
struct service;
struct task;

/*
 * Rolling updates (the manifest's `update`): when a service's spec changes, its slots move to
 * the new version `parallelism` at a time (0 = all), with `delay` after each one finishes;
 * start-first starts the new task and stops the old one once the new one is healthy and in
 * Endpoints, stop-first does the reverse. A new task that exits, or is not healthy within
 * `monitor`, is a failure: `pause` stops the rollout and says why, `rollback` returns every
 * slot to the previous spec the same careful way, `continue` carries on.
 *
 * The state is durable (the services row), so a scheduler restarted mid-update resumes it.
 */
enum update_state {
	UPDATE_NONE = 0, /* never updated */
	UPDATE_UPDATING,
	UPDATE_PAUSED,
	UPDATE_ROLLING_BACK,
	UPDATE_ROLLED_BACK,
	UPDATE_COMPLETED,
};

struct update {
	enum update_state state;
	char *message;      /* why it paused or rolled back, NULL if nothing to say */
	int64_t next_start; /* monotonic ms: no new slot starts before (delay) */
	uint32_t budget;    /* slots that may start updating in this pass */
	uint32_t done, total;
	uint32_t reported; /* done as last told in a progress event (memory only) */
};

/* A changing apply (new version) starts an update. */
void update_begin(struct sched_server *srv, struct service *svc);
/* `shoal rollback`: back to the previous spec, as an update. -1 when there is none. */
int update_rollback(struct sched_server *srv, struct service *svc, const char *why);

/* Before a pass over the slots: count what is in flight and how many may start. */
void update_pass_begin(struct service *svc, int64_t now);
/* May one more slot start moving to the new version now? (Consumes the budget.) */
bool update_may_start(struct service *svc);
/* A task the update started is healthy: its slot is done; the delay starts. */
void update_task_done(struct service *svc, struct task *t, int64_t now);
/* A task the update started failed (exited, or not healthy within monitor). */
void update_task_failed(struct sched_server *srv, struct service *svc, struct task *t,
                        const char *why);
/* The rollout failed (a task, or no progress within update.timeout; msg says how): apply the
 * service's failure_action. */
void update_fail(struct sched_server *srv, struct service *svc, const char *msg);
/* After the pass: notice completion. Returns true when it waits on time (delay). */
bool update_pass_end(struct sched_server *srv, struct service *svc, int64_t now);

/* "updating 4/10", "paused: task web.3.k3x9 unhealthy: ...", "rolled back: ...", ... */
char *update_text(const struct service *svc);
/* update_text for listings: with why tasks are pending, if they are ("updating 0/4, waiting:
 * every eligible node has max_per_node=2 tasks (...)"). Not stored. */
char *update_status(const struct service *svc);
/* Restore the state from its text after a restart. */
void update_restore(struct service *svc, const char *text);

#endif
