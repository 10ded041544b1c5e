#ifndef SHOAL_SCHEDULER_SERVER_T_H
#define SHOAL_SCHEDULER_SERVER_T_H

/* The scheduler daemon's types (server.h has its functions): every module that reads the
 * server's state includes this, only server.c and main.c the functions. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "endpoints-t.h"
#include "events.h"
#include "nodes.h"
#include "prom.h"
#include "rpc.h"
#include "service-t.h"
#include "store-t.h"
#include "task-t.h"

struct event_base;
struct evconnlistener;
struct event;
struct log_relay;
struct evstream_client;
struct admit;
struct shoal_err;
struct sched_http;
struct ha;
struct pass_commit;

/* One accepted connection: an agent's session or a short CLI call. */
struct sched_conn {
	struct sched_server *srv;
	struct rpc_conn *rpc;
	struct node *node;  /* set once an agent registered on this connection */
	uint32_t new_names; /* names unknown to the registry it tried to register */
	uint32_t refused;   /* its Registers refused (past a few: short answers) */
	/* The peer's address, and whether it still counts in srv->admit (its handshake is not
	 * done). */
	struct sockaddr_storage src;
	bool unauth;
	struct sched_conn *prev, *next;
};

struct sched_options {
	const char *data_dir;
	const char *listen;       /* "ADDR:PORT", default ":7100" */
	const char *cluster_cidr; /* default 10.244.0.0/16 */
	uint32_t heartbeat_ms;    /* default 1000 */
	uint32_t max_heartbeats;  /* a second, from all nodes (0 = NODES_MAX_HEARTBEATS) */
	bool no_heartbeat_cap;    /* --max-heartbeats 0: the interval never grows */
	bool no_routes;           /* container subnets are routed by the network itself */
	double join_rate;         /* new node names a second; 0 = NODES_JOIN_RATE */
	const char *http;         /* status page and /metrics: "ADDR:PORT", "off" or NULL */
	/* Several schedulers (ha.h): "etcd://H:P,..." (NULL or "sqlite": SQLite in data_dir),
	 * the keys' prefix, TLS files, the address clients are sent to (default: --listen's,
	 * the host name for a wildcard), the lease TTL (0: default) and the command line to
	 * restart with when deposed. */
	const char *store;
	const char *store_prefix;
	const char *etcd_cacert, *etcd_cert, *etcd_key;
	const char *advertise;
	int64_t lease_ttl_s;
	char *const *argv;
};

/* The scheduler daemon's state: the only mutable global, owner of everything below. */
struct sched_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *cron; /* periodic work (serverCron): liveness, later reconcile */
	struct event *sig_term;
	struct event *sig_int;
	struct store store;     /* SQLite in data_dir/state.db */
	struct nodes nodes;     /* registry, mirrored in store */
	struct rpc_identity id; /* signing key and role tokens (secret) */
	struct rpc_limits limits;
	/* Admission, before any work is spent on a connection: the caps on unauthenticated
	 * connections (admit.h); the timer that resumes accepting after an EMFILE pause; an fd
	 * held open so that a full table can still shed one waiting connection; the fd limit
	 * and the connections open against it (each one fd). */
	struct admit *admit;
	struct event *accept_pause;
	int reserve_fd;
	uint64_t nofile;
	size_t nconns;
	struct sched_conn *conns;    /* every open connection */
	struct services services;    /* desired state, mirrored in store */
	struct task_map tasks;       /* every known task by id (borrowed from services) */
	struct event *pass;          /* deferred reconcile pass, activated once per iteration */
	struct service **dirty_svcs; /* services to reconcile in the pass */
	size_t ndirty_svcs, capdirty_svcs;
	struct node **dirty_nodes; /* nodes to send Assignments in the pass */
	size_t ndirty_nodes, capdirty_nodes;
	int64_t dirty_nodes_since; /* monotonic ms the oldest dirty node was marked */
	/* Pass commits not completed yet (etcd: in flight), oldest first: each holds the nodes
	 * it sends Assignments to once durable; a node removed meanwhile is cleared from them
	 * (reconcile_commits_forget). */
	struct pass_commit *commits;
	uint64_t commits_made; /* every node's commit_seq is one of them */
	bool committing;       /* in reconcile_flush's commit: a callback now is in the pass */
	int64_t tx_since;      /* monotonic ms the open store transaction began */
	struct task *
	    *dirty_tasks; /* tasks whose row the pass writes (once, however often marked) */
	size_t ndirty_tasks, capdirty_tasks;
	int64_t next_tick;          /* monotonic ms of the next 1 s reconcile tick */
	int64_t next_expire;        /* monotonic ms admission forgets idle sources next */
	int64_t started;            /* monotonic ms the scheduler started */
	struct log_relay *relays;   /* `shoal logs` requests being relayed */
	struct endpoints endpoints; /* the proxies' table, its generation, the drains */
	/* The event stream (`shoal events`, rollout progress, the status page), and the
	 * `shoal events` requests streaming from it. */
	struct events events;
	struct evstream_client *evstreams;
	uint64_t next_relay_id;
	uint32_t heartbeat_ms;   /* interval handed to agents, with few of them */
	uint32_t max_heartbeats; /* a second: with more nodes the interval grows (0: no cap) */
	bool no_routes;          /* send no node list: the network routes container subnets */
	char *data_dir;
	struct sched_http *http;       /* the status page and /metrics (http.c), NULL if off */
	struct prom_hist pass_seconds; /* how long reconcile passes held the loop */
	struct ha *ha;                 /* several schedulers on etcd (ha.h); NULL: SQLite */
	char *advertise;               /* "H:P" clients are told to use for this scheduler */
	const char *leader_id;         /* "" (SQLite) or this scheduler's id as a contender */
};

#endif
