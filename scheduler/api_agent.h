#ifndef SHOAL_SCHEDULER_API_AGENT_H
#define SHOAL_SCHEDULER_API_AGENT_H

#include "rpc.h"

struct sched_conn;

/* What agents send (the worker token; api.c's table routes them here). */

/* A node joins or comes back: its key, its name, its capacity, its running tasks. */
void api_agent_register(struct sched_conn *sc, const Shoal__Envelope *env);
/* Alive, with its usage, its proxy's counters, its ports and its tasks' changes. */
void api_agent_heartbeat(struct sched_conn *sc, const Shoal__Envelope *env);
void api_agent_task_report(struct sched_conn *sc, const Shoal__Envelope *env);
/* Its proxy could not reach a backend: logged, the health check decides. */
void api_agent_proxy_hint(struct sched_conn *sc, const Shoal__Envelope *env);
/* A node follows the tasks of services it names (its DNS server was asked for them). */
void api_agent_endpoints_subscribe(struct sched_conn *sc, const Shoal__Envelope *env);

#endif
