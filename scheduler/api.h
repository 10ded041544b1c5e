#ifndef SHOAL_SCHEDULER_API_H
#define SHOAL_SCHEDULER_API_H

#include "rpc.h"

struct sched_conn;

/* Handle one request or report from a connection: role checks, then the message's handler. */
void api_handle(struct sched_conn *sc, const Shoal__Envelope *env);

#endif
