#include "rpc_call.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "err.h"
#include "rpc.h"
#include "schedlist.h"
#include "token.h"
#include "util.h"

/* One attempt at one scheduler, on a private loop. */
struct rpc_call_state {
	struct event_base *base;
	struct rpc_conn *c;
	struct event *timer;
	Shoal__Envelope *req;
	const struct rpc_call_opts *o;
	rpc_call_cb cb;
	void *arg;
	bool errors_fail; /* an Error reply fails the call (a stream) or is a reply (one call) */
	int64_t deadline; /* one call: the whole call's end; 0 for a stream */
	struct shoal_err *err;
	const char *where; /* HOST:PORT */
	char *leader;      /* a follower's answer: who leads */
	size_t leaderlen;
	bool sent;       /* the request went out: a failure now must not be retried elsewhere */
	bool not_leader; /* a follower answered */
	int done;        /* 0 running, 1 the callback stopped, -1 failed (err set) */
};

/* "5s", or "300ms" when not whole seconds. */
static const char *
rpc_call_span(int ms, char *buf, size_t len)
{
	if (ms % 1000 == 0)
		snprintf(buf, len, "%ds", ms / 1000);
	else
		snprintf(buf, len, "%dms", ms);
	return buf;
}

static void
rpc_call_finish(struct rpc_call_state *st, int done)
{
	st->done = done;
	rpc_free(st->c);
	st->c = NULL;
	event_base_loopbreak(st->base);
}

static void
rpc_call_arm(struct rpc_call_state *st, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	if (ms > 0)
		evtimer_add(st->timer, &tv);
	else
		evtimer_del(st->timer);
}

/* What the reply timer waits for now: the rest of one call's deadline, or the stream's idle. */
static int
rpc_call_reply_ms(const struct rpc_call_state *st)
{
	int64_t left;

	if (st->deadline == 0)
		return st->o->idle_ms;
	left = st->deadline - util_now_ms();
	return left > 0 ? (int)left : 1;
}

static void
rpc_call_ready(struct rpc_conn *c, void *arg)
{
	struct rpc_call_state *st = arg;

	if (rpc_send(c, st->req, st->err) == -1) {
		rpc_call_finish(st, -1);
		return;
	}
	st->sent = true;
	/* The connect deadline is over; from now on the reply's bound applies. */
	rpc_call_arm(st, rpc_call_reply_ms(st));
	if (st->o->io != NULL && st->o->io->ready != NULL)
		st->o->io->ready(st->base, c, st->req->id, st->arg);
}

/* A follower's answer: who leads, into st->leader. */
static bool
rpc_call_not_leader(struct rpc_call_state *st, const Shoal__Envelope *env)
{
	const char *who;

	if (env->body_case != SHOAL__ENVELOPE__BODY_ERROR ||
	    !schedlist_not_leader(env->error->code, env->error->leader, &who))
		return false;
	snprintf(st->leader, st->leaderlen, "%s", who);
	return true;
}

static void
rpc_call_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct rpc_call_state *st = arg;
	enum rpc_call_action a;

	(void)c;
	/* Pushes (id 0) and stray replies are not ours. */
	if (env->id != st->req->id)
		return;
	if (rpc_call_not_leader(st, env)) {
		st->not_leader = true;
		err_set(st->err, 0, "scheduler at %s: not the leader", st->where);
		rpc_call_finish(st, -1);
		return;
	}
	if (st->errors_fail && env->body_case == SHOAL__ENVELOPE__BODY_ERROR) {
		err_set(st->err, 0, "%s", env->error->message);
		rpc_call_finish(st, -1);
		return;
	}
	a = st->cb(env, st->arg, st->err);
	if (a == RPC_CALL_STOP)
		rpc_call_finish(st, 1);
	else if (a == RPC_CALL_FAIL)
		rpc_call_finish(st, -1);
	else
		rpc_call_arm(st, rpc_call_reply_ms(st));
}

static void
rpc_call_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct rpc_call_state *st = arg;
	const char *peer = rpc_conn_peer(c);
	size_t n = strlen(peer);

	/* A failed connect's reason names the peer ("connect H:P: ..."); we already say where. */
	if (rpc_conn_connecting(c) && strncmp(reason, "connect ", 8) == 0 &&
	    strncmp(reason + 8, peer, n) == 0 && strncmp(reason + 8 + n, ": ", 2) == 0)
		reason += 8 + n + 2;
	if (st->sent)
		err_set(st->err, 0, "scheduler at %s: %s", st->where, reason);
	else
		err_set(st->err, 0, "cannot reach scheduler at %s: %s", st->where, reason);
	st->c = NULL;
	st->done = -1;
	event_base_loopbreak(st->base);
}

static void
rpc_call_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_call_state *st = arg;
	int ms = st->deadline != 0 || !st->sent ? st->o->timeout_ms : st->o->idle_ms;
	char span[32];

	(void)fd;
	(void)what;
	rpc_call_span(ms, span, sizeof(span));
	if (st->sent)
		err_set(st->err, 0, "scheduler at %s: no reply within %s", st->where, span);
	else if (st->c != NULL && rpc_conn_connecting(st->c))
		err_set(st->err, 0, "cannot reach scheduler at %s: timed out after %s", st->where,
		        span);
	else
		err_set(st->err, 0, "cannot reach scheduler at %s: no handshake within %s",
		        st->where, span);
	rpc_call_finish(st, -1);
}

