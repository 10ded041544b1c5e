#ifndef SHOAL_SCHEDULER_RECONCILE_H
#define SHOAL_SCHEDULER_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_server;
struct service;
struct node;
struct task;
struct shoal_err;

/*
 * Reconciliation (docs/architecture.md): compare each service's desired state with what the
 * agents report, and act. Everything here runs on the scheduler's loop. Changes mark a
 * service dirty; one deferred pass per loop iteration reconciles the dirty services, sends
 * Assignments to the nodes whose task set changed, and commits the store once.
 */

/* The deferred pass (also run by the 1 s tick). */
void reconcile_flush(struct sched_server *srv);
/* n is being removed: the pass commits not completed yet forget it, so none sends to it. */
void reconcile_commits_forget(struct sched_server *srv, const struct node *n);
/* Every second: services waiting on a back-off or for room get another look. */
void reconcile_tick(struct sched_server *srv);
/* A task of svc became healthy or ended: check the rollout now (or at the tick, for a big
 * service). */
void reconcile_watch_soon(struct sched_server *srv, struct service *svc);

/* A removed service was applied again: its slots start afresh (old tasks keep stopping). */
void reconcile_service_recreated(struct sched_server *srv, struct service *svc);

/* Most new slots one pass of a service creates (and places, and writes); more make the
 * service dirty again for the next slice. */
#define RECONCILE_SCALE_SLICE 2000
/* One service's turn in the pass (now: monotonic ms); false when the service was deleted.
 * reconcile_flush runs it for each dirty service; public for tests. */
bool reconcile_service(struct sched_server *srv, struct service *svc, int64_t now);

#endif
