#ifndef SHOAL_SCHEDULER_ETCD_H
#define SHOAL_SCHEDULER_ETCD_H

#include <stddef.h>
#include <stdint.h>

/*
 * A client of etcd v3's JSON gateway (etcd 3.4 serves it under /v3/; keys and values travel
 * base64 in JSON, 64-bit numbers as strings) over libcurl and jansson. Two faces:
 *
 *   - asynchronous, for the scheduler's one libevent loop: requests run on a curl multi
 *     handle whose sockets and timer are libevent events (curl's multi-event.c pattern), and
 *     a callback gets the parsed result; nothing blocks the loop;
 *   - synchronous (etcd_sync_*), for startup, tools and tests: one blocking request.
 *
 * Endpoints come as "etcd://H1:2379,H2:2379" (http, or https when a CA or client certificate
 * is configured). A request that cannot connect, or times out, moves on to the next endpoint;
 * every attempt is bounded by the timeout, so with etcd unreachable or without quorum a request
 * fails within endpoints x timeout, never hangs. Errors carry etcd's own message.
 *
 * Replies are parsed defensively: a broken or hostile endpoint gets an error, never a crash.
 * The module is split along its seam: etcd.c is the transport, etcd_json.c the encoding.
 */

struct event_base;
struct shoal_err;
struct etcd;
struct etcd_req;
typedef struct json_t json_t;

struct etcd_config {
	const char *endpoints;      /* "etcd://H:P,H:P" (also http:// or https:// per item) */
	const char *cacert;         /* PEM CA bundle, or NULL */
	const char *cert;           /* PEM client certificate, or NULL */
	const char *key;            /* PEM client key, or NULL */
	int64_t timeout_ms;         /* per attempt of a unary request (0: 2000) */
	int64_t connect_timeout_ms; /* (0: 1000) */
};

/* One key/value as etcd returns it. key and value are NUL-terminated copies (value may hold
 * binary bytes: value_len says how many). */
struct etcd_kv {
	char *key;
	char *value;
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease;
};

struct etcd_range {
	int64_t revision; /* the store's revision the range was read at */
	struct etcd_kv *kvs;
	size_t n;
	int64_t count; /* keys in the range (may exceed n when limited) */
	int more;      /* a limit left keys out */
};

enum etcd_cmp_target {
	ETCD_CMP_CREATE, /* create_revision (0: the key is absent) */
	ETCD_CMP_MOD,    /* mod_revision */
	ETCD_CMP_VERSION,
	ETCD_CMP_VALUE,
};

enum etcd_cmp_result {
	ETCD_EQUAL,
	ETCD_NOT_EQUAL,
	ETCD_GREATER,
	ETCD_LESS,
};

/* A compare of a transaction; strings are borrowed. */
struct etcd_cmp {
	const char *key;
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	int64_t revision;  /* CREATE, MOD, VERSION */
	const char *value; /* VALUE */
	size_t value_len;
};

enum etcd_op_kind {
	ETCD_OP_PUT,
	ETCD_OP_DELETE,
	ETCD_OP_RANGE,
	ETCD_OP_TXN, /* nested transaction (etcd >= 3.3) */
};

struct etcd_txn;

/* An operation of a transaction; strings are borrowed. */
struct etcd_op {
	enum etcd_op_kind kind;
	const char *key;
	const char *range_end; /* DELETE/RANGE over [key, range_end), or NULL */
	int prefix;            /* DELETE/RANGE every key starting with key (range_end unused) */
	const char *value;     /* PUT */
	size_t value_len;
	int64_t lease;              /* PUT: attach to this lease (0: none) */
	const struct etcd_txn *txn; /* TXN */
};

struct etcd_txn {
	const struct etcd_cmp *cmp;
	size_t ncmp;
	const struct etcd_op *success;
	size_t nsuccess;
	const struct etcd_op *failure;
	size_t nfailure;
};

/* The result of one operation of the branch a transaction took. */
struct etcd_op_result {
	enum etcd_op_kind kind;
	struct etcd_range range; /* RANGE */
	int64_t deleted;         /* DELETE */
	int succeeded;           /* TXN (nested results are not kept) */
};

struct etcd_txn_result {
	int succeeded;
	int64_t revision;
	struct etcd_op_result *ops;
	size_t n;
};

enum etcd_event_type {
	ETCD_EVENT_PUT,
	ETCD_EVENT_DELETE,
};

struct etcd_event {
	enum etcd_event_type type;
	struct etcd_kv kv;
};

/* One message of a watch stream. */
struct etcd_watch_msg {
	int64_t revision;
	int created;
	int canceled;
	int64_t compact_revision; /* canceled because start_revision was compacted away */
	struct etcd_event *events;
	size_t n;
};

/* --- client ------------------------------------------------------------------------------ */

/* A client; base may be NULL for the synchronous calls only. Copies cfg's strings. */
struct etcd *etcd_new(struct event_base *base, const struct etcd_config *cfg,
                      struct shoal_err *err);
/* Cancels every request in flight without calling its callback. */
void etcd_free(struct etcd *e);

/* The endpoint requests go to now ("http://H:P"). */
const char *etcd_endpoint(const struct etcd *e);

/* --- asynchronous ------------------------------------------------------------------------ */
/*
 * Each call starts a request and returns its handle (NULL with err when it could not start).
 * The callback runs once, from the event loop, with the result or with err set (result NULL);
 * the result is borrowed for the callback's duration. The handle is valid until then:
 * etcd_cancel() drops it without calling back (for an owner that goes away first). A callback
 * may start and cancel requests, but must not call etcd_free.
 */
