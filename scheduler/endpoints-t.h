#ifndef SHOAL_SCHEDULER_ENDPOINTS_T_H
#define SHOAL_SCHEDULER_ENDPOINTS_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct task;

/*
 * Endpoints (docs/architecture.md): for every service with a published port, the ip:port of
 * each running task, pushed to every agent with a generation number whenever the set changes,
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
	uint8_t *content;    /* packed services of the last table, to spot changes */
	size_t content_len;
	uint8_t *nodes_content; /* packed node list last broadcast */
	size_t nodes_content_len;
	bool nodes_waiting; /* the node list may have changed since its last broadcast */
	int64_t next_nodes; /* monotonic ms: no node-list broadcast before (throttle) */
	uint8_t *frame;     /* a full table (services and nodes) for nodes that register */
	size_t frame_len;
	uint64_t frame_gen;     /* the generation it was built for */
	int64_t frame_built;    /* monotonic ms */
	struct task **draining; /* tasks waiting for the acknowledgements */
	size_t ndraining, capdraining;
	uint8_t *svc_frame; /* the services of the last generation, for nodes that come back */
	size_t svc_frame_len;
	uint64_t svc_frame_gen;
	int64_t next_build;  /* monotonic ms: no rebuild of the services before (throttle) */
	struct event *defer; /* brings a throttled rebuild back at next_build */
};

#endif
