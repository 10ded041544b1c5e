/*
 * A real scheduler in-process, for unit tests and fuzz targets of its request handlers:
 * sched_server_init on a fresh data dir, and two clients, one with the worker token and one
 * with the admin token, each over a socketpair through the real handshake (common/rpc), so
 * every request goes through api_handle and every reply through the scheduler's reply path.
 * Registers carry a node key of the harness's own (harness_sign_register).
 * Header-only: a fuzz target is one .c file (see the Makefile's fuzz rule).
 */
#ifndef SHOAL_TESTS_SCHED_HARNESS_H
#define SHOAL_TESTS_SCHED_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "nodekey.h"
#include "rpc.h"
#include "scheduler/api.h"
#include "scheduler/conn.h"
#include "scheduler/identity.h"
#include "scheduler/server.h"
#include "shoal.pb-c.h"
#include "util.h"

enum { HARNESS_WORKER = 0, HARNESS_ADMIN = 1 };

struct harness {
	char dir[64];
	struct sched_server srv;
	struct rpc_conn *cli[2];
	struct sched_conn *sc[2];
	bool ready[2];
	uint64_t next_id;
	uint64_t want_id;
	Shoal__Envelope *reply; /* the reply to want_id, once it came (owned) */
	struct nodekey key;     /* the node key its Registers carry, made by harness_open */
};

static void
harness_srv_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	(void)c;
	api_handle(arg, env);
}

static void
harness_srv_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct sched_conn *sc = arg;

	(void)c;
	(void)reason;
	sched_conn_unlink(sc); /* the server's own, as its callback does */
	free(sc);
}

static const struct rpc_callbacks harness_srv_cbs = {
    .message = harness_srv_message,
    .closed = harness_srv_closed,
};

static void
harness_cli_ready(struct rpc_conn *c, void *arg)
{
	struct harness *h = arg;

	h->ready[c == h->cli[HARNESS_ADMIN]] = true;
}

static void
harness_cli_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct harness *h = arg;
	uint8_t *buf;
	size_t len;

	(void)c;
	if (env->id == 0 || env->id != h->want_id || h->reply)
		return; /* pushes (Assignments, Endpoints) and stale replies */
	/* The envelope is borrowed: keep a copy. */
	len = shoal__envelope__get_packed_size(env);
	buf = xmalloc(len ? len : 1);
	shoal__envelope__pack(env, buf);
	h->reply = shoal__envelope__unpack(NULL, len, buf);
	free(buf);
}

static void
harness_cli_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct harness *h = arg;

	(void)reason;
	for (int i = 0; i < 2; i++)
		if (h->cli[i] == c)
			h->cli[i] = NULL;
}

static const struct rpc_callbacks harness_cli_cbs = {
    .ready = harness_cli_ready,
    .message = harness_cli_message,
    .closed = harness_cli_closed,
};

