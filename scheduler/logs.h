#ifndef SHOAL_SCHEDULER_LOGS_H
#define SHOAL_SCHEDULER_LOGS_H

#include <stdbool.h>
#include <stdint.h>

struct sched_conn;
struct sched_server;
struct rpc_conn;
struct task;
typedef struct Shoal__Envelope Shoal__Envelope;

/*
 * `shoal logs` and `shoal exec` relay: the CLI talks only to the scheduler, the logs (and
 * the containers) live on the nodes. A
 * request is forwarded to the agent of each task it names (one relay per task); chunks come
 * back with the relay's id and go to the CLI under its own request id, the last one marked
 * eof once every relay of that request has ended.
 */
struct log_relay {
	uint64_t agent_id;      /* the forwarded request's id on the agent's session */
	struct rpc_conn *agent; /* borrowed; NULLed when the session closes */
	struct sched_conn *cli; /* borrowed; the relay goes with it */
	uint64_t cli_id;
	/* A follow of a whole service also watches for its tasks that start later: this entry
	 * (agent NULL) keeps the request open and names the service (owned) and the options. */
	char *watch;
	char task_id[13]; /* the task relayed ("" for the watch) */
	bool timestamps;
	bool exec; /* a `shoal exec` (ExecOutput frames), not logs */
	struct log_relay *next;
};

/* A LogsRequest from the CLI. */
void logs_start(struct sched_conn *cli, const Shoal__Envelope *env);
/* A LogChunk from an agent. */
void logs_chunk(struct sched_conn *agent, const Shoal__Envelope *env);
/* A connection closed: end its relays (and cancel follows on the agents). */
void logs_conn_closed(struct sched_server *srv, struct sched_conn *sc);
void logs_free(struct sched_server *srv);
/* `shoal exec`: an ExecRequest from the CLI goes to the agent of the running task it names;
 * the ExecOutput frames come back through logs_exec_output, the last carries the status. */
void logs_exec_start(struct sched_conn *cli, const Shoal__Envelope *env);
void logs_exec_output(struct sched_conn *agent, const Shoal__Envelope *env);
/* -i/-t: the CLI's ExecInput for its running exec goes to the agent as that exec's. */
void logs_exec_input(struct sched_conn *cli, const Shoal__Envelope *env);
/* A task is running: follows of its service that started before it relay it too. */
void logs_task_running(struct sched_server *srv, struct task *t);

#endif