typedef void (*etcd_txn_cb)(const struct etcd_txn_result *r, const struct shoal_err *err,
                            void *arg);
typedef void (*etcd_range_cb)(const struct etcd_range *r, const struct shoal_err *err, void *arg);
typedef void (*etcd_lease_cb)(int64_t id, int64_t ttl, const struct shoal_err *err, void *arg);
/* A watch calls back per message; err set means the stream ended (the last call). */
typedef void (*etcd_watch_cb)(const struct etcd_watch_msg *m, const struct shoal_err *err,
                              void *arg);

struct etcd_req *etcd_txn(struct etcd *e, const struct etcd_txn *t, etcd_txn_cb cb, void *arg,
                          struct shoal_err *err);
struct etcd_req *etcd_range(struct etcd *e, const char *key, int prefix, int64_t revision,
                            int64_t limit, etcd_range_cb cb, void *arg, struct shoal_err *err);
/* ttl 0 for keepalive/revoke; keepalive calls back ttl 0 when the lease is gone. */
struct etcd_req *etcd_lease_grant(struct etcd *e, int64_t ttl_s, etcd_lease_cb cb, void *arg,
                                  struct shoal_err *err);
struct etcd_req *etcd_lease_keepalive(struct etcd *e, int64_t id, etcd_lease_cb cb, void *arg,
                                      struct shoal_err *err);
struct etcd_req *etcd_lease_revoke(struct etcd *e, int64_t id, etcd_lease_cb cb, void *arg,
                                   struct shoal_err *err);
/* Watch key (or every key under it with prefix) from start_revision (0: from now). The
 * stream has no time limit; it ends on an error, a cancel by etcd, or etcd_cancel(). */
struct etcd_req *etcd_watch(struct etcd *e, const char *key, int prefix, int64_t start_revision,
                            etcd_watch_cb cb, void *arg, struct shoal_err *err);
void etcd_cancel(struct etcd_req *r);

/* --- synchronous ------------------------------------------------------------------------- */
/* Results are the caller's: clear them with etcd_range_clear / etcd_txn_result_clear. */

int etcd_sync_range(struct etcd *e, const char *key, int prefix, int64_t revision, int64_t limit,
                    struct etcd_range *out, struct shoal_err *err);
/* [key, range_end) ("" for key alone), for reading a prefix in pages. */
int etcd_sync_range_end(struct etcd *e, const char *key, const char *range_end, int64_t revision,
                        int64_t limit, struct etcd_range *out, struct shoal_err *err);
int etcd_sync_put(struct etcd *e, const char *key, const char *value, size_t value_len,
                  int64_t lease, struct shoal_err *err);
/* *deleted may be NULL. */
int etcd_sync_delete(struct etcd *e, const char *key, int prefix, int64_t *deleted,
                     struct shoal_err *err);
int etcd_sync_txn(struct etcd *e, const struct etcd_txn *t, struct etcd_txn_result *out,
                  struct shoal_err *err);
int etcd_sync_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, struct shoal_err *err);
int etcd_sync_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, struct shoal_err *err);
int etcd_sync_lease_revoke(struct etcd *e, int64_t id, struct shoal_err *err);

void etcd_range_clear(struct etcd_range *r);
void etcd_txn_result_clear(struct etcd_txn_result *r);
void etcd_watch_msg_clear(struct etcd_watch_msg *m);

/* --- encoding (pure, in etcd_json.c; unit-tested against canned gateway replies) --------- */

/* One watch message above this ends the stream. */
#define ETCD_MAX_WATCH_MSG (16u << 20)

/* A 64-bit number as the gateway wants it: a JSON string (new reference). */
json_t *etcd_json_i64(int64_t v);

/* The range_end of "every key starting with key": key with its last byte < 0xff plus one,
 * the rest dropped; "\0" (all keys) when there is none. Caller frees. */
char *etcd_prefix_end(const char *key);

/* Request bodies (new references). */
json_t *etcd_json_range(const char *key, int prefix, int64_t revision, int64_t limit);
/* range_end NULL: every key under key; "": key alone; else [key, range_end). */
json_t *etcd_json_range_end(const char *key, const char *range_end, int64_t revision,
                            int64_t limit);
json_t *etcd_json_txn(const struct etcd_txn *t);
json_t *etcd_json_watch(const char *key, int prefix, int64_t start_revision);

/* The error of a reply: HTTP status not 200, or a body {"error"/"message", "code"}. Returns 0
 * when the reply is a success (body must then be an object), -1 with err otherwise. */
int etcd_parse_status(long http_status, const json_t *body, struct shoal_err *err);
int etcd_parse_range(const json_t *body, struct etcd_range *out, struct shoal_err *err);
int etcd_parse_txn(const json_t *body, struct etcd_txn_result *out, struct shoal_err *err);
/* Grant: {"ID","TTL"}; keepalive: {"result":{"ID","TTL"}} (TTL absent: the lease is gone). */
int etcd_parse_lease(const json_t *body, int64_t *id, int64_t *ttl, struct shoal_err *err);
int etcd_parse_watch(const json_t *body, struct etcd_watch_msg *out, struct shoal_err *err);

/*
 * A stream of JSON objects, as the gateway's watch sends them (one per line, but a line may
 * come in pieces or several in one read): feed bytes, get each complete object. A stream that
 * is not JSON, or one object above max bytes, is an error (-1) and the stream is unusable.
 */
struct etcd_stream {
	char *buf;
	size_t len, cap;
	size_t max;
};
int etcd_stream_feed(struct etcd_stream *s, const char *data, size_t len,
                     int (*fn)(json_t *obj, void *arg), void *arg, struct shoal_err *err);
void etcd_stream_clear(struct etcd_stream *s);

#endif
