#include "client.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "schedlist.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

/* Where the schedulers are and the admin token: what every call needs first. */
static int
client_target(const struct cli_ctx *ctx, struct schedlist *l, struct token *tok,
              struct shoal_err *err)
{
	if (schedlist_parse(l, ctx->scheduler, "127.0.0.1", err) == -1)
		return err_prefix(err, "--scheduler");
	if (ctx->token_file == NULL)
		return err_set(err, 0,
		               "no admin token: pass --token-file FILE or set "
		               "SHOAL_TOKEN_FILE (admin.token in the scheduler's data dir)");
	return token_load(ctx->token_file, tok, err);
}

/* A follower's answer: who leads, into leader. */
static bool
client_not_leader(const Shoal__Envelope *env, char *leader, size_t leaderlen)
{
	const char *who;

	if (env->body_case != SHOAL__ENVELOPE__BODY_ERROR ||
	    !schedlist_not_leader(env->error->code, env->error->leader, &who))
		return false;
	snprintf(leader, leaderlen, "%s", who);
	return true;
}

struct client_call_try {
	const struct cli_ctx *ctx;
	const struct token *tok;
	Shoal__Envelope *req;
	Shoal__Envelope **reply;
};

static enum sched_try
client_call_try(const struct sched_addr *to, void *arg, char *leader, size_t leaderlen,
                struct shoal_err *err)
{
	struct client_call_try *t = arg;
	bool sent;

	if (rpc_call_sent(to->host, to->port, t->tok, t->req, t->reply, t->ctx->timeout_ms, &sent,
	                  err) == -1)
		return sent ? SCHED_TRY_FAILED : SCHED_TRY_UNREACHABLE;
	if (client_not_leader(*t->reply, leader, leaderlen)) {
		shoal__envelope__free_unpacked(*t->reply, NULL);
		*t->reply = NULL;
		return SCHED_TRY_NOT_LEADER;
	}
	return SCHED_TRY_OK;
}

int
client_call_raw(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
                struct shoal_err *err)
{
	struct client_call_try t = {.ctx = ctx, .req = req, .reply = reply};
	struct schedlist l;
	struct token tok;
	int rc;

	*reply = NULL;
	if (client_target(ctx, &l, &tok, err) == -1)
		return -1;
	t.tok = &tok;
	rc = schedlist_walk(&l, client_call_try, &t, err);
	token_wipe(&tok);
	return rc;
}

int
client_call(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
            struct shoal_err *err)
{
	if (client_call_raw(ctx, req, reply, err) == -1)
		return -1;
	if ((*reply)->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		err_set(err, 0, "%s", (*reply)->error->message);
		shoal__envelope__free_unpacked(*reply, NULL);
		*reply = NULL;
		return -1;
	}
	return 0;
}

/* ---- client_stream: one request, many replies, on a private loop ---- */

struct client_stream_state {
	struct event_base *base;
	struct rpc_conn *c;
	struct event *timer;
	Shoal__Envelope *req;
	client_stream_cb cb;
	void *arg;
	struct shoal_err *err;
	const char *where;                 /* HOST:PORT */
	int timeout_ms;                    /* connect and handshake */
	int idle_ms;                       /* between replies once the request is sent; 0 = none */
	const struct client_stream_io *io; /* NULL: a plain stream */
	bool ready;                        /* handshake done, request sent */
	char *leader;                      /* a follower's answer: who leads */
	size_t leaderlen;
	bool not_leader;
	int done; /* 0 running, 1 the callback stopped, -1 failed (err set) */
};

static void
client_stream_finish(struct client_stream_state *st, int done)
{
	st->done = done;
	rpc_free(st->c);
	st->c = NULL;
	event_base_loopbreak(st->base);
}

static void
client_stream_arm(struct client_stream_state *st, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (ms > 0)
		evtimer_add(st->timer, &tv);
	else
		evtimer_del(st->timer);
}

static void
client_stream_ready(struct rpc_conn *c, void *arg)
{
	struct client_stream_state *st = arg;

	if (rpc_send(c, st->req, st->err) == -1) {
		client_stream_finish(st, -1);
		return;
	}
	st->ready = true;
	/* The connect deadline is over; from now on only the caller's idle bound applies. */
	client_stream_arm(st, st->idle_ms);
	if (st->io && st->io->ready)
		st->io->ready(st->base, c, st->req->id, st->arg);
}

static void
client_stream_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct client_stream_state *st = arg;
	enum client_stream_action a;

	(void)c;
	/* Pushes (id 0) and stray replies are not ours. */
	if (env->id != st->req->id)
		return;
	if (client_not_leader(env, st->leader, st->leaderlen)) {
		st->not_leader = true;
		client_stream_finish(st, -1);
		return;
	}
	if (env->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		err_set(st->err, 0, "%s", env->error->message);
		client_stream_finish(st, -1);
		return;
	}
	a = st->cb(env, st->arg, st->err);
	if (a == CLIENT_STREAM_STOP)
		client_stream_finish(st, 1);
	else if (a == CLIENT_STREAM_FAIL)
		client_stream_finish(st, -1);
	else
		client_stream_arm(st, st->idle_ms);
}

