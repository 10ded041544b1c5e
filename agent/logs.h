#ifndef SHOAL_AGENT_LOGS_H
#define SHOAL_AGENT_LOGS_H

#include <stdint.h>
#include "logs-t.h"

struct agent_server;
struct event;
typedef struct Shoal__LogsRequest Shoal__LogsRequest;

/*
 * The agent's log service: the scheduler relays `shoal logs` here over the session. A request
 * gets the task's last lines as LogChunks; with follow, new output is polled every 200 ms
 * and sent until the container ends, the request is cancelled, or the session drops.
 */

void logs_init(struct logs *l, struct agent_server *a);
void logs_request(struct logs *l, uint64_t id, const Shoal__LogsRequest *req);
/* The session dropped: every follow ends (the scheduler's relays are gone too). */
void logs_reset(struct logs *l);
/* Named apart from scheduler/logs.c's logs_free: no two programs define one name. */
void agent_logs_free(struct logs *l);

#endif
