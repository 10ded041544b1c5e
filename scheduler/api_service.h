#ifndef SHOAL_SCHEDULER_API_SERVICE_H
#define SHOAL_SCHEDULER_API_SERVICE_H

#include "rpc.h"

struct sched_conn;

/* The CLI's service and task requests (the admin token; api.c's table routes them here). */

void api_service_apply(struct sched_conn *sc, const Shoal__Envelope *env);
void api_service_list(struct sched_conn *sc, const Shoal__Envelope *env);
void api_service_list_tasks(struct sched_conn *sc, const Shoal__Envelope *env);
void api_service_scale(struct sched_conn *sc, const Shoal__Envelope *env);
void api_service_remove(struct sched_conn *sc, const Shoal__Envelope *env);
void api_service_rollback(struct sched_conn *sc, const Shoal__Envelope *env);

#endif