/* Connect role's client over a socketpair, its messages to cbs (arg: h): 0, or -1. */
static int
harness_connect_cbs(struct harness *h, int role, const struct rpc_callbacks *cbs)
{
	struct sched_server *srv = &h->srv;
	struct sched_conn *sc;
	int sv[2];

	h->ready[role] = false;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	sc = xcalloc(1, sizeof(*sc));
	sc->srv = srv;
	sc->rpc =
	    rpc_accept(srv->base, sv[0], "test-peer", &srv->id, &srv->limits, &harness_srv_cbs, sc);
	sc->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = sc;
	srv->conns = sc;
	srv->nconns++; /* as the server counts an accepted one (sched_conn_unlink takes it off) */
	h->sc[role] = sc;
	h->cli[role] = rpc_client(srv->base, sv[1], "sched",
	                          role == HARNESS_ADMIN ? &srv->id.admin : &srv->id.worker,
	                          &srv->limits, cbs, h);
	for (int64_t end = util_now_ms() + 2000; !h->ready[role] && util_now_ms() < end;)
		event_base_loop(srv->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	return h->ready[role] ? 0 : -1;
}

static int
harness_connect(struct harness *h, int role)
{
	return harness_connect_cbs(h, role, &harness_cli_cbs);
}

/* A scheduler on a fresh data dir ($TMPDIR, default /tmp) with frames of at most max_frame bytes
 * (0: default). */
static int
harness_open(struct harness *h, size_t max_frame)
{
	struct rpc_identity id;
	struct shoal_err err;
	char listen[32];

	const char *tmp = getenv("TMPDIR");

	memset(h, 0, sizeof(*h));
	crypto_sign_keypair(h->key.pk, h->key.sk);
	snprintf(h->dir, sizeof(h->dir), "%s/shoal-harness.XXXXXX",
	         tmp && tmp[0] && strlen(tmp) < 32 ? tmp : "/tmp");
	if (mkdtemp(h->dir) == NULL)
		return -1;
	cleanup_free char *data = xasprintf("%s/sched", h->dir);
	if (identity_init(data, false, &id, &err) == -1)
		return -1;
	identity_wipe(&id);
	/* The listener is not used, but the server wants one: a free loopback port. */
	for (int tries = 0;; tries++) {
		struct sched_options opt = {.data_dir = data, .listen = listen};
		snprintf(listen, sizeof(listen), "127.0.0.1:%u", 20000 + util_random(40000));
		if (sched_server_init(&h->srv, &opt, &err) == 0)
			break;
		if (tries == 20) {
			fprintf(stderr, "harness: %s\n", err.msg);
			return -1;
		}
	}
	h->srv.limits.max_frame = max_frame;
	if (harness_connect(h, HARNESS_WORKER) == -1 || harness_connect(h, HARNESS_ADMIN) == -1)
		return -1;
	return 0;
}

/*
 * Send req (its id is set here) as role and run the loop until its reply comes or timeout_ms
 * passes. Returns the reply (free with shoal__envelope__free_unpacked) or NULL: silence.
 */
static Shoal__Envelope *
harness_call(struct harness *h, int role, Shoal__Envelope *req, int timeout_ms)
{
	struct shoal_err err;
	Shoal__Envelope *r;

	if (h->cli[role] == NULL)
		return NULL;
	req->id = h->want_id = ++h->next_id;
	h->reply = NULL;
	if (rpc_send(h->cli[role], req, &err) == -1)
		return NULL;
	for (int64_t end = util_now_ms() + timeout_ms; h->reply == NULL && util_now_ms() < end;)
		event_base_loop(h->srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	r = h->reply;
	h->reply = NULL;
	return r;
}

/*
 * Sign reg for role's current connection with the harness's node key, as an agent does
 * (nodekey_sign_register): the scheduler admits no Register without it. sig must outlive reg.
 */
static inline void
harness_sign_register(struct harness *h, int role, Shoal__Register *reg,
                      uint8_t sig[NODEKEY_SIG_BYTES])
{
	if (h->cli[role])
		nodekey_sign_register(&h->key, h->cli[role], reg, sig);
}

/* A fresh connection for role (the old one closed first), its messages to cbs: a new
 * session. A test that watches pushes passes callbacks that hand the rest to
 * harness_cli_message. */
static inline int
harness_reconnect_cbs(struct harness *h, int role, const struct rpc_callbacks *cbs)
{
	if (h->cli[role]) {
		rpc_free(h->cli[role]);
		h->cli[role] = NULL;
	}
	return harness_connect_cbs(h, role, cbs);
}

/* A fresh connection for role (the old one closed first): a new session. */
static inline int
harness_reconnect(struct harness *h, int role)
{
	return harness_reconnect_cbs(h, role, &harness_cli_cbs);
}

/* Run the loop for ms: the reconcile pass, the pushes, what a report set off. */
static inline void
harness_spin(struct harness *h, int ms)
{
	for (int64_t end = util_now_ms() + ms; util_now_ms() < end;)
		event_base_loop(h->srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Register reg as the worker, signed, with 4 CPUs and 4 GiB unless it names a capacity: the
 * reply (owned) or NULL. */
static inline Shoal__Envelope *
harness_register(struct harness *h, Shoal__Register *reg)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
	uint8_t sig[NODEKEY_SIG_BYTES];
	Shoal__Envelope *r;

	if (reg->capacity == NULL) {
		cap.cpu_millis = 4000;
		cap.memory_bytes = 1ull << 32;
		reg->capacity = &cap;
	}
	harness_sign_register(h, HARNESS_WORKER, reg, sig);
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = reg;
	r = harness_call(h, HARNESS_WORKER, &env, 10000);
	if (reg->capacity == &cap)
		reg->capacity = NULL;
	return r;
}

/* Apply the one spec json (the API's JSON form) as the admin: the reply (owned) or NULL. */
static inline Shoal__Envelope *
harness_apply(struct harness *h, const char *json)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Apply ap = SHOAL__APPLY__INIT;
	char *specs[] = {(char *)json};

	ap.specs_json = specs;
	ap.n_specs_json = 1;
	env.body_case = SHOAL__ENVELOPE__BODY_APPLY;
	env.apply = &ap;
	return harness_call(h, HARNESS_ADMIN, &env, 1000);
}

/* Send ts as the worker in a TaskReport of its own (no reply comes): 0, or -1. */
static inline int
harness_report(struct harness *h, Shoal__TaskStatus *ts)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__TaskReport tr = SHOAL__TASK_REPORT__INIT;
	struct shoal_err err;

	if (h->cli[HARNESS_WORKER] == NULL)
		return -1;
	tr.statuses = &ts;
	tr.n_statuses = 1;
	env.id = ++h->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_TASK_REPORT;
	env.task_report = &tr;
	return rpc_send(h->cli[HARNESS_WORKER], &env, &err);
}

/* Send raw packed bytes as role (what no Envelope packs to) and run the loop a little. */
static inline void
harness_send_bytes(struct harness *h, int role, const void *data, size_t len)
{
	struct shoal_err err;

	if (h->cli[role] == NULL || rpc_send_bytes(h->cli[role], data, len, &err) == -1)
		return;
	for (int i = 0; i < 8; i++)
		event_base_loop(h->srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void
harness_close(struct harness *h)
{
	cleanup_free char *rm = xasprintf("rm -rf '%s'", h->dir);

	for (int i = 0; i < 2; i++)
		if (h->cli[i])
			rpc_free(h->cli[i]);
	sched_server_free(&h->srv);
	nodekey_wipe(&h->key);
	if (system(rm) != 0)
		fprintf(stderr, "harness: cannot remove %s\n", h->dir);
}

/* A cmocka setup and teardown: a harness (default frames) as the test's state. */
static inline int
harness_setup(void **state)
{
	struct harness *h = xcalloc(1, sizeof(*h));

	*state = h;
	return harness_open(h, 0);
}

static inline int
harness_teardown(void **state)
{
	struct harness *h = *state;

	harness_close(h);
	free(h);
	return 0;
}

#endif
