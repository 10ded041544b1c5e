#ifndef SHOAL_SCHEDULER_STORE_H
#define SHOAL_SCHEDULER_STORE_H

#include <stdint.h>

struct shoal_err;
struct sqlite3;

/*
 * The scheduler's durable state in SQLite (WAL) in its data dir. Writes happen on changes
 * (a node registers, a subnet is assigned), never per heartbeat: a heartbeat only touches
 * memory, so 10,000 nodes cost no disk I/O per second.
 */
struct store {
	struct sqlite3 *db;
};

/* A node's durable record. Strings are owned by the record. */
struct store_node {
	char *id;
	char *name;
	char *address;
	char *labels;       /* "k=v,k=v" */
	char *availability; /* "active" | "drain" */
	int64_t cpu_millis;
	int64_t memory_bytes;
	int subnet_index; /* index of the node's /24 in the cluster CIDR */
	int64_t created_ms;
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

/* Small key/value settings (cluster CIDR, ...): value malloc'd or NULL when absent. */
char *store_meta_get(struct store *s, const char *key, struct shoal_err *err);
int store_meta_put(struct store *s, const char *key, const char *value, struct shoal_err *err);

#endif