struct rpc_call_try {
	const struct token *tok;
	Shoal__Envelope *req;
	const struct rpc_call_opts *o;
	rpc_call_cb cb;
	void *arg;
	bool errors_fail;
	bool whole; /* timeout_ms bounds the whole call (rpc_call_one) */
};

static enum sched_try
rpc_call_try(const struct sched_addr *to, void *arg, char *leader, size_t leaderlen,
             struct shoal_err *err)
{
	static const struct rpc_callbacks rcb = {
	    .ready = rpc_call_ready,
	    .message = rpc_call_message,
	    .closed = rpc_call_closed,
	};
	struct rpc_call_try *t = arg;
	struct rpc_call_state st = {.req = t->req,
	                            .o = t->o,
	                            .cb = t->cb,
	                            .arg = t->arg,
	                            .errors_fail = t->errors_fail,
	                            .err = err,
	                            .leader = leader,
	                            .leaderlen = leaderlen};
	struct rpc_limits limits = {0};
	char where[SCHEDLIST_ADDR_MAX];

	schedlist_addr_str(to, where, sizeof(where));
	st.where = where;
	if (t->whole)
		st.deadline = util_now_ms() + t->o->timeout_ms;
	/* Our own deadline covers connect and handshake; the handshake's must not win. */
	limits.handshake_timeout_ms = t->o->timeout_ms + 1000;

	st.base = event_base_new();
	if (st.base == NULL)
		return err_set(err, 0, "cannot create an event loop"), SCHED_TRY_FAILED;
	st.timer = evtimer_new(st.base, rpc_call_timeout, &st);
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
	rpc_call_arm(&st, t->o->timeout_ms);
	while (st.done == 0)
		if (event_base_loop(st.base, EVLOOP_ONCE) == -1)
			break;
	if (st.done == 0)
		err_set(err, 0, "scheduler at %s: event loop failed", where);
	if (st.sent && t->o->io != NULL && t->o->io->end != NULL)
		t->o->io->end(t->arg);
	rpc_free(st.c);
	event_free(st.timer);
	event_base_free(st.base);
	if (st.done == 1)
		return SCHED_TRY_OK;
	if (st.not_leader)
		return SCHED_TRY_NOT_LEADER;
	/* Not sent yet: another scheduler may take it. */
	return st.sent ? SCHED_TRY_FAILED : SCHED_TRY_UNREACHABLE;
}

static int
rpc_call_walk(const struct schedlist *l, struct rpc_call_try *t, struct shoal_err *err)
{
	struct sigaction sa;

	if (sodium_init() < 0)
		return err_set(err, 0, "libsodium: cannot initialise");
	/* A CLI has no SIGPIPE handler; a scheduler that hangs up must not kill it. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	do
		randombytes_buf(&t->req->id, sizeof(t->req->id));
	while (t->req->id == 0);
	return schedlist_walk(l, rpc_call_try, t, err);
}

int
rpc_call_stream(const struct schedlist *l, const struct token *tok, Shoal__Envelope *req,
                const struct rpc_call_opts *o, rpc_call_cb cb, void *arg, struct shoal_err *err)
{
	struct rpc_call_opts opts = *o;
	struct rpc_call_try t = {
	    .tok = tok, .req = req, .o = &opts, .cb = cb, .arg = arg, .errors_fail = true};

	if (opts.timeout_ms <= 0)
		opts.timeout_ms = RPC_DEFAULT_HANDSHAKE_MS;
	if (opts.idle_ms < 0)
		opts.idle_ms = 0;
	return rpc_call_walk(l, &t, err);
}

/* rpc_call_one's callback: keep a copy of the first reply (env is borrowed). */
static enum rpc_call_action
rpc_call_keep(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	Shoal__Envelope **reply = arg;
	size_t len = shoal__envelope__get_packed_size(env);
	uint8_t *buf = xmalloc(len);

	shoal__envelope__pack(env, buf);
	*reply = shoal__envelope__unpack(NULL, len, buf);
	free(buf);
	if (*reply == NULL)
		return err_set(err, 0, "unparsable reply"), RPC_CALL_FAIL;
	return RPC_CALL_STOP;
}

int
rpc_call_one(const struct schedlist *l, const struct token *tok, Shoal__Envelope *req,
             int timeout_ms, Shoal__Envelope **reply, struct shoal_err *err)
{
	struct rpc_call_opts opts = {.timeout_ms =
	                                 timeout_ms > 0 ? timeout_ms : RPC_DEFAULT_HANDSHAKE_MS};
	struct rpc_call_try t = {
	    .tok = tok, .req = req, .o = &opts, .cb = rpc_call_keep, .arg = reply, .whole = true};

	*reply = NULL;
	return rpc_call_walk(l, &t, err);
}
