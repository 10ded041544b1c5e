#ifndef SHOAL_SCHEDULER_LEADER_H
#define SHOAL_SCHEDULER_LEADER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Leader election among schedulers on an etcd lease. Each contender holds a lease (TTL, kept
 * alive every TTL/3) and tries to create PREFIX/leader with it in a transaction that succeeds
 * only while the key is absent (create_revision == 0); the key holds {"id","address"} of the
 * winner. The key's create revision is the leader's fencing token: every write the leader makes
 * compares create_revision(PREFIX/leader) == token and value == its own, so a leader that was
 * deposed and has not noticed yet cannot overwrite its successor (leader_fence_cmp).
 *
 * Contenders watch the key: a deletion (the leader's lease expired or was revoked) makes them
 * run at once; a periodic retry covers a broken watch. A leader that has not renewed its lease
 * for TTL (less a margin for clock rates) steps down by itself, even with etcd unreachable:
 * its lease may be gone and a successor elected.
 */

struct event_base;
struct etcd;
struct etcd_cmp;
struct etcd_txn;
struct etcd_req;
struct etcd_txn_result;
struct shoal_err;
struct leader;

struct leader_config {
	const char *prefix;  /* "/shoal/": the key is PREFIX + "leader" */
	const char *id;      /* this scheduler's id */
	const char *address; /* where clients reach it ("H:P") */
	int64_t ttl_s;       /* lease TTL (0: 5 s) */
};

/* Called from the event loop; every pointer is borrowed for the call. A callback must not
 * free the leader (leader_free): defer that to the loop. */
struct leader_ops {
	/* This contender leads from now on; fence is the leader key's create revision. */
	void (*elected)(int64_t fence, void *arg);
	/* It does not any more (why says why); stop acting at once. */
	void (*deposed)(const char *why, void *arg);
	/* Who leads as far as this contender knows ("" and "" when nobody). */
	void (*leader_is)(const char *id, const char *address, void *arg);
};

/* A contender; nothing happens before leader_start. Borrows e and base; copies cfg. */
struct leader *leader_new(struct etcd *e, struct event_base *base, const struct leader_config *cfg,
                          const struct leader_ops *ops, void *arg, struct shoal_err *err);
void leader_start(struct leader *l);
/* Give leadership up at once: revoke the lease (blocking, bounded by the etcd timeout), so a
 * successor need not wait for the TTL. For a clean shutdown. */
void leader_resign(struct leader *l);
void leader_free(struct leader *l);

/* Renew the lease now, blocking, when a third of the TTL passed since the last renewal: for
 * a leader inside a long synchronous etcd commit, whose loop cannot run the keepalive timer.
 * -1 when the renewal failed (nothing changes then). */
int leader_renew_sync(struct leader *l);

/* True while this contender leads and its lease is known to be alive (checked against the
 * local deadline now, not only when the step-down timer fires). */
int leader_is_leader(const struct leader *l);
int64_t leader_fence(const struct leader *l);
const char *leader_key(const struct leader *l);
/* The leader key's value this contender writes. */
const char *leader_value(const struct leader *l);

/* The two compares that fence a write: create_revision(key) == fence and value(key) == value.
 * cmp (two entries) borrows key and value. */
void leader_fence_cmp(struct etcd_cmp *cmp, const char *key, int64_t fence, const char *value);

/* A transaction fenced by this contender's leadership: t's compares plus the fence. A refused
 * fence comes back as a result with succeeded 0 (and t's failure ops). NULL with err when this
 * contender does not lead. */
struct etcd_req *leader_fenced_txn(struct leader *l, const struct etcd_txn *t,
                                   void (*cb)(const struct etcd_txn_result *r,
                                              const struct shoal_err *err, void *arg),
                                   void *arg, struct shoal_err *err);

/* Encode / decode the leader key's value. leader_value_parse fills id/address ("" when the
 * value is not ours to read); returns -1 for a malformed value. */
char *leader_value_encode(const char *id, const char *address);
int leader_value_parse(const char *value, char *id, size_t idlen, char *address, size_t addrlen);

#endif
