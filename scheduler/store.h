#ifndef SHOAL_SCHEDULER_STORE_H
#define SHOAL_SCHEDULER_STORE_H

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

struct store {
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

int store_open(struct store *s, const char *path, struct shoal_err *err);
void store_close(struct store *s);

/* Insert or replace a node record (keyed by id). */
int store_node_put(struct store *s, const struct store_node *n, struct shoal_err *err);

/* Call fn for every stored node, in name order. fn borrows the record. */
int store_node_each(struct store *s, void (*fn)(const struct store_node *n, void *arg), void *arg,
                    struct shoal_err *err);

int store_node_delete(struct store *s, const char *id, struct shoal_err *err);

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

int store_service_put(struct store *s, const struct store_service *sv, struct shoal_err *err);
/*
 * Write rows and commit them before returning, in a transaction of their own (the open batch
 * is committed first): for changes a client is told about, which must survive a crash or power
 * loss once acknowledged. On failure nothing of rows is stored and the error says why.
 */
int store_service_put_now(struct store *s, const struct store_service *rows, size_t n,
                          struct shoal_err *err);
int store_service_delete(struct store *s, const char *name, struct shoal_err *err);
int store_service_each(struct store *s, void (*fn)(const struct store_service *sv, void *arg),
                       void *arg, struct shoal_err *err);

/*
 * The manifest digest a service version is pinned to. Put keeps an existing pin (the first
 * one wins) and drops the service's pins of versions other than version and keep.
 */
int store_pin_put(struct store *s, const char *service, uint64_t version, const char *digest,
                  uint64_t keep, struct shoal_err *err);
int store_pin_each(struct store *s,
                   void (*fn)(const char *service, uint64_t version, const char *digest, void *arg),
                   void *arg, struct shoal_err *err);

int store_task_put(struct store *s, const struct store_task *t, struct shoal_err *err);
int store_task_delete(struct store *s, const char *id, struct shoal_err *err);
int store_task_each(struct store *s, void (*fn)(const struct store_task *t, void *arg), void *arg,
                    struct shoal_err *err);

/*
 * Batch writes: the first write after store_tx_begin opens a transaction that
 * store_tx_commit closes. The scheduler commits once per event-loop pass, so a burst of
 * 10,000 task changes costs one fsync, not 10,000.
 */
int store_tx_begin(struct store *s, struct shoal_err *err);
int store_tx_commit(struct store *s, struct shoal_err *err);

/* Small key/value settings (cluster CIDR, ...): value malloc'd or NULL when absent. */
char *store_meta_get(struct store *s, const char *key, struct shoal_err *err);
int store_meta_put(struct store *s, const char *key, const char *value, struct shoal_err *err);

#endif
