/*
 * Unit tests for common/rpc_call, the client engine of the CLI: one call and a stream against
 * fake schedulers on threads of their own on 127.0.0.1 (fixture_rpc_server), with each
 * failure's one message, its deadline, and a follower's redirect to the leader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "err.h"
#include "fixture.h"
#include "log.h"
#include "rpc.h"
#include "rpc_call.h"
#include "schedlist.h"
#include "token.h"
#include "util.h"

static struct rpc_identity ident;

enum fake_mode {
	FAKE_ECHO,     /* one HeartbeatReply */
	FAKE_CHUNKS,   /* a push, then three LogChunks, the last one eof */
	FAKE_ERROR,    /* an Error reply */
	FAKE_HANGUP,   /* one LogChunk, then close */
	FAKE_SILENT,   /* reads the request, answers nothing */
	FAKE_FOLLOWER, /* "not the leader", naming leader */
};

/* One fake scheduler. */
struct fake {
	struct fixture_rpc_server srv;
	enum fake_mode mode;
	char leader[64];
	uint64_t seen_id;
	int requests;
	struct rpc_conn *hang;
};

static void
fake_send(struct rpc_conn *c, Shoal__Envelope *env)
{
	struct shoal_err err;

	assert_int_equal(rpc_send(c, env, &err), 0);
}

static void
fake_chunk(struct rpc_conn *c, uint64_t id, const char *task, const char *data, bool eof)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__LogChunk ch = SHOAL__LOG_CHUNK__INIT;

	ch.task = (char *)task;
	ch.data.data = (uint8_t *)data;
	ch.data.len = strlen(data);
	ch.eof = eof;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_LOG_CHUNK;
	env.log_chunk = &ch;
	fake_send(c, &env);
}

static void
fake_error(struct rpc_conn *c, uint64_t id, uint32_t code, const char *msg, const char *leader)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Error er = SHOAL__ERROR__INIT;

	er.code = code;
	er.message = (char *)msg;
	er.leader = (char *)leader;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_ERROR;
	env.error = &er;
	fake_send(c, &env);
}

static void
fake_hangup(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	struct timeval tv = {0, 100 * 1000};

	(void)fd;
	(void)what;
	rpc_free(f->hang);
	f->hang = NULL;
	event_base_loopexit(f->srv.base, &tv);
}

static void
fake_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct fake *f = arg;
	Shoal__Envelope rep = SHOAL__ENVELOPE__INIT;
	Shoal__HeartbeatReply hr = SHOAL__HEARTBEAT_REPLY__INIT;
	struct timeval tv = {0, 100 * 1000};

	f->seen_id = env->id;
	f->requests++;
	switch (f->mode) {
	case FAKE_ECHO:
		hr.heartbeat_interval_ms = 1000;
		rep.id = env->id;
		rep.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY;
		rep.heartbeat_reply = &hr;
		fake_send(c, &rep);
		break;
	case FAKE_CHUNKS:
	case FAKE_HANGUP:
		/* A push (id 0) in between is not part of the answer. */
		fake_chunk(c, 0, "x", "not ours\n", true);
		fake_chunk(c, env->id, "web.1.a", "one\n", false);
		if (f->mode == FAKE_HANGUP) {
			/* Close once the chunk is out; the loop runs on to finish the close. */
			f->hang = c;
			event_base_once(f->srv.base, -1, EV_TIMEOUT, fake_hangup, f, &tv);
			break;
		}
		fake_chunk(c, env->id, "web.2.b", "two\n", false);
		fake_chunk(c, env->id, "web.1.a", "three\n", true);
		break;
	case FAKE_ERROR:
		fake_error(c, env->id, 0, "no such task: web", NULL);
		break;
	case FAKE_SILENT:
		break;
	case FAKE_FOLLOWER:
		fake_error(c, env->id, SHOAL_ENOTLEADER, "not the leader", f->leader);
		break;
	}
}

static void
fake_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct fake *f = arg;

	(void)c;
	(void)reason;
	event_base_loopbreak(f->srv.base);
}

static const struct rpc_callbacks fake_cb = {.message = fake_message, .closed = fake_closed};

static void
fake_start(struct fake *f, enum fake_mode mode)
{
	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->srv.cb = &fake_cb;
	f->srv.arg = f;
	f->srv.ident = &ident;
	fixture_rpc_server_start(&f->srv);
}

