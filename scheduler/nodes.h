#ifndef SHOAL_SCHEDULER_NODES_H
#define SHOAL_SCHEDULER_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nodekey.h"

struct shoal_err;
struct store;
struct rpc_conn;
struct Shoal__Label;

/*
 * The node registry: every node that ever registered, in memory, mirrored in the store on
 * each durable change. Liveness (ready/down) is memory only: it is re-learnt from
 * heartbeats after a restart, so a scheduler restart costs no write per node.
 */

/* UNKNOWN: loaded from the store after a restart, not heard from yet. It is not placed on,
 * but its tasks are not replaced either until it has had 3 intervals to come back. */
/* One line of a node's proxy counters (cumulative, as its last heartbeat said). */
struct node_stat {
	char *service;
	char *backend; /* "" for the service total */
	char *task_id;
	uint64_t connections, active, bytes_in, bytes_out, connect_failures, retries;
	uint64_t queue_len, queued, queue_wait_ms, queue_timeouts, busy_timeouts;
};

/* A published port the node's proxy cannot listen on, as its last heartbeat said. */
struct node_port {
	char *service;
	uint16_t port;
	int code;    /* errno: EADDRINUSE is "busy" */
	char *error; /* strerror(code) as the node wrote it */
};

enum node_status { NODE_DOWN = 0, NODE_READY = 1, NODE_UNKNOWN = 2 };

struct node {
	char id[16]; /* 12 hex chars, stable across re-registrations */
	char *name;
	char *address;
	char *labels; /* "k=v,k=v": the agent's merged with the admin's, what placement reads */
	char *agent_labels; /* "k=v,k=v" as the agent sent them (shoal-agent --label) */
	char *admin_labels; /* "k=v,k=v" set by `shoal node update`; they win */
	bool drain;         /* availability: drain keeps new tasks off */
	enum node_status status;
	int64_t cpu_millis; /* capacity */
	int64_t memory_bytes;
	int64_t used_cpu_millis; /* last heartbeat's usage */
	int64_t used_memory_bytes;
	uint32_t ntasks;             /* tasks bound here (live or stopping) */
	int64_t reserved_cpu_millis; /* sum of bound tasks' reservations */
	int64_t reserved_memory_bytes;
	uint32_t scratch; /* per-pass counter for placement (tasks of one service) */
	/* Placement's scratch too: the node's index in nodes.v (sorted by name), set by
	 * place_begin, so the spread's tie-break by name compares two integers, not two names,
	 * in each of the million heap steps of a big burst. */
	uint32_t name_rank;
	bool dirty;               /* its task set changed: send Assignments */
	uint64_t assign_gen;      /* generation of the last Assignments sent */
	uint64_t endpoints_acked; /* the last Endpoints generation it applied */
	struct task *tasks;       /* bound tasks (task.node_next list) */
	struct node_stat *pstats; /* its proxy counters */
	size_t npstats;
	struct node_port *ports; /* published ports its proxy cannot listen on now */
	size_t nports;
	int subnet_index;   /* which /24 of the cluster CIDR */
	int64_t created_ms; /* wall clock of first registration */
	int64_t last_seen;  /* monotonic ms of the last message */
	int64_t last_seen_wall;
	int64_t stalled_at_seen;       /* nodes.stalled_ms when last_seen was set */
	struct rpc_conn *conn;         /* the live session, NULL while disconnected (borrowed) */
	uint8_t key[NODEKEY_PK_BYTES]; /* its identity: only this key registers the name */
	bool has_key;           /* false for a node of an older store until it registers again */
	int64_t refused_log_ms; /* monotonic ms of the last "refused a task status" line */
	uint32_t refused_quiet; /* refusals since that line, not logged one by one */
	uint64_t commit_seq;    /* the pass commit whose completion sends its Assignments */
	bool keeps_specs;       /* its agent takes a spec it was sent once from a task it holds */
	uint32_t told_ms;       /* the heartbeat interval it was last told (0: none yet) */
	uint32_t expect_ms;     /* what its silence is judged by: told_ms, or the one before if
	                         * longer (its next heartbeat was timed by that one) */
};

/*
 * New names cost a /24 and a row for good, and any holder of the worker token may invent
 * them: a token bucket shared by all connections (they all hold the one worker token) lets
 * `rate` new names a second through after a `burst`, and a connection may try at most
 * per_conn names the registry does not know. Known names always pass.
 */
