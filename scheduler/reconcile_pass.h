#ifndef SHOAL_SCHEDULER_RECONCILE_PASS_H
#define SHOAL_SCHEDULER_RECONCILE_PASS_H

struct sched_server;
struct service;
struct node;
struct task;
struct shoal_err;

/*
 * The pass's bookkeeping (the pass itself is reconcile_flush): what changed is marked here
 * (services to reconcile, nodes to send Assignments, task rows to write), and every write of
 * one burst goes into one store transaction, committed by the pass. Everything that changes
 * desired state marks through here; nothing here calls back into the reconciler.
 */

/* Roles a task row can have in the store. */
enum { ROLE_CUR = 0, ROLE_NEXT = 1, ROLE_STOPPING = 2, ROLE_FINISHED = 3 };

/* Something about svc changed: reconcile it in this iteration's pass. */
void reconcile_mark(struct sched_server *srv, struct service *svc);
/* Node n's task set changed: send it Assignments in this iteration's pass. */
void reconcile_mark_node(struct sched_server *srv, struct node *n);

/* Run the deferred pass at the end of this loop iteration. */
void reconcile_schedule(struct sched_server *srv);

/* Record t's durable fields (batched into the pass's transaction). */
void reconcile_persist_task(struct sched_server *srv, struct task *t);
/* Record svc's durable fields. */
void reconcile_persist_service(struct sched_server *srv, struct service *svc);

/* Open the burst's store transaction if none is (and make sure the pass runs to commit it). */
void reconcile_pass_tx(struct sched_server *srv);
/* Write the task rows marked since the last pass, in the open transaction. */
void reconcile_pass_write_tasks(struct sched_server *srv);
/* t goes away: its row too (dequeued if never written). */
void reconcile_pass_forget_task(struct sched_server *srv, struct task *t);

/* A store write failed: say so in the log (the pass goes on). */
void reconcile_pass_warn(const struct shoal_err *err);

#endif