static void
client_stream_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct client_stream_state *st = arg;

	size_t n = strlen(st->where);

	(void)c;
	/* rpc names the peer in a failed connect's reason; we already say where. */
	if (strncmp(reason, "connect ", 8) == 0 && strncmp(reason + 8, st->where, n) == 0 &&
	    strncmp(reason + 8 + n, ": ", 2) == 0)
		reason += 8 + n + 2;
	if (st->ready)
		err_set(st->err, 0, "scheduler at %s: %s", st->where, reason);
	else
		err_set(st->err, 0, "cannot reach scheduler at %s: %s", st->where, reason);
	st->c = NULL;
	st->done = -1;
	event_base_loopbreak(st->base);
}

static void
client_stream_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct client_stream_state *st = arg;

	(void)fd;
	(void)what;
	if (st->ready)
		err_set(st->err, 0, "scheduler at %s: no reply within %dms", st->where,
		        st->idle_ms);
	else
		err_set(st->err, 0, "cannot reach scheduler at %s: no handshake within %dms",
		        st->where, st->timeout_ms);
	client_stream_finish(st, -1);
}

int
client_stream(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, client_stream_cb cb,
              void *arg, struct shoal_err *err)
{
	return client_stream_io(ctx, req, idle_ms, cb, NULL, arg, err);
}

struct client_stream_try {
	const struct token *tok;
	Shoal__Envelope *req;
	int timeout_ms;
	int idle_ms;
	client_stream_cb cb;
	const struct client_stream_io *io;
	void *arg;
};

static enum sched_try
client_stream_try(const struct sched_addr *to, void *arg, char *leader, size_t leaderlen,
                  struct shoal_err *err)
{
	static const struct rpc_callbacks rcb = {
	    .ready = client_stream_ready,
	    .message = client_stream_message,
	    .closed = client_stream_closed,
	};
	struct client_stream_try *t = arg;
	struct client_stream_state st = {.req = t->req,
	                                 .cb = t->cb,
	                                 .arg = t->arg,
	                                 .err = err,
	                                 .io = t->io,
	                                 .leader = leader,
	                                 .leaderlen = leaderlen};
	struct rpc_limits limits = {0};
	char where[SCHEDLIST_ADDR_MAX];

	schedlist_addr_str(to, where, sizeof(where));
	st.where = where;
	st.timeout_ms = t->timeout_ms;
	st.idle_ms = t->idle_ms;
	/* Our own deadline covers connect and handshake; the handshake's must not win. */
	limits.handshake_timeout_ms = st.timeout_ms + 1000;

	st.base = event_base_new();
	if (st.base == NULL)
		return err_set(err, 0, "cannot create an event loop"), SCHED_TRY_FAILED;
	st.timer = evtimer_new(st.base, client_stream_timeout, &st);
	if (st.timer == NULL) {
		event_base_free(st.base);
		return err_set(err, 0, "cannot create a timer"), SCHED_TRY_FAILED;
	}
	st.c = rpc_connect(st.base, to->host, to->port, t->tok, &limits, &rcb, &st, err);
	if (st.c == NULL) {
		err_prefix(err, "cannot reach scheduler at %s", where);
		event_free(st.timer);
		event_base_free(st.base);
		return SCHED_TRY_UNREACHABLE;
	}
	client_stream_arm(&st, st.timeout_ms);
	while (st.done == 0)
		if (event_base_loop(st.base, EVLOOP_ONCE) == -1)
			break;
	if (st.done == 0)
		err_set(err, 0, "scheduler at %s: event loop failed", where);
	if (st.ready && t->io && t->io->end)
		t->io->end(t->arg);
	rpc_free(st.c);
	event_free(st.timer);
	event_base_free(st.base);
	if (st.done == 1)
		return SCHED_TRY_OK;
	if (st.not_leader)
		return SCHED_TRY_NOT_LEADER;
	/* Not sent yet: another scheduler may take it. */
	return st.ready ? SCHED_TRY_FAILED : SCHED_TRY_UNREACHABLE;
}

int
client_stream_io(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, client_stream_cb cb,
                 const struct client_stream_io *io, void *arg, struct shoal_err *err)
{
	struct client_stream_try t = {
	    .req = req, .idle_ms = idle_ms, .cb = cb, .io = io, .arg = arg};
	struct sigaction sa;
	struct schedlist l;
	struct token tok;
	int rc;

	if (client_target(ctx, &l, &tok, err) == -1)
		return -1;
	/* A scheduler that hangs up must give an error message, not kill us with SIGPIPE. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	t.tok = &tok;
	t.timeout_ms = ctx->timeout_ms > 0 ? ctx->timeout_ms : RPC_DEFAULT_HANDSHAKE_MS;
	do
		randombytes_buf(&req->id, sizeof(req->id));
	while (req->id == 0);
	rc = schedlist_walk(&l, client_stream_try, &t, err);
	token_wipe(&tok);
	return rc;
}
