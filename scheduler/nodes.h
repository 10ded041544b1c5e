#ifndef SHOAL_SCHEDULER_NODES_H
#define SHOAL_SCHEDULER_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
};

enum node_status { NODE_DOWN = 0, NODE_READY = 1, NODE_UNKNOWN = 2 };

struct node {
	char id[16]; /* 12 hex chars, stable across re-registrations */
	char *name;
	char *address;
	char *labels; /* "k=v,k=v" as the agent sent them */
	bool drain;   /* availability: drain keeps new tasks off */
	enum node_status status;
	int64_t cpu_millis; /* capacity */
	int64_t memory_bytes;
	int64_t used_cpu_millis; /* last heartbeat's usage */
	int64_t used_memory_bytes;
	uint32_t ntasks;             /* tasks bound here (live or stopping) */
	int64_t reserved_cpu_millis; /* sum of bound tasks' reservations */
	int64_t reserved_memory_bytes;
	uint32_t scratch;         /* per-pass counter for placement (tasks of one service) */
	bool dirty;               /* its task set changed: send Assignments */
	uint64_t assign_gen;      /* generation of the last Assignments sent */
	uint64_t endpoints_acked; /* the last Endpoints generation it applied */
	struct task *tasks;       /* bound tasks (task.node_next list) */
	struct node_stat *pstats; /* its proxy counters */
	size_t npstats;
	int subnet_index;   /* which /24 of the cluster CIDR */
	int64_t created_ms; /* wall clock of first registration */
	int64_t last_seen;  /* monotonic ms of the last message */
	int64_t last_seen_wall;
	struct rpc_conn *conn;  /* the live session, NULL while disconnected (borrowed) */
	int64_t refused_log_ms; /* monotonic ms of the last "refused a task status" line */
	uint32_t refused_quiet; /* refusals since that line, not logged one by one */
};

struct nodes {
	struct node **v; /* sorted by name */
	size_t n, cap;
	uint32_t cidr_base;   /* cluster CIDR network address, host order */
	int cidr_prefix;      /* 8..24 */
	uint8_t *subnet_used; /* one byte per /24 in the CIDR */
	size_t nsubnets;
};

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
 * record is persisted. Returns the node (owned by the registry).
 */
struct node *nodes_register(struct nodes *ns, struct store *st, const char *name,
                            const char *address, const char *labels, int64_t cpu_millis,
                            int64_t memory_bytes, struct shoal_err *err);

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

/* Write n's durable record (availability, capacity, ...). */
int nodes_persist(struct store *st, const struct node *n, struct shoal_err *err);

/* Replace n's proxy counters. */
void nodes_set_stats(struct node *n, struct node_stat *v, size_t count);

/* Format the node's subnet as CIDR text into buf. */
char *nodes_subnet(const struct nodes *ns, const struct node *n, char *buf, size_t len);

/*
 * Mark nodes whose last message is older than timeout_ms as down; fn is called once for
 * each node that changes to down. Returns how many changed.
 */
size_t nodes_expire(struct nodes *ns, int64_t now, int64_t timeout_ms,
                    void (*fn)(struct node *n, void *arg), void *arg);

#endif
