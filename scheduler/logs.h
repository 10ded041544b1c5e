#ifndef SHOAL_SCHEDULER_LOGS_H
#define SHOAL_SCHEDULER_LOGS_H

#include <stdint.h>

struct sched_conn;
struct sched_server;
struct rpc_conn;
typedef struct Shoal__Envelope Shoal__Envelope;

/*
 * `shoal logs` relay: the CLI talks only to the scheduler, the logs live on the nodes. A
 * request is forwarded to the agent of each task it names (one relay per task); chunks come
 * back with the relay's id and go to the CLI under its own request id, the last one marked
 * eof once every relay of that request has ended.
 */
struct log_relay {
	uint64_t agent_id;      /* the forwarded request's id on the agent's session */
	struct rpc_conn *agent; /* borrowed; NULLed when the session closes */
	struct sched_conn *cli; /* borrowed; the relay goes with it */
	uint64_t cli_id;
	struct log_relay *next;
};

/* A LogsRequest from the CLI. */
void logs_start(struct sched_conn *cli, const Shoal__Envelope *env);
/* A LogChunk from an agent. */
void logs_chunk(struct sched_conn *agent, const Shoal__Envelope *env);
/* A connection closed: end its relays (and cancel follows on the agents). */
void logs_conn_closed(struct sched_server *srv, struct sched_conn *sc);
void logs_free(struct sched_server *srv);

#endif
