/* Unit tests for the order of the etcd store's asynchronous commits (scheduler/store_etcd,
 * through store_tx_commit_then of scheduler/store.h, which the reconcile pass uses): the
 * done of commit N+1 (the pass's Assignments) never runs before N's; a commit made while one
 * is in flight is not even sent before it is applied; a failed or fenced commit calls no done
 * with success and makes the scheduler step down. Against a fake etcd JSON gateway in this
 * process (libevent's evhttp on loopback, on the client's own loop) that holds every txn until
 * the test answers it, with success, a refused fence or an error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "fixture.h"
#include "nodekey.h"
#include "sched_harness.h"
#include "scheduler/nodes.h"
#include "scheduler/reconcile_pass.h"
#include "scheduler/reconcile_report.h"
#include "scheduler/etcd.h"
#include "scheduler/store.h"
#include "scheduler/store_etcd.h"
#include "util.h"

#define LEADER_KEY   "/t/leader"
#define LEADER_VALUE "{\"address\":\"a\",\"id\":\"a\"}"
#define MAX_HELD     64

/* A txn the fake holds: its request, the fence revision it compares, its first put's key. */
struct held {
	struct evhttp_request *req;
	int64_t fence;
	char key[128];
};

struct fake {
	struct event_base *base;
	struct evhttp *http;
	int port;
	int64_t leader_rev; /* the leader key's create revision in this "etcd" */
	struct held held[MAX_HELD];
	size_t nheld;
	size_t received; /* txns received in all */
	struct store s;  /* the store under test, on this fake */
	struct etcd *e;
};

/* What the store's users saw: the order of done calls and step-downs. */
static struct {
	char log[512];
	int fenced;
} seen;

static void
on_fenced(const char *why, void *arg)
{
	(void)why;
	(void)arg;
	seen.fenced++;
	strcat(seen.log, "F ");
}

/* A pass's commit callback: "N " once durable (its Assignments would go), "xN " when lost. */
static void
on_done(const struct shoal_err *err, void *arg)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%s%d ", err ? "x" : "", (int)(intptr_t)arg);
	strcat(seen.log, buf);
}

static char *
b64dec(const char *s)
{
	size_t cap = strlen(s) + 1, len = 0;
	char *out = xcalloc(1, cap);

	assert_int_equal(sodium_base642bin((unsigned char *)out, cap, s, strlen(s), NULL, &len,
	                                   NULL, sodium_base64_VARIANT_ORIGINAL),
	                 0);
	out[len] = '\0';
	return out;
}

static void
on_http(struct evhttp_request *req, void *arg)
{
	struct fake *f = arg;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char *body = xcalloc(1, len + 1);
	json_t *j, *cmp, *ops;
	struct held *h;

	evbuffer_remove(in, body, len);
	j = json_loads(body, 0, NULL);
	free(body);
	assert_string_equal(evhttp_request_get_uri(req), "/v3/kv/txn");
	assert_non_null(j);
	assert_true(f->nheld < MAX_HELD);
	h = &f->held[f->nheld++];
	memset(h, 0, sizeof(*h));
	h->req = req;
	f->received++;
	cmp = json_object_get(j, "compare");
	for (size_t i = 0; i < json_array_size(cmp); i++) {
		const char *rev =
		    json_string_value(json_object_get(json_array_get(cmp, i), "create_revision"));
		if (rev)
			h->fence = strtoll(rev, NULL, 10);
	}
	ops = json_object_get(j, "success");
	if (json_array_size(ops) > 0) {
		json_t *put = json_object_get(json_array_get(ops, 0), "request_put");
		char *key = b64dec(json_string_value(json_object_get(put, "key")));
		snprintf(h->key, sizeof(h->key), "%s", key);
		free(key);
	}
	json_decref(j);
}

enum answer { OK, ERROR };

/* Answer the i-th held txn as etcd would: applied when its fence is the leader key's
 * revision, refused (no "succeeded") when another leader's; or an error. */