/* The scheduler list "127.0.0.1:PORT[,...]" of the given ports. */
static void
list_of(struct schedlist *l, const uint16_t *ports, size_t n)
{
	char spec[256] = "";
	size_t len = 0;
	struct shoal_err err;

	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(spec + len, sizeof(spec) - len, "%s127.0.0.1:%u",
		                        i ? "," : "", ports[i]);
	if (schedlist_parse(l, spec, NULL, &err) == -1)
		fail_msg("schedlist_parse: %s", err.msg);
}

/* A port nobody listens on. */
static uint16_t
closed_port(void)
{
	uint16_t port;

	close(fixture_listen_loopback(&port));
	return port;
}

static void
list_req(Shoal__Envelope *req, Shoal__ListNodes *ln)
{
	req->body_case = SHOAL__ENVELOPE__BODY_LIST_NODES;
	req->list_nodes = ln;
}

/* ---- one call ---- */

static void
test_call_reply(void **state)
{
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT, *reply = NULL;
	struct schedlist l;
	struct shoal_err err;
	struct fake f;
	uint16_t ports[2];

	(void)state;
	list_req(&req, &ln);
	fake_start(&f, FAKE_ECHO);
	/* The first scheduler of the list refuses: nothing was sent, the next one answers. */
	ports[0] = closed_port();
	ports[1] = f.srv.port;
	list_of(&l, ports, 2);
	if (rpc_call_one(&l, &ident.admin, &req, 5000, &reply, &err) != 0)
		fail_msg("rpc_call_one: %s", err.msg);
	fixture_rpc_server_join(&f.srv);
	assert_true(req.id != 0);
	assert_int_equal(f.seen_id, req.id);
	assert_non_null(reply);
	assert_int_equal(reply->id, req.id);
	assert_int_equal(reply->body_case, SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY);
	assert_int_equal(reply->heartbeat_reply->heartbeat_interval_ms, 1000);
	shoal__envelope__free_unpacked(reply, NULL);

	/* An Error is a reply like any other. */
	fake_start(&f, FAKE_ERROR);
	list_of(&l, &f.srv.port, 1);
	assert_int_equal(rpc_call_one(&l, &ident.admin, &req, 5000, &reply, &err), 0);
	fixture_rpc_server_join(&f.srv);
	assert_int_equal(reply->body_case, SHOAL__ENVELOPE__BODY_ERROR);
	assert_string_equal(reply->error->message, "no such task: web");
	shoal__envelope__free_unpacked(reply, NULL);
}

/* A follower names the leader: the request goes there, and only the leader answers it. */
static void
test_call_redirect(void **state)
{
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT, *reply = NULL;
	struct schedlist l;
	struct shoal_err err;
	struct fake lead, fol;

	(void)state;
	list_req(&req, &ln);
	fake_start(&lead, FAKE_ECHO);
	fake_start(&fol, FAKE_FOLLOWER);
	snprintf(fol.leader, sizeof(fol.leader), "127.0.0.1:%u", lead.srv.port);
	list_of(&l, &fol.srv.port, 1);
	if (rpc_call_one(&l, &ident.admin, &req, 5000, &reply, &err) != 0)
		fail_msg("rpc_call_one: %s", err.msg);
	fixture_rpc_server_join(&fol.srv);
	assert_int_equal(fol.requests, 1);
	/* Not followed, the follower's Error would be the reply (and the leader wait for ever). */
	assert_int_equal(reply->body_case, SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY);
	fixture_rpc_server_join(&lead.srv);
	assert_int_equal(lead.requests, 1);
	assert_int_equal(lead.seen_id, req.id);
	shoal__envelope__free_unpacked(reply, NULL);

	/* A follower that knows no leader: nothing to follow, and the error says so. */
	fake_start(&fol, FAKE_FOLLOWER);
	list_of(&l, &fol.srv.port, 1);
	assert_int_equal(rpc_call_one(&l, &ident.admin, &req, 5000, &reply, &err), -1);
	fixture_rpc_server_join(&fol.srv);
	assert_null(reply);
	assert_non_null(strstr(err.msg, "no scheduler leads"));
}

