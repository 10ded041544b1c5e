#ifndef SHOAL_SCHEDULER_STORE_T_H
#define SHOAL_SCHEDULER_STORE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How long a write waits for a lock another process holds before it fails (ms). */
#define STORE_BUSY_TIMEOUT_MS 100

struct shoal_err;
struct sqlite3;

/*
 * The scheduler's durable state in SQLite (WAL) in its data dir. Writes happen on changes
 * (a node registers, a subnet is assigned), never per heartbeat: a heartbeat only touches
 * memory, so 10,000 nodes cost no disk I/O per second.
 */
struct sqlite3_stmt;

struct store_etcd;
struct etcd;

/*
 * Two back ends behind one API: SQLite (the default, one scheduler) or etcd (several
 * schedulers, one leading: store_etcd.h). Every function below dispatches on etcd.
 */
struct store {
	struct store_etcd *etcd; /* non-NULL: the etcd back end, db unused */
	/* etcd: called when a write was refused because another scheduler leads, or an
	 * asynchronous commit was lost (why): stop acting. */
	void (*fenced)(const char *why, void *arg);
	void *fenced_arg;
	struct sqlite3 *db;
	int in_tx;                     /* a transaction is open */
	struct sqlite3_stmt *task_put; /* prepared once: the hot statements */
	struct sqlite3_stmt *task_delete;
};

/* A node's durable record. Strings are owned by the record. */
struct store_node {
	char *id;
	char *name;
	char *address;
	char *labels;       /* "k=v,k=v": the agent's */
	char *admin_labels; /* "k=v,k=v": set by `shoal node update` (NULL read as "") */
	char *availability; /* "active" | "drain" */
	int64_t cpu_millis;
	int64_t memory_bytes;
	int subnet_index; /* index of the node's /24 in the cluster CIDR */
	int64_t created_ms;
	char *node_key; /* hex of its Ed25519 public key, "" while not bound yet */
};

/* Free a node record's strings (both back ends fill records: it goes with the type). */
void store_node_clear(struct store_node *n);

/* A service's durable record. Strings borrowed by store_service_put, owned in each(). */
struct store_service {
	char *name;
	char *spec_json;
	char *prev_spec_json; /* may be NULL */
	uint64_t version;
	uint64_t prev_version;
	int64_t created_ms;
	int64_t updated_ms;
	int removed;
	char *update_state; /* its text as listed, may be NULL */
	/* The update's state as a type (numbered as enum update_state) and why it paused or
	 * rolled back. update_typed false: a row that has only the text above (written by an
	 * older scheduler after the migration; store.c converts the rows it finds at open). */
	bool update_typed;
	int update_kind;
	char *update_message; /* may be NULL */
};

/* A task's durable record: identity and desired state; observed state is re-learnt from the
 * agents, so status reports cost no write. */
struct store_task {
	char *id;
	char *service;
	uint32_t slot;
	uint64_t version;
	char *node_id; /* "" while pending */
	int desired;   /* enum task_desired */
	int role;      /* 0 = slot's current task, 1 = its replacement, 2 = stopping */
	uint32_t restarts;
	int64_t created_ms;
	char *name;
};

#endif
