#ifndef SHOAL_SCHEDULER_ENDPOINTS_H
#define SHOAL_SCHEDULER_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoints-t.h"

struct sched_server;
struct node;
struct task;
struct service;

/*
 * The node list (for routes) is O(nodes) per copy and every node needs it, so spreading a
 * change costs O(nodes^2) bytes: its broadcasts are throttled (at most one per
 * max(1 s, 2 ms per node): 20 s at 10,000 nodes) while service changes go out at once with
 * no node list (an agent keeps the routes it has). A node that registers gets the full table.
 */

/* Something that Endpoints depend on changed. */
void endpoints_mark(struct sched_server *srv);
/* Recompute; if the table changed, bump the generation and send it to every ready node. */
void endpoints_flush(struct sched_server *srv);
/* Send n the current table (it just registered). */
void endpoints_send(struct sched_server *srv, struct node *n);
/* Send n the current services only (it kept its routes: it resumed heartbeating). */
void endpoints_send_services(struct sched_server *srv, struct node *n);
/* n applied generation gen. */
void endpoints_ack(struct sched_server *srv, struct node *n, uint64_t gen);

#define ENDPOINTS_NAME_MAX      255  /* a service name a node may follow */
#define ENDPOINTS_SUBS_PER_NODE 1024 /* services one node may follow */

/* n's DNS server was asked for these services (EndpointsSubscribe, or Register after a
 * reconnect): from now on its Endpoints carry their tasks. Unknown names are ignored. */
void endpoints_subscribe(struct sched_server *srv, struct node *n, char *const *names,
                         size_t count);
/* Does a change of svc's tasks change some node's Endpoints (published, or followed)? */
bool endpoints_viewed(struct sched_server *srv, const struct service *svc);
/* Does node follow service? */
bool endpoints_subscribed(const struct endpoints *e, const char *node, const char *service);

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
