#ifndef SHOAL_SCHEDULER_RECONCILE_TASK_H
#define SHOAL_SCHEDULER_RECONCILE_TASK_H

#include <stdint.h>

#include "task-t.h"

struct sched_server;
struct service;
struct slot;
struct node;

/*
 * What the reconciler does to one task (the pass, the reports from agents and the load after
 * a restart share these): create it, bind it to a node and back, ask it to stop, retire it to
 * its slot's history, forget it, say so on the event stream. Each keeps the node's
 * reservations, the task map, the store rows (reconcile_pass) and Endpoints in step.
 */

/* The event of a task that reached state st (reported by its node, or decided here). */
void reconcile_task_emit_state(struct sched_server *srv, const struct task *t, enum task_state st);
/* Place t on n: its reservation, n's task list, n's Assignments. */
void reconcile_task_bind(struct sched_server *srv, struct task *t, struct node *n);
/* The reverse of bind (nothing if t is not bound). */
void reconcile_task_unbind(struct sched_server *srv, struct task *t);
/* Forget a task entirely (it left the slot's history or its slot went). */
void reconcile_task_drop(struct sched_server *srv, struct task *t);
/* t ended: into sl's history (memory only: its row goes). */
void reconcile_task_to_history(struct sched_server *srv, struct slot *sl, struct task *t);
/* A new task of svc's current version for slot (in the task map, no row yet). */
struct task *reconcile_task_new(struct sched_server *srv, struct service *svc, uint32_t slot,
                                uint32_t restarts);
/* Ask for t to stop. A task never placed stops at once. */
void reconcile_task_shutdown(struct sched_server *srv, struct task *t, const char *why);
/* Replace slot's current task by a new one; the old one stops (or is history already). */
struct task *reconcile_task_replace_cur(struct sched_server *srv, struct slot *sl,
                                        struct task *fresh, const char *why);

/* One task event (scheduler/events.h): fmt, when not NULL, says why. */
void reconcile_task_emit(struct sched_server *srv, const struct task *t, const char *action,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
