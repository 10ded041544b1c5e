#ifndef SHOAL_SCHEDULER_ENDPOINTS_T_H
#define SHOAL_SCHEDULER_ENDPOINTS_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct task;

/*
 * A node's subscription to an unpublished service's tasks (EndpointsSubscribe): its DNS server
 * was asked for the name. Only subscribers get those tasks; every node gets every service's
 * name and VIP. Kept by node name across reconnects (and re-sent in Register after a
 * scheduler restart); dropped with the service.
 */
struct endpoints_sub {
	char *node;
	char *service;
	bool fresh; /* not sent to the node yet */
};

/* A service some node subscribed to, and its entry (with tasks) as last sent. */
struct endpoints_watch {
	char *service;
	uint8_t *packed; /* its ServiceName with tasks, packed, NULL before the first flush */
	size_t len;
	bool changed; /* in the flush running now */
};

/*
 * Endpoints (docs/architecture.md): for every service with a published port, the ip:port of
 * each running task, pushed to every agent with a generation number whenever the set changes,
 * together with the node list (name, address, subnet) the agents route by, and every service's
 * name and VIP. An unpublished service's tasks go only to the nodes subscribed to it: a node
 * needs them only when one of its containers uses the name, and sending every task to every
 * node cost O(tasks x nodes) bytes (a million tasks never reached 10,000 nodes).
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
	int64_t next_build;         /* monotonic ms: no rebuild of the services before (throttle) */
	struct event *defer;        /* brings a throttled rebuild back at next_build */
	struct endpoints_sub *subs; /* sorted by (node, service) */
	size_t nsubs, capsubs;
	size_t nfresh;                 /* subs with fresh set: the next flush sends their nodes */
	struct endpoints_watch *watch; /* the services of subs, sorted by name */
	size_t nwatch;
};

#endif
