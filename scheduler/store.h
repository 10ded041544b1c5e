#ifndef SHOAL_SCHEDULER_STORE_H
#define SHOAL_SCHEDULER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store-t.h"

int store_open(struct store *s, const char *path, struct shoal_err *err);
/* The etcd back end on client e (borrowed, must outlive the store), keys under prefix. */
int store_open_etcd(struct store *s, struct etcd *e, const char *prefix, struct shoal_err *err);
void store_close(struct store *s);

/* Insert or replace a node record (keyed by id). */
int store_node_put(struct store *s, const struct store_node *n, struct shoal_err *err);

/* Call fn for every stored node, in name order. fn borrows the record. */
int store_node_each(struct store *s, void (*fn)(const struct store_node *n, void *arg), void *arg,
                    struct shoal_err *err);

int store_node_delete(struct store *s, const char *id, struct shoal_err *err);

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
/*
 * Commit, and call done once (never before this call has queued the writes) when what
 * depends on them may go out: done(NULL) once they are durable, done(err) when they are lost
 * (act on nothing then). SQLite: synchronous, done(NULL) before returning, whatever the
 * commit's outcome (returned here as by store_tx_commit; the scheduler goes on from memory as
 * it always has). etcd: asynchronous (store_etcd_tx_commit_async): commits complete and call
 * back in the order they were made; a lost one calls the fenced hook (step down), and its
 * done and every later one's get the error. -1 with err when the commit failed at once (done
 * has run too).
 */
int store_tx_commit_then(struct store *s, void (*done)(const struct shoal_err *err, void *arg),
                         void *arg, struct shoal_err *err);

/* Small key/value settings (cluster CIDR, ...): value malloc'd or NULL when absent. */
char *store_meta_get(struct store *s, const char *key, struct shoal_err *err);
int store_meta_put(struct store *s, const char *key, const char *value, struct shoal_err *err);

#endif