static void
answer(struct fake *f, size_t i, enum answer a)
{
	struct held h = f->held[i];
	struct evbuffer *out = evbuffer_new();

	memmove(f->held + i, f->held + i + 1, (f->nheld - i - 1) * sizeof(*f->held));
	f->nheld--;
	if (a == ERROR) {
		evbuffer_add_printf(out,
		                    "{\"error\":\"etcdserver: too many requests\",\"code\":8}");
		evhttp_send_reply(h.req, 500, "Internal Server Error", out);
	} else if (h.fence == f->leader_rev) {
		evbuffer_add_printf(out, "{\"header\":{\"revision\":\"9\"},\"succeeded\":true}");
		evhttp_send_reply(h.req, 200, "OK", out);
	} else {
		evbuffer_add_printf(out, "{\"header\":{\"revision\":\"9\"}}");
		evhttp_send_reply(h.req, 200, "OK", out);
	}
	evbuffer_free(out);
}

/* Run the loop until n txns are held (or 1.5 s passed), then 50 ms more: a request that was
 * going to be sent has arrived by then (loopback). */
static void
run_until_held(struct fake *f, size_t n)
{
	for (int64_t end = util_now_ms() + 1500; f->nheld < n && util_now_ms() < end;)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	for (int64_t end = util_now_ms() + 50; util_now_ms() < end;)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* A store s on the fake, leading with fence 7, the step-down hook counting
 * into seen. */
static void
store_on_fake(struct fake *f, struct store *s)
{
	char ep[64];
	struct etcd_config cfg = {.endpoints = ep, .timeout_ms = 30000};
	struct shoal_err err;

	snprintf(ep, sizeof(ep), "etcd://127.0.0.1:%d", f->port);
	f->e = etcd_new(f->base, &cfg, &err);
	assert_non_null(f->e);
	assert_int_equal(store_open_etcd(s, f->e, "/t/", &err), 0);
	s->fenced = on_fenced;
	store_etcd_set_fence(s->etcd, LEADER_KEY, 7, LEADER_VALUE);
}

/* The fake on base (a new one when NULL), no store yet. */
static void
fake_listen(struct fake *f, struct event_base *base)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	memset(f, 0, sizeof(*f));
	memset(&seen, 0, sizeof(seen));
	f->base = base ? base : event_base_new();
	f->http = evhttp_new(f->base);
	evhttp_set_gencb(f->http, on_http, f);
	bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
	assert_non_null(bs);
	assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &sl),
	                 0);
	f->port = ntohs(sin.sin_port);
	f->leader_rev = 7;
}

/* The fake and the store under test on it (f->s). */
static void
fake_open(struct fake *f)
{
	fake_listen(f, NULL);
	store_on_fake(f, &f->s);
}

static void
fake_close(struct fake *f)
{
	while (f->nheld > 0)
		answer(f, 0, ERROR);
	etcd_free(f->e); /* before the store: see store_etcd_tx_commit_async */
	store_close(&f->s);
	evhttp_free(f->http);
	event_base_free(f->base);
}

/* A pass: one task row written in a transaction, then the commit whose done is number n. */
static void
pass(struct store *s, int n)
{
	char id[16], name[32];
	struct store_task t = {.id = id, .service = "web", .node_id = "n1", .name = name};
	struct shoal_err err;

	snprintf(id, sizeof(id), "task%d", n);
	snprintf(name, sizeof(name), "web.%d.%s", n, id);
	assert_int_equal(store_tx_begin(s, &err), 0);
	assert_int_equal(store_task_put(s, &t, &err), 0);
	assert_int_equal(store_tx_commit_then(s, on_done, (void *)(intptr_t)n, &err), 0);
}

/* Commit 2 is made while 1 is in flight: 2 is not sent before 1 is applied, and 2's done
 * comes after 1's. A store that sent both at once would let etcd apply 2 first (the fake
 * answers 2 first if it has it) and call 2's done first. */
