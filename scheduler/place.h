#ifndef SHOAL_SCHEDULER_PLACE_H
#define SHOAL_SCHEDULER_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nodes;
struct node;
struct service;
struct task;
struct slot;
struct manifest_constraint;

/*
 * Placement (docs/architecture.md): filter the nodes (ready, active, constraints, max_per_node,
 * CPU and memory reservations against capacity), then spread: fewest tasks of this service, then
 * most free memory, then name. Deterministic for the same state.
 *
 * A batch places many tasks of one service with one filtering pass and a heap of candidates
 * ordered by the spread key, so each task costs O(log nodes), not O(nodes).
 */

struct place_batch;

/* Start a batch for svc: counts its live tasks per node, filters, builds the heap. */
struct place_batch *place_begin(struct nodes *ns, struct service *svc);

/* The node for one more task of the batch's service (reservations not yet applied: the
 * caller binds the task, then calls place_commit), or NULL when nothing fits. */
struct node *place_next(struct place_batch *b);

/* Account one task placed on n (from place_next): its counters and heap position. */
void place_commit(struct place_batch *b, struct node *n);

/* Why nothing fits, for the pending tasks' message; valid until place_end. */
const char *place_reason(struct place_batch *b);

void place_end(struct place_batch *b);

/* The task a slot keeps once its update or move is done (its live replacement if it has one,
 * else its current task if live), which is what spread counts; NULL for none. */
const struct task *place_slot_keeps(const struct slot *sl);

/*
 * Replacing the tasks of a node that went down leaves the spread uneven when it returns (3
 * replicas on 3 nodes: 2/1/0). Which slot should move to even it, one at a time: a task on
 * the node with the most tasks of svc, when one more task would be placed on a node with at
 * least 2 fewer. NULL when the spread holds (max - min <= 1 over the ready, active nodes
 * placement may use), nothing fits elsewhere, or svc is not steady (a task pending, moving,
 * not healthy or of another version).
 */
struct slot *place_rebalance(struct nodes *ns, struct service *svc);

/* Does node n satisfy constraint c? */
bool place_constraint_ok(const struct node *n, const struct manifest_constraint *c);

#endif
