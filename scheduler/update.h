#ifndef SHOAL_SCHEDULER_UPDATE_H
#define SHOAL_SCHEDULER_UPDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "update-t.h"

struct sched_server;
struct service;
struct task;

/* A changing apply (new version) starts an update. */
void update_begin(struct sched_server *srv, struct service *svc);
/* `shoal rollback`: back to the previous spec, as an update. -1 when there is none. */
int update_rollback(struct sched_server *srv, struct service *svc, const char *why);

/* Before a pass over the slots: count what is in flight and how many may start. */
void update_pass_begin(struct service *svc, int64_t now);
/* May one more slot start moving to the new version now? update_can_start asks, update_may_start
 * also consumes the budget. */
bool update_can_start(const struct service *svc);
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

#endif
