#ifndef SHOAL_SCHEDULER_RECONCILE_H
#define SHOAL_SCHEDULER_RECONCILE_H

#include <stddef.h>

#include "rpc.h"

struct sched_server;
struct service;
struct node;
struct task;
struct shoal_err;
typedef struct Shoal__TaskStatus Shoal__TaskStatus;

/*
 * Reconciliation (docs/architecture.md): compare each service's desired state with what the
 * agents report, and act. Everything here runs on the scheduler's loop. Changes mark a
 * service dirty; one deferred pass per loop iteration reconciles the dirty services, sends
 * Assignments to the nodes whose task set changed, and commits the store once.
 */

/* Load services and tasks from the store (after nodes). */
int reconcile_load(struct sched_server *srv, struct shoal_err *err);

/* The deferred pass (also run by the 1 s tick). */
void reconcile_flush(struct sched_server *srv);
/* Every second: services waiting on a back-off or for room get another look. */
void reconcile_tick(struct sched_server *srv);

/* An agent reported a task's state. */
void reconcile_task_status(struct sched_server *srv, struct node *n, const Shoal__TaskStatus *ts);

/* n stopped heartbeating: its tasks are lost and get replaced elsewhere. */
void reconcile_node_down(struct sched_server *srv, struct node *n);

/* n is about to be removed (`shoal node rm`): end its tasks, drop every pointer to it. */
void reconcile_node_removed(struct sched_server *srv, struct node *n);

/* n (re-)registered reporting the tasks it runs: adopt them, send it its set. */
void reconcile_node_registered(struct sched_server *srv, struct node *n,
                               Shoal__TaskStatus *const *running, size_t nrunning);

/* A removed service was applied again: its slots start afresh (old tasks keep stopping). */
void reconcile_service_recreated(struct sched_server *srv, struct service *svc);

/* Send n its Assignments now (normally done by the pass). */
void reconcile_dispatch(struct sched_server *srv, struct node *n);

#endif