static void
test_next_commit_waits_for_the_previous(void **state)
{
	struct fake f;

	(void)state;
	fake_open(&f);
	pass(&f.s, 1);
	pass(&f.s, 2);
	run_until_held(&f, 1);
	/* Only commit 1 reached etcd; its done has not run. */
	assert_int_equal(f.nheld, 1);
	assert_string_equal(f.held[0].key, "/t/tasks/task1");
	assert_string_equal(seen.log, "");
	/* A third pass queues too. */
	pass(&f.s, 3);
	run_until_held(&f, 1);
	assert_int_equal(f.nheld, 1);
	answer(&f, 0, OK);
	run_until_held(&f, 1);
	assert_string_equal(seen.log, "1 ");
	assert_int_equal(f.nheld, 1);
	assert_string_equal(f.held[0].key, "/t/tasks/task2");
	answer(&f, 0, OK);
	run_until_held(&f, 1);
	assert_string_equal(f.held[0].key, "/t/tasks/task3");
	answer(&f, 0, OK);
	run_until_held(&f, 0);
	assert_string_equal(seen.log, "1 2 3 ");
	assert_int_equal(seen.fenced, 0);
	assert_int_equal(f.received, 3);
	fake_close(&f);
}

/* A pass that wrote nothing (its Assignments carry nothing new) still waits for the commit
 * in flight before it: what it would send was decided on top of that commit's writes. */
static void
test_empty_commit_waits_its_turn(void **state)
{
	struct fake f;
	struct shoal_err err;

	(void)state;
	fake_open(&f);
	pass(&f.s, 1);
	assert_int_equal(store_tx_commit_then(&f.s, on_done, (void *)(intptr_t)2, &err), 0);
	run_until_held(&f, 1);
	assert_string_equal(seen.log, "");
	answer(&f, 0, OK);
	run_until_held(&f, 0);
	assert_string_equal(seen.log, "1 2 ");
	/* With nothing in flight, an empty commit is done at once. */
	assert_int_equal(store_tx_commit_then(&f.s, on_done, (void *)(intptr_t)3, &err), 0);
	assert_string_equal(seen.log, "1 2 3 ");
	fake_close(&f);
}

/* Commits 1 and 2 made, 1 answered with a (a fence of another leader when leader_rev is not
 * ours): the scheduler steps down before any done runs, neither 1 nor the commit queued
 * behind it reports success, 2 is never sent, and later commits are refused at once. */
static void
lose_commit(enum answer a, int64_t leader_rev)
{
	struct fake f;
	struct shoal_err err;

	fake_open(&f);
	pass(&f.s, 1);
	pass(&f.s, 2);
	run_until_held(&f, 1);
	f.leader_rev = leader_rev;
	answer(&f, 0, a);
	run_until_held(&f, 0);
	assert_string_equal(seen.log, "F x1 x2 ");
	assert_int_equal(f.received, 1);
	assert_int_equal(store_tx_begin(&f.s, &err), 0);
	assert_int_equal(store_tx_commit_then(&f.s, on_done, (void *)(intptr_t)3, &err), -1);
	assert_string_equal(seen.log, "F x1 x2 x3 ");
	assert_int_equal(seen.fenced, 1);
	fake_close(&f);
}

/* Another scheduler was elected: etcd refuses commit 1 by its fence. */
static void
test_fenced_commit_dispatches_nothing(void **state)
{
	(void)state;
	lose_commit(OK, 12);
}

/* etcd fails commit 1 (an error, not a fence): its writes are lost while memory has them. */
static void
test_failed_commit_dispatches_nothing(void **state)
{
	(void)state;
	lose_commit(ERROR, 7);
}

/* A commit of many transactions (cut at 127 ops): up to 8 in flight, answered in any order;
 * its done runs once, after the last, and the next commit starts only then. */
