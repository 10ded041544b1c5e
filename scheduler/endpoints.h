#ifndef SHOAL_SCHEDULER_ENDPOINTS_H
#define SHOAL_SCHEDULER_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_server;
struct node;
struct task;

/*
 * Endpoints (DESIGN.md "Proxy"): for every service with a published port, the ip:port of each
 * running task, pushed to every agent with a generation number whenever the set changes,
 * together with the node list (name, address, subnet) the agents route by.
 *
 * Stopping a task the scheduler controls (scale-down, removal, drain, update) goes through
 * draining: the task leaves Endpoints first and stays assigned until every ready agent has
 * acknowledged a generation without it (or 2 s passed); only then is it unassigned, so no
 * proxy sends a new connection to a task that is being stopped.
 */
struct endpoints {
	bool dirty;          /* recompute in this iteration's pass */
	uint64_t generation; /* of the last table sent */
	uint8_t *content;    /* packed services+nodes of the last table, to spot changes */
	size_t content_len;
	uint8_t *frame; /* the last Endpoints envelope, packed, for late joiners */
	size_t frame_len;
	struct task **draining; /* tasks waiting for the acknowledgements */
	size_t ndraining, capdraining;
};

/* Something that Endpoints depend on changed. */
void endpoints_mark(struct sched_server *srv);
/* Recompute; if the table changed, bump the generation and send it to every ready node. */
void endpoints_flush(struct sched_server *srv);
/* Send n the current table (it just registered). */
void endpoints_send(struct sched_server *srv, struct node *n);
/* n applied generation gen. */
void endpoints_ack(struct sched_server *srv, struct node *n, uint64_t gen);

/* Start draining t before it stops; false when it need not drain (not in Endpoints). */
bool endpoints_drain(struct sched_server *srv, struct task *t);
/* Finish drains whose generation every ready node acknowledged or whose deadline passed. */
void endpoints_check_drains(struct sched_server *srv);
/* t is going away: forget it. */
void endpoints_forget(struct sched_server *srv, struct task *t);

/* Is t a backend right now (running, wanted, with an address)? */
bool endpoints_serves(const struct task *t);

void endpoints_free(struct endpoints *e);

#endif