/* Refused, no handshake, no reply, a failed handshake: one message each, within the deadline. */
static void
test_call_failures(void **state)
{
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT, *reply = NULL;
	struct token wrong;
	struct schedlist l;
	struct shoal_err err;
	struct fake f;
	char want[128];
	uint16_t port;
	int64_t t0;
	int fd;

	(void)state;
	list_req(&req, &ln);
	port = closed_port();
	list_of(&l, &port, 1);
	t0 = util_now_ms();
	assert_int_equal(rpc_call_one(&l, &ident.admin, &req, 5000, &reply, &err), -1);
	assert_null(reply);
	snprintf(want, sizeof(want), "cannot reach scheduler at 127.0.0.1:%u: Connection refused",
	         port);
	assert_string_equal(err.msg, want);
	assert_true(util_now_ms() - t0 < 2000);

	/* A listener that never answers the handshake. */
	fd = fixture_listen_loopback(&port);
	list_of(&l, &port, 1);
	t0 = util_now_ms();
	assert_int_equal(rpc_call_one(&l, &ident.admin, &req, 300, &reply, &err), -1);
	snprintf(want, sizeof(want),
	         "cannot reach scheduler at 127.0.0.1:%u: no handshake within 300ms", port);
	assert_string_equal(err.msg, want);
	assert_true(util_now_ms() - t0 >= 250);
	assert_true(util_now_ms() - t0 < 2000);
	close(fd);

	/* A scheduler that takes the request and never answers: the whole call's deadline. */
	fake_start(&f, FAKE_SILENT);
	list_of(&l, &f.srv.port, 1);
	t0 = util_now_ms();
	assert_int_equal(rpc_call_one(&l, &ident.admin, &req, 1000, &reply, &err), -1);
	fixture_rpc_server_join(&f.srv);
	snprintf(want, sizeof(want), "scheduler at 127.0.0.1:%u: no reply within 1s", f.srv.port);
	assert_string_equal(err.msg, want);
	assert_int_equal(f.requests, 1);
	assert_true(util_now_ms() - t0 >= 950);
	assert_true(util_now_ms() - t0 < 3000);

	/* Another cluster's token: the handshake fails, nothing was sent, and it says why. */
	token_generate(TOKEN_ROLE_ADMIN, ident.sign_pk, &wrong);
	fake_start(&f, FAKE_ECHO);
	list_of(&l, &f.srv.port, 1);
	assert_int_equal(rpc_call_one(&l, &wrong, &req, 5000, &reply, &err), -1);
	fixture_rpc_server_join(&f.srv);
	snprintf(want, sizeof(want),
	         "cannot reach scheduler at 127.0.0.1:%u: bad handshake MAC (wrong token?)",
	         f.srv.port);
	assert_string_equal(err.msg, want);
	assert_int_equal(f.requests, 0);
}

/* ---- a stream ---- */

struct collected {
	char out[256];
	int n;
};

static enum rpc_call_action
collect(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	struct collected *c = arg;
	size_t len = strlen(c->out);

	(void)err;
	assert_int_equal(env->body_case, SHOAL__ENVELOPE__BODY_LOG_CHUNK);
	c->n++;
	snprintf(c->out + len, sizeof(c->out) - len, "%s | %.*s", env->log_chunk->task,
	         (int)env->log_chunk->data.len, (const char *)env->log_chunk->data.data);
	return env->log_chunk->eof ? RPC_CALL_STOP : RPC_CALL_MORE;
}

/* One stream against a fake in mode (behind a follower when redirect); its rc. */
static int
run_stream(enum fake_mode mode, bool redirect, int idle_ms, struct collected *c,
           struct shoal_err *err)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;
	struct rpc_call_opts o = {.timeout_ms = 5000, .idle_ms = idle_ms};
	struct schedlist l;
	struct fake f, fol;
	int rc;

	memset(c, 0, sizeof(*c));
	lr.task = "web";
	lr.follow = true;
	req.body_case = SHOAL__ENVELOPE__BODY_LOGS;
	req.logs = &lr;
	fake_start(&f, mode);
	if (redirect) {
		fake_start(&fol, FAKE_FOLLOWER);
		snprintf(fol.leader, sizeof(fol.leader), "127.0.0.1:%u", f.srv.port);
		list_of(&l, &fol.srv.port, 1);
	} else {
		list_of(&l, &f.srv.port, 1);
	}
	rc = rpc_call_stream(&l, &ident.admin, &req, &o, collect, c, err);
	fixture_rpc_server_join(&f.srv);
	assert_int_equal(f.seen_id, req.id);
	if (redirect) {
		fixture_rpc_server_join(&fol.srv);
		assert_int_equal(fol.requests, 1);
	}
	return rc;
}

