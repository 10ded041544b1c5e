#ifndef SHOAL_SCHEDULER_STORE_ETCD_H
#define SHOAL_SCHEDULER_STORE_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "scheduler/store-t.h"

/*
 * The scheduler's durable state in etcd: the operations of store.h (same signatures, prefix
 * store_etcd_) so that a table of functions can stand in front of both. Keys under one prefix:
 *   PREFIX nodes/ID       PREFIX services/NAME      PREFIX tasks/ID
 *   PREFIX pins/SERVICE/VERSION (20 digits, so that keys sort by version)
 *   PREFIX meta/KEY
 * Rows are compact JSON objects of the SQLite columns (store_etcd_row.h; pins and meta: the
 * bare value).
 *
 * Every write is a transaction fenced by the leader key (leader_fence_cmp): once another
 * scheduler leads, this one's writes fail with "no longer the leader". Writes between
 * store_etcd_tx_begin and _commit are queued and sent at commit as transactions of at most
 * STORE_ETCD_TXN_OPS operations (etcd's --max-txn-ops default is 128, and a nested
 * transaction, as a pin's, must fit in what its parent leaves: 127) and ~1 MiB (its
 * --max-request-bytes is 1.5 MiB); a queued op on a key an earlier op of the same transaction
 * touches (etcd refuses duplicate keys in one txn) also starts a new one. Each transaction is
 * atomic, a batch of several is not: a failure part-way leaves the earlier ones applied. Every
 * one is fenced by the same leadership, so a part-applied batch is the leader's own state half
 * written, as if it had crashed between two loop passes: a successor rebuilds from etcd and
 * the agents' reports, and the retried writes are idempotent puts.
 *
 * Differences from SQLite: a put replaces the whole row (SQLite keeps a task's identity
 * columns and a node's or service's created_ms on conflict; the scheduler writes the same
 * values there anyway); uniqueness of node names and subnets is the caller's to keep. Reads
 * (each) are paged at one revision, so they are a consistent snapshot.
 */

#define STORE_ETCD_TXN_OPS   127
#define STORE_ETCD_TXN_BYTES (900u << 10)

struct etcd;
struct shoal_err;
struct store_etcd_op;
struct batch;

struct store_etcd {
	struct etcd *e;  /* borrowed */
	char *prefix;    /* "/shoal/" */
	char *fence_key; /* the leader key; NULL: no fence yet, writes refused */
	char *fence_value;
	int64_t fence; /* its create revision while this scheduler leads */
	int in_tx;
	struct store_etcd_op *ops; /* queued writes of the open transaction */
	/* Called between the transactions of a synchronous commit (may be NULL): a commit of
	 * many transactions holds the loop, and the leader's lease needs renewing meanwhile. */
	void (*between)(void *arg);
	void *between_arg;
	size_t nops, capops;
	/* Asynchronous commits, oldest first: only the head is being sent. */
	struct batch *head, *tail;
	/* Called once when an asynchronous commit fails (etcd's error, or refused by the
	 * fence): its writes and those of every commit queued behind it are lost, and the
	 * scheduler must stop acting (may be NULL). Later commits are refused with err. */
	void (*on_lost)(const struct shoal_err *err, void *arg);
	void *lost_arg;
	int lost;
	struct shoal_err lost_err;
};

int store_etcd_open(struct store_etcd *s, struct etcd *e, const char *prefix,
                    struct shoal_err *err);
void store_etcd_close(struct store_etcd *s);

/* Fence every later write by the leader key: key's create_revision == fence and its value ==
 * value (leader.h). fence 0 clears it: writes fail until the next election. */
void store_etcd_set_fence(struct store_etcd *s, const char *key, int64_t fence, const char *value);

int store_etcd_node_put(struct store_etcd *s, const struct store_node *n, struct shoal_err *err);
int store_etcd_node_each(struct store_etcd *s, void (*fn)(const struct store_node *n, void *arg),
                         void *arg, struct shoal_err *err);
int store_etcd_node_delete(struct store_etcd *s, const char *id, struct shoal_err *err);

int store_etcd_service_put(struct store_etcd *s, const struct store_service *sv,
                           struct shoal_err *err);
int store_etcd_service_put_now(struct store_etcd *s, const struct store_service *rows, size_t n,
                               struct shoal_err *err);
int store_etcd_service_delete(struct store_etcd *s, const char *name, struct shoal_err *err);
int store_etcd_service_each(struct store_etcd *s,
                            void (*fn)(const struct store_service *sv, void *arg), void *arg,
                            struct shoal_err *err);

int store_etcd_pin_put(struct store_etcd *s, const char *service, uint64_t version,
                       const char *digest, uint64_t keep, struct shoal_err *err);
int store_etcd_pin_each(struct store_etcd *s,
                        void (*fn)(const char *service, uint64_t version, const char *digest,
                                   void *arg),
                        void *arg, struct shoal_err *err);

int store_etcd_task_put(struct store_etcd *s, const struct store_task *t, struct shoal_err *err);
int store_etcd_task_delete(struct store_etcd *s, const char *id, struct shoal_err *err);
int store_etcd_task_each(struct store_etcd *s, void (*fn)(const struct store_task *t, void *arg),
                         void *arg, struct shoal_err *err);

int store_etcd_tx_begin(struct store_etcd *s, struct shoal_err *err);
/* Blocking: for startup and tools. */
int store_etcd_tx_commit(struct store_etcd *s, struct shoal_err *err);
/*
 * The loop's commit: takes the queued writes and sends them without blocking, up to 8
 * transactions in flight (a transaction cut for a shared key waits for every earlier one, so
 * a later write of a key always lands last); done runs once, from the loop (at once when nothing
 * is queued), with NULL or the
 * first error (later transactions are then not sent). The store may queue the next batch at
 * once. -1 with err (done not called) when this scheduler does not lead. The client (etcd) must
 * outlive the commit: etcd_free drops it without calling done.
 */
int store_etcd_tx_commit_async(struct store_etcd *s,
                               void (*done)(const struct shoal_err *err, void *arg), void *arg,
                               struct shoal_err *err);

/* 1 while asynchronous commits are queued or being sent. */
int store_etcd_tx_pending(const struct store_etcd *s);

char *store_etcd_meta_get(struct store_etcd *s, const char *key, struct shoal_err *err);
int store_etcd_meta_put(struct store_etcd *s, const char *key, const char *value,
                        struct shoal_err *err);

#endif
