#ifndef SHOAL_SCHEDULER_RECONCILE_DISPATCH_H
#define SHOAL_SCHEDULER_RECONCILE_DISPATCH_H

struct sched_server;
struct node;

/*
 * Dispatch: a node's whole task set, level-triggered like swarmkit's dispatcher: every
 * Assignments message lists every task the node should run (and the services they belong
 * to), so a lost message is repaired by the next one.
 */

/* Send n its Assignments now (normally done by the pass for the nodes it marked). */
void reconcile_dispatch(struct sched_server *srv, struct node *n);

#endif