static void
test_split_commit_completes_as_one(void **state)
{
	struct fake f;
	struct shoal_err err;

	(void)state;
	fake_open(&f);
	assert_int_equal(store_tx_begin(&f.s, &err), 0);
	for (int i = 0; i < 300; i++) {
		char id[16];
		struct store_task t = {.id = id, .service = "web", .node_id = "n1", .name = id};
		snprintf(id, sizeof(id), "t%03d", i);
		assert_int_equal(store_task_put(&f.s, &t, &err), 0);
	}
	assert_int_equal(store_tx_commit_then(&f.s, on_done, (void *)(intptr_t)1, &err), 0);
	pass(&f.s, 2);
	run_until_held(&f, 3);
	assert_int_equal(f.nheld, 3); /* 127 + 127 + 46: all three at once, not commit 2 */
	answer(&f, 2, OK);
	answer(&f, 0, OK);
	run_until_held(&f, 1);
	assert_string_equal(seen.log, "");
	answer(&f, 0, OK);
	run_until_held(&f, 1);
	assert_string_equal(seen.log, "1 ");
	assert_string_equal(f.held[0].key, "/t/tasks/task2");
	answer(&f, 0, OK);
	run_until_held(&f, 0);
	assert_string_equal(seen.log, "1 2 ");
	fake_close(&f);
}

/* The SQLite store: done runs within the call, as the pass always dispatched. */
static void
test_sqlite_commit_is_synchronous(void **state)
{
	char dir[64];
	struct store s;
	struct shoal_err err;
	char *path;

	(void)state;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(fixture_tmpdir(dir, sizeof(dir), "etcd-async"), 0);
	path = xasprintf("%s/state.db", dir);
	assert_int_equal(store_open(&s, path, &err), 0);
	pass(&s, 1);
	assert_string_equal(seen.log, "1 ");
	store_close(&s);
	free(path);
	assert_int_equal(fixture_rmtree(dir), 0);
}

/* Run the harness's loop a little (a pass, its commit's request, a reply). */
static void
spin(struct fake *f)
{
	run_until_held(f, f->nheld);
}

/* A queued write (a meta row), so that the pass made next has a commit of its own to send. */
static void
queue_write(struct sched_server *srv, const char *v)
{
	struct shoal_err err;

	reconcile_pass_tx(srv);
	assert_int_equal(store_meta_put(&srv->store, "k", v, &err), 0);
}

/* Open the harness on the fake and register node1, whose node row pass 1 commits: the commit
 * is held (f->nheld 1), nothing answered. */
static struct node *
open_with_node1(struct harness *h, struct fake *f)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT, *r;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
	uint8_t sig[NODEKEY_SIG_BYTES];
	struct node *n;
	struct shoal_err err;

	assert_int_equal(harness_open(h, 0), 0);
	fake_listen(f, h->srv.base);
	store_close(&h->srv.store);
	store_on_fake(f, &h->srv.store);

	cap.cpu_millis = 4000;
	cap.memory_bytes = 1ull << 32;
	reg.node_name = "node1";
	reg.address = "10.0.0.1";
	reg.capacity = &cap;
	harness_sign_register(h, HARNESS_WORKER, &reg, sig);
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	/* As server.c does for a Register: its writes join the pass's transaction. */
	assert_int_equal(store_tx_begin(&h->srv.store, &err), 0);
	r = harness_call(h, HARNESS_WORKER, &env, 5000);
	assert_non_null(r);
	assert_int_equal(r->body_case, SHOAL__ENVELOPE__BODY_REGISTER_REPLY);
	shoal__envelope__free_unpacked(r, NULL);
	n = nodes_find(&h->srv.nodes, "node1");
	assert_non_null(n);
	run_until_held(f, 1);
	assert_int_equal(f->nheld, 1);
	assert_non_null(strstr(f->held[0].key, "/t/nodes/"));
	return n;
}