struct nodes_join_limit {
	double rate;       /* new names per second */
	double burst;      /* bucket size */
	uint32_t per_conn; /* unknown names one connection may try */
	double tokens;     /* what the bucket holds now */
	int64_t last_ms;   /* monotonic ms of the last refill */
	uint64_t refused;  /* refusals not logged yet (one line a second at most) */
	int64_t logged_ms; /* monotonic ms of the last refusal line */
};

#define NODES_JOIN_RATE     5.0
#define NODES_JOIN_BURST    50.0
#define NODES_JOIN_PER_CONN 4

/*
 * Bounds on what a node may claim, so that a worker cannot attract every task by inventing
 * a giant: a little above the largest single hosts sold today (HPE Superdome Flex: 896 cores,
 * 1,792 threads, 48 TiB), and as much as Linux's default NR_CPUS=8192 would allow.
 */
#define NODES_MAX_CPU_MILLIS   (8192LL * 1000)
#define NODES_MAX_MEMORY_BYTES (64LL << 40)

enum nodes_key_check {
	NODES_KEY_NEW,      /* no node of that name: it joins */
	NODES_KEY_MATCH,    /* the name's own key */
	NODES_KEY_UNBOUND,  /* a node of an older store without a key: bound now (TOFU) */
	NODES_KEY_MISMATCH, /* another key holds the name: refuse */
};

struct nodes {
	struct nodes_join_limit join; /* rate of new names */
	struct node **v;              /* sorted by name */
	size_t n, cap;
	uint32_t cidr_base;   /* cluster CIDR network address, host order */
	int cidr_prefix;      /* 8..24 */
	uint8_t *subnet_used; /* one byte per /24 in the CIDR */
	size_t nsubnets;
	int64_t restart_grace_ms; /* how long a node loaded at start has to come back */
	int64_t stalled_ms;       /* how long this scheduler's loop has been held up, in all */
	int64_t last_tick_ms;     /* monotonic ms of the last nodes_tick */
};

/*
 * A restarted scheduler gives every node it knows this long to register again before it
 * declares any down (Kubernetes' node-monitor grace period): an agent that lost the
 * scheduler notices at once (or after 5 silent heartbeats), then retries every 2 s at
 * most (agent/session.c). The 3-heartbeat down timer alone was shorter than that back-off,
 * so a restart replaced healthy replicas of nodes that were about to come back.
 */
#define NODES_RESTART_GRACE_MS 10000

/* The longest heartbeat interval a cap on the rate of heartbeats stretches to. */
#define NODES_HEARTBEAT_MAX_MS 60000

/* Heartbeats a second the scheduler takes at most by default (--max-heartbeats). */
#define NODES_MAX_HEARTBEATS 5000

/* Parse "10.244.0.0/16" into base and prefix (prefix 8..24). */
int nodes_parse_cidr(const char *cidr, uint32_t *base, int *prefix, struct shoal_err *err);

/* Initialise an empty registry for the cluster CIDR. */
int nodes_init(struct nodes *ns, const char *cidr, struct shoal_err *err);

/* Load every stored node (all start down until they heartbeat). */
int nodes_load(struct nodes *ns, struct store *st, struct shoal_err *err);

void nodes_free(struct nodes *ns);

struct node *nodes_find(struct nodes *ns, const char *name);
struct node *nodes_find_id(struct nodes *ns, const char *id);

/*
 * Register (or re-register) a node by name: a known name keeps its id and subnet; a new one
 * gets a fresh id and the lowest free /24. Capacity, address and labels are updated and the
 * record is persisted. key (NODEKEY_PK_BYTES, proven by the caller) is bound to a new name and
 * to a known one that has none; a known name with another key is refused and left as it was.
 * key NULL binds nothing (tests of other things). Returns the node (owned by the registry).
 */
struct node *nodes_register(struct nodes *ns, struct store *st, const char *name,
                            const char *address, const char *labels, int64_t cpu_millis,
                            int64_t memory_bytes, const uint8_t *key, struct shoal_err *err);

/* How name's binding relates to key (NODEKEY_PK_BYTES): see enum nodes_key_check. */
enum nodes_key_check nodes_check_key(struct nodes *ns, const char *name, const uint8_t *key);

/*
 * May a connection that already tried *conn_tries unknown names register one more, now
 * (monotonic ms)? 0 and counts it; -1 with err saying which limit refused.
 */
int nodes_join_admit(struct nodes_join_limit *l, int64_t now, uint32_t *conn_tries,
                     struct shoal_err *err);