/* "scheduler at 127.0.0.1:PORT: WHY" -> WHY (the port is the fake's, gone by now). */
static const char *
why(const char *msg)
{
	const char *p = strstr(msg, ": ");

	assert_memory_equal(msg, "scheduler at 127.0.0.1:", 23);
	assert_non_null(p);
	return p + 2;
}

static void
test_stream(void **state)
{
	struct collected c;
	struct shoal_err err;

	(void)state;
	assert_int_equal(run_stream(FAKE_CHUNKS, false, 0, &c, &err), 0);
	assert_string_equal(c.out, "web.1.a | one\nweb.2.b | two\nweb.1.a | three\n");

	/* Behind a follower: the same stream, from the leader. */
	assert_int_equal(run_stream(FAKE_CHUNKS, true, 0, &c, &err), 0);
	assert_int_equal(c.n, 3);

	/* An Error fails a stream, with its message. */
	assert_int_equal(run_stream(FAKE_ERROR, false, 0, &c, &err), -1);
	assert_string_equal(err.msg, "no such task: web");
	assert_int_equal(c.n, 0);

	/* The scheduler went away before the last chunk: what came is handed over, then an
	 * error. */
	assert_int_equal(run_stream(FAKE_HANGUP, false, 0, &c, &err), -1);
	assert_string_equal(c.out, "web.1.a | one\n");
	assert_string_equal(why(err.msg), "connection closed by peer");
}

/* Once the request is out, idle_ms bounds each wait for the next reply. */
static void
test_stream_idle(void **state)
{
	struct collected c;
	struct shoal_err err;
	int64_t t0 = util_now_ms();

	(void)state;
	assert_int_equal(run_stream(FAKE_SILENT, false, 300, &c, &err), -1);
	assert_string_equal(why(err.msg), "no reply within 300ms");
	assert_true(util_now_ms() - t0 >= 250);
	assert_true(util_now_ms() - t0 < 2000);
}

/* The handshake's deadline holds even for a stream that would wait for ever once sent. */
static void
test_stream_unreachable(void **state)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;
	struct rpc_call_opts o = {.timeout_ms = 300};
	struct collected c = {0};
	struct schedlist l;
	struct shoal_err err;
	char want[128];
	uint16_t port;
	int64_t t0;
	int fd;

	(void)state;
	req.body_case = SHOAL__ENVELOPE__BODY_LOGS;
	req.logs = &lr;
	port = closed_port();
	list_of(&l, &port, 1);
	assert_int_equal(rpc_call_stream(&l, &ident.admin, &req, &o, collect, &c, &err), -1);
	snprintf(want, sizeof(want), "cannot reach scheduler at 127.0.0.1:%u: Connection refused",
	         port);
	assert_string_equal(err.msg, want);

	fd = fixture_listen_loopback(&port);
	list_of(&l, &port, 1);
	t0 = util_now_ms();
	assert_int_equal(rpc_call_stream(&l, &ident.admin, &req, &o, collect, &c, &err), -1);
	snprintf(want, sizeof(want),
	         "cannot reach scheduler at 127.0.0.1:%u: no handshake within 300ms", port);
	assert_string_equal(err.msg, want);
	assert_true(util_now_ms() - t0 >= 250);
	assert_true(util_now_ms() - t0 < 2000);
	close(fd);
	assert_int_equal(c.n, 0);
}

static int
setup(void **state)
{
	(void)state;
	if (fixture_rpc_init(&ident) == -1)
		return -1;
	/* The refused connects are expected; their warnings would only clutter the TAP output. */
	log_init("rpc_call_test", LOG_ERR);
	/* A deadline that does not fire hangs a call: end the run with a failure instead. */
	alarm(120);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_call_reply),    cmocka_unit_test(test_call_redirect),
	    cmocka_unit_test(test_call_failures), cmocka_unit_test(test_stream),
	    cmocka_unit_test(test_stream_idle),   cmocka_unit_test(test_stream_unreachable),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
