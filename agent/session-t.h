#ifndef SHOAL_AGENT_SESSION_T_H
#define SHOAL_AGENT_SESSION_T_H

/* The types of session.h (a types header: the structs others embed). */

#include <stdint.h>

#include "nodekey.h"
#include "schedlist.h"

struct agent_server;
struct event;
struct rpc_conn;

enum session_state {
	SESSION_IDLE,        /* waiting for the back-off timer */
	SESSION_CONNECTING,  /* TCP connect and handshake */
	SESSION_REGISTERING, /* Register sent, waiting for RegisterReply */
	SESSION_READY,       /* registered, heartbeating */
};

struct session {
	struct agent_server *agent;
	enum session_state state;
	struct rpc_conn *conn;
	struct event *retry;     /* back-off timer */
	struct event *heartbeat; /* one-shot, re-armed with jitter each beat */
	int64_t backoff_ms;
	uint64_t next_id;
	uint64_t register_id;
	char node_id[16];
	char subnet[32];
	uint32_t heartbeat_ms;
	uint64_t endpoints_gen; /* last Endpoints applied (acknowledged in heartbeats) */
	int failures;           /* consecutive failed attempts (for quiet logging) */
	struct nodekey key;     /* this node's identity, proven in every Register (secret) */
	char where[SCHEDLIST_ADDR_MAX]; /* the scheduler of this attempt or session */
};

#endif
