#ifndef SHOAL_SCHEDULER_RECONCILE_REPORT_H
#define SHOAL_SCHEDULER_RECONCILE_REPORT_H

#include <stddef.h>

struct sched_server;
struct node;
typedef struct Shoal__TaskStatus Shoal__TaskStatus;

/* What the agents report, and what happens to nodes: each changes tasks' observed state and
 * marks their services for the pass. */

/* An agent reported a task's state. */
void reconcile_task_status(struct sched_server *srv, struct node *n, const Shoal__TaskStatus *ts);

/* n stopped heartbeating: its tasks are lost and get replaced elsewhere. */
void reconcile_node_down(struct sched_server *srv, struct node *n);

/* n is about to be removed (`shoal node rm`): end its tasks, drop every pointer to it. */
void reconcile_node_removed(struct sched_server *srv, struct node *n);

/* n (re-)registered reporting the tasks it runs: adopt them, send it its set. */
void reconcile_node_registered(struct sched_server *srv, struct node *n,
                               Shoal__TaskStatus *const *running, size_t nrunning);

#endif
