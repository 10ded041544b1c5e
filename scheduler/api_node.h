#ifndef SHOAL_SCHEDULER_API_NODE_H
#define SHOAL_SCHEDULER_API_NODE_H

#include "rpc.h"

struct sched_conn;

/* The CLI's node requests (the admin token; api.c's table routes them here). */

void api_node_list(struct sched_conn *sc, const Shoal__Envelope *env);
/* shoal node drain / pause / activate */
void api_node_set_availability(struct sched_conn *sc, const Shoal__Envelope *env);
void api_node_remove(struct sched_conn *sc, const Shoal__Envelope *env);
/* shoal node update: labels */
void api_node_update(struct sched_conn *sc, const Shoal__Envelope *env);

#endif
