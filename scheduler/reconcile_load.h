#ifndef SHOAL_SCHEDULER_RECONCILE_LOAD_H
#define SHOAL_SCHEDULER_RECONCILE_LOAD_H

struct sched_server;
struct shoal_err;

/* After a restart: load services and tasks from the store (after nodes), each task back in
 * its slot and on its node, and the rollouts where they were. */
int reconcile_load(struct sched_server *srv, struct shoal_err *err);

#endif