/*
 * The reconcile pass (reconcile_flush) on the etcd store: a node's Assignments leave only
 * once the commit of the pass that took it is applied. Registered, node1 is taken by pass 1,
 * whose commit (its node row) etcd holds: no Assignments yet. Then passes 2 and 3 take node1
 * again while 2's commit is held: 2 applied must not send node1 what pass 3 decided (3 is
 * not durable yet); only 3 applied sends it, once.
 */
static void
test_pass_dispatches_only_what_is_durable(void **state)
{
	struct harness h;
	struct fake f;
	struct node *n;
	uint64_t gen;

	(void)state;
	n = open_with_node1(&h, &f);
	gen = n->assign_gen;
	reconcile_mark_node(&h.srv, n);
	spin(&f);
	assert_int_equal(n->assign_gen, gen); /* pass 1's commit is held: nothing sent */
	answer(&f, 0, OK);
	spin(&f);
	assert_true(n->assign_gen > gen); /* applied: sent */
	gen = n->assign_gen;

	queue_write(&h.srv, "2");
	reconcile_mark_node(&h.srv, n);
	spin(&f);
	assert_int_equal(f.nheld, 1); /* pass 2's commit */
	queue_write(&h.srv, "3");
	reconcile_mark_node(&h.srv, n);
	spin(&f);
	assert_int_equal(f.nheld, 1); /* pass 3's waits behind it */
	answer(&f, 0, OK);
	spin(&f);
	assert_int_equal(n->assign_gen, gen); /* 2 applied: node1 is 3's to send */
	assert_int_equal(f.nheld, 1);
	answer(&f, 0, OK);
	spin(&f);
	assert_int_equal(n->assign_gen, gen + 1);
	assert_int_equal(seen.fenced, 0);

	evhttp_free(f.http);
	etcd_free(f.e);
	harness_close(&h);
}

/*
 * A node removed while the commits of two passes that took it are in flight: both forget
 * it (reconcile_commits_forget, from reconcile_node_removed), so its completion sends nothing
 * to a node that is no more, and needs no search of the node list to know.
 */
static void
test_removed_node_is_forgotten(void **state)
{
	struct harness h;
	struct fake f;
	struct node *n;
	uint64_t gen;

	(void)state;
	n = open_with_node1(&h, &f);
	answer(&f, 0, OK);
	spin(&f);
	gen = n->assign_gen;
	queue_write(&h.srv, "2");
	reconcile_mark_node(&h.srv, n);
	spin(&f);
	assert_int_equal(f.nheld, 1); /* pass 2's commit, which holds node1 */
	queue_write(&h.srv, "3");
	reconcile_mark_node(&h.srv, n);
	spin(&f); /* pass 3's, which holds it too, queued behind */
	assert_int_equal(n->assign_gen, gen);
	reconcile_node_removed(&h.srv, n);
	answer(&f, 0, OK);
	spin(&f);
	assert_int_equal(f.nheld, 1);
	answer(&f, 0, OK);
	spin(&f);
	assert_int_equal(n->assign_gen, gen); /* removed: nothing sent */
	assert_null(h.srv.commits);           /* and the commit is done with */
	assert_int_equal(seen.fenced, 0);

	evhttp_free(f.http);
	etcd_free(f.e);
	harness_close(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_next_commit_waits_for_the_previous),
	    cmocka_unit_test(test_empty_commit_waits_its_turn),
	    cmocka_unit_test(test_fenced_commit_dispatches_nothing),
	    cmocka_unit_test(test_failed_commit_dispatches_nothing),
	    cmocka_unit_test(test_split_commit_completes_as_one),
	    cmocka_unit_test(test_sqlite_commit_is_synchronous),
	    cmocka_unit_test(test_pass_dispatches_only_what_is_durable),
	    cmocka_unit_test(test_removed_node_is_forgotten),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