/* Is this claim of capacity one a real host can make? -1 with err if not. */
int nodes_check_capacity(uint64_t cpu_millis, uint64_t memory_bytes, struct shoal_err *err);

/*
 * Forget n: its record, its subnet and its key binding go; the name can join anew with any
 * key. The caller has detached every task and connection from n first. Frees n.
 */
int nodes_remove(struct nodes *ns, struct store *st, struct node *n, struct shoal_err *err);

/*
 * Check a Register's labels against the caps of common/labels.h and join them "k=v,k=v" in
 * one linear pass. Returns the text (caller frees), or NULL with err naming the first label
 * that breaks a cap.
 */
char *nodes_labels_join(struct Shoal__Label *const *labels, size_t n, struct shoal_err *err);

/*
 * May node n report ip as a task's address? Yes for "" (no address in the report), for an
 * address in n's container /24 that the agent can lease (.2 to .254), and for n's own
 * address when the task runs on the host network. Anything else, loopback, link-local,
 * multicast or another node's /24 above all, would make every proxy in the cluster dial it:
 * -1 with err saying why.
 */
int nodes_check_task_ip(const struct nodes *ns, const struct node *n, bool host_network,
                        const char *ip, struct shoal_err *err);

/*
 * `shoal node update`: set (add, "KEY=VALUE") and remove (rm, "KEY") admin labels of n, all or
 * nothing, and persist them. An admin label wins over the agent's of the same key; removing
 * it shows the agent's again. A key only the agent sets cannot be removed here (its next
 * Register would bring it back): -1 saying so, as for a key n does not have at all. The
 * merged set is held to LABELS_MAX. The caller makes placement look again.
 */
int nodes_update_labels(struct store *st, struct node *n, char *const *add, size_t nadd,
                        char *const *rm, size_t nrm, struct shoal_err *err);

/* The labels placement reads: agent's with admin's over them ("k=v,k=v"; caller frees). The
 * agent's that do not fit beside the admin's under LABELS_MAX are left out. */
char *nodes_labels_merge(const char *agent, const char *admin);

/* Write n's durable record (availability, capacity, ...). */
int nodes_persist(struct store *st, const struct node *n, struct shoal_err *err);

/* Replace n's proxy counters. */
void nodes_set_stats(struct node *n, struct node_stat *v, size_t count);

/* Replace n's ports that cannot listen (takes v). */
void nodes_set_ports(struct node *n, struct node_port *v, size_t count);

/* "port 9300 busy on node1: Address already in use", one line for every node that cannot
 * listen on a port of service (NULL: any service), ready nodes only, by node name; *count.
 * Free with nodes_port_errors_free. */
char **nodes_port_errors(const struct nodes *ns, const char *service, size_t *count);
void nodes_port_errors_free(char **v, size_t count);

/* Format the node's subnet as CIDR text into buf. */
char *nodes_subnet(const struct nodes *ns, const struct node *n, char *buf, size_t len);

/*
 * Mark nodes silent for longer than 3 of their heartbeat intervals (expect_ms; timeout_ms
 * for one not told any) as down; fn is called once for each node that changes to down. A
 * node not heard from since this scheduler started (NODE_UNKNOWN) has ns->restart_grace_ms
 * instead, if longer. Returns how many changed.
 */
size_t nodes_expire(struct nodes *ns, int64_t now, int64_t timeout_ms,
                    void (*fn)(struct node *n, void *arg), void *arg);

/*
 * The heartbeat interval to tell agents: base_ms, or longer where the nodes would otherwise
 * send more than max_rate heartbeats a second (0: no cap), as Nomad's
 * max_heartbeats_per_second does. At 10,000 nodes a heartbeat a second took a third of the
 * scheduler's core while idle; a big cluster trades failure detection (3 intervals) for it.
 */
uint32_t nodes_heartbeat_ms(const struct nodes *ns, uint32_t base_ms, uint32_t max_rate);

/* n is told to heartbeat every ms from now on. */
void nodes_told(struct node *n, uint32_t ms);

/* A message from n arrived now (monotonic ms): it is alive. */
void nodes_seen(struct nodes *ns, struct node *n, int64_t now);

/*
 * Called by a timer every period_ms: a tick that comes late means the loop was held up (a long
 * pass, a burst of registrations) and read nothing meanwhile. That time does not count as a
 * node's silence in nodes_expire: its heartbeat may be sitting unread in our socket buffer.
 */
void nodes_tick(struct nodes *ns, int64_t now, int64_t period_ms);

#endif
