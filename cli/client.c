#include "client.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

/* Where the scheduler is and the admin token: what every call needs first. */
static int
client_target(const struct cli_ctx *ctx, char *host, size_t hostlen, uint16_t *port,
              struct token *tok, struct shoal_err *err)
{
	if (util_parse_hostport(ctx->scheduler, host, hostlen, port, err) == -1)
		return err_prefix(err, "--scheduler");
	if (host[0] == '\0')
		snprintf(host, hostlen, "127.0.0.1");
	if (ctx->token_file == NULL)
		return err_set(err, 0,
		               "no admin token: pass --token-file FILE or set "
		               "SHOAL_TOKEN_FILE (admin.token in the scheduler's data dir)");
	return token_load(ctx->token_file, tok, err);
}

int
client_call_raw(const struct cli_ctx *ctx, Shoal__Envelope *req, Shoal__Envelope **reply,
                struct shoal_err *err)
{
	struct token tok;
	char host[256];
	uint16_t port;
	int rc;

	if (client_target(ctx, host, sizeof(host), &port, &tok, err) == -1)
		return -1;
	rc = rpc_call(host, port, &tok, req, reply, ctx->timeout_ms, err);
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

int
client_stream_io(const struct cli_ctx *ctx, Shoal__Envelope *req, int idle_ms, client_stream_cb cb,
                 const struct client_stream_io *io, void *arg, struct shoal_err *err)
{
	static const struct rpc_callbacks rcb = {
	    .ready = client_stream_ready,
	    .message = client_stream_message,
	    .closed = client_stream_closed,
	};
	struct client_stream_state st = {.req = req, .cb = cb, .arg = arg, .err = err, .io = io};
	struct rpc_limits limits = {0};
	struct sigaction sa;
	struct token tok;
	char host[256], where[300];
	uint16_t port;

	if (client_target(ctx, host, sizeof(host), &port, &tok, err) == -1)
		return -1;
	/* A scheduler that hangs up must give an error message, not kill us with SIGPIPE. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	snprintf(where, sizeof(where), "%s:%u", host, port);
	st.where = where;
	st.timeout_ms = ctx->timeout_ms > 0 ? ctx->timeout_ms : RPC_DEFAULT_HANDSHAKE_MS;
	st.idle_ms = idle_ms;
	do
		randombytes_buf(&req->id, sizeof(req->id));
	while (req->id == 0);
	/* Our own deadline covers connect and handshake; the handshake's must not win. */
	limits.handshake_timeout_ms = st.timeout_ms + 1000;

	st.base = event_base_new();
	if (st.base == NULL) {
		token_wipe(&tok);
		return err_set(err, 0, "cannot create an event loop");
	}
	st.timer = evtimer_new(st.base, client_stream_timeout, &st);
	if (st.timer == NULL) {
		token_wipe(&tok);
		event_base_free(st.base);
		return err_set(err, 0, "cannot create a timer");
	}
	st.c = rpc_connect(st.base, host, port, &tok, &limits, &rcb, &st, err);
	token_wipe(&tok);
	if (st.c == NULL) {
		err_prefix(err, "cannot reach scheduler at %s", where);
		event_free(st.timer);
		event_base_free(st.base);
		return -1;
	}
	client_stream_arm(&st, st.timeout_ms);
	while (st.done == 0)
		if (event_base_loop(st.base, EVLOOP_ONCE) == -1)
			break;
	if (st.done == 0)
		err_set(err, 0, "scheduler at %s: event loop failed", where);
	if (st.ready && io && io->end)
		io->end(arg);
	rpc_free(st.c);
	event_free(st.timer);
	event_base_free(st.base);
	return st.done == 1 ? 0 : -1;
}
