/*
 * Unit tests for common/rpc: the handshake and framing every agent and CLI relies on, over
 * socketpairs on one event_base. Each failure test asserts the
 * reason handed to the closed callback, which is what the daemon logs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "err.h"
#include "fixture.h"
#include "log.h"
#include "rpc.h"
#include "token.h"
#include "util.h"

/* Bytes the client sends before its first frame: HELLO (37) and FINISH (56). */
#define CLIENT_HS_BYTES 93

static struct rpc_identity ident;
static struct token worker_tok, admin_tok;
static uint8_t other_pk[crypto_sign_PUBLICKEYBYTES], other_sk[crypto_sign_SECRETKEYBYTES];

/* What one end of a connection saw. */
struct side {
	struct rpc_conn *c;
	int ready;
	int closed;
	char reason[256];
	enum token_role role;
	int nmsg;
	uint64_t ids[32];
	size_t last_name_len;
	bool echo;        /* answer each request with the same id */
	bool free_on_msg; /* rpc_free() from inside the message callback */
	bool free_on_ready;
	bool free_on_closed;
};

static void
on_ready(struct rpc_conn *c, void *arg)
{
	struct side *s = arg;

	s->ready++;
	s->role = rpc_conn_role(c);
	if (s->free_on_ready) {
		rpc_free(c);
		s->c = NULL;
	}
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct side *s = arg;

	if (s->nmsg < (int)ARRAY_SIZE(s->ids))
		s->ids[s->nmsg] = env->id;
	s->nmsg++;
	if (env->body_case == SHOAL__ENVELOPE__BODY_REGISTER && env->register_->node_name)
		s->last_name_len = strlen(env->register_->node_name);
	if (s->echo) {
		Shoal__HeartbeatReply hr = SHOAL__HEARTBEAT_REPLY__INIT;
		Shoal__Envelope rep = SHOAL__ENVELOPE__INIT;
		struct shoal_err err;

		hr.heartbeat_interval_ms = 1000;
		rep.id = env->id;
		rep.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY;
		rep.heartbeat_reply = &hr;
		assert_int_equal(rpc_send(c, &rep, &err), 0);
	}
	if (s->free_on_msg) {
		rpc_free(c);
		s->c = NULL;
	}
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct side *s = arg;

	s->closed++;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	/* Harmless: the connection is freed after this returns either way. */
	if (s->free_on_closed)
		rpc_free(c);
	s->c = NULL;
}

static const struct rpc_callbacks cbs = {
    .ready = on_ready,
    .message = on_message,
    .closed = on_closed,
};

/* Run base until cond holds, failing the test after 5 s. */
static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

#define RUN_UNTIL(base, cond)                                                                      \
	do {                                                                                       \
		bool expired_ = false;                                                             \
		struct event *dl_ = evtimer_new(base, deadline_cb, &expired_);                     \
		struct timeval tv_ = {5, 0};                                                       \
		evtimer_add(dl_, &tv_);                                                            \
		while (!(cond) && !expired_)                                                       \
			event_base_loop(base, EVLOOP_ONCE);                                        \
		event_free(dl_);                                                                   \
		if (!(cond))                                                                       \
			fail_msg("timed out waiting for %s", #cond);                               \
	} while (0)

static void
send_heartbeat(struct rpc_conn *c, uint64_t id)
{
	Shoal__Heartbeat hb = SHOAL__HEARTBEAT__INIT;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	struct shoal_err err;

	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	hb.assignments_generation = id;
	if (rpc_send(c, &env, &err) != 0)
		fail_msg("rpc_send: %s", err.msg);
}

/* Client and server on the two ends of a socketpair. */
static void
pair_start(struct event_base *base, const struct token *tok, const struct rpc_identity *id,
           const struct rpc_limits *limits, struct side *cli, struct side *srv)
{
	int sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	srv->c = rpc_accept(base, sp[0], "client-peer", id, limits, &cbs, srv);
	cli->c = rpc_client(base, sp[1], "server-peer", tok, limits, &cbs, cli);
	assert_non_null(srv->c);
	assert_non_null(cli->c);
}

static void
test_happy_path(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {.echo = true};
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	struct shoal_err err;
	char *big;

	(void)state;
	pair_start(base, &admin_tok, &ident, NULL, &cli, &srv);
	/* Not before the handshake: nothing may leave unencrypted. */
	assert_int_equal(rpc_send_bytes(cli.c, "x", 1, &err), -1);
	assert_non_null(strstr(err.msg, "not ready"));
	RUN_UNTIL(base, cli.ready && srv.ready);
	assert_int_equal(srv.role, TOKEN_ROLE_ADMIN);
	assert_int_equal(cli.role, TOKEN_ROLE_ADMIN);
	assert_string_equal(rpc_conn_peer(srv.c), "client-peer");

	for (uint64_t i = 1; i <= 5; i++)
		send_heartbeat(cli.c, i);
	/* Pushes from the server side, id 0, interleaved with the replies. */
	send_heartbeat(srv.c, 0);
	send_heartbeat(srv.c, 0);
	RUN_UNTIL(base, srv.nmsg == 5 && cli.nmsg == 7);
	for (int i = 0; i < 5; i++)
		assert_int_equal(srv.ids[i], (uint64_t)i + 1);
	assert_int_equal(cli.ids[0], 0);
	assert_int_equal(cli.ids[1], 0);
	for (int i = 2; i < 7; i++)
		assert_int_equal(cli.ids[i], (uint64_t)i - 1);

	/* A frame far over the socket buffer and the stack buffer arrives whole. */
	big = xmalloc(1 << 20);
	memset(big, 'n', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	reg.node_name = big;
	env.id = 99;
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	assert_int_equal(rpc_send(cli.c, &env, &err), 0);
	assert_true(rpc_conn_pending(cli.c) > (1 << 20));
	RUN_UNTIL(base, srv.nmsg == 6 && cli.nmsg == 8);
	assert_int_equal(srv.last_name_len, (1 << 20) - 1);
	assert_int_equal(rpc_conn_pending(cli.c), 0);
	free(big);

	rpc_set_user(srv.c, &srv);
	assert_ptr_equal(rpc_get_user(srv.c), &srv);

	/* A clean hang-up is no error. */
	rpc_free(cli.c);
	cli.c = NULL;
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "connection closed by peer");
	assert_int_equal(cli.closed, 0);
	event_base_free(base);
}

static void
test_worker_role(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	assert_int_equal(srv.role, TOKEN_ROLE_WORKER);
	rpc_free(srv.c);
	RUN_UNTIL(base, cli.closed);
	assert_string_equal(cli.reason, "connection closed by peer");
	event_base_free(base);
}

/* Both ends agree on the channel binding a node key signs, and no two connections share one:
 * a signature recorded on one session proves nothing on another. */
static void
test_channel_binding(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0}, cli2 = {0}, srv2 = {0};
	static const uint8_t zero[RPC_BINDING_BYTES];

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	pair_start(base, &worker_tok, &ident, NULL, &cli2, &srv2);
	RUN_UNTIL(base, cli.ready && srv.ready && cli2.ready && srv2.ready);
	assert_memory_equal(rpc_conn_binding(cli.c), rpc_conn_binding(srv.c), RPC_BINDING_BYTES);
	assert_memory_equal(rpc_conn_binding(cli2.c), rpc_conn_binding(srv2.c), RPC_BINDING_BYTES);
	assert_memory_not_equal(rpc_conn_binding(cli.c), zero, RPC_BINDING_BYTES);
	assert_memory_not_equal(rpc_conn_binding(cli.c), rpc_conn_binding(cli2.c),
	                        RPC_BINDING_BYTES);
	rpc_free(cli.c);
	rpc_free(srv.c);
	rpc_free(cli2.c);
	rpc_free(srv2.c);
	event_base_free(base);
}

static void
test_wrong_token(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct token bad = worker_tok;

	(void)state;
	randombytes_buf(bad.secret, sizeof(bad.secret));
	pair_start(base, &bad, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.closed && srv.closed);
	assert_string_equal(srv.reason, "bad handshake MAC (wrong token?)");
	assert_string_equal(cli.reason, "bad handshake MAC (wrong token?)");
	assert_int_equal(cli.ready + srv.ready, 0);

	/* The admin secret does not open the worker role either. */
	memset(&cli, 0, sizeof(cli));
	memset(&srv, 0, sizeof(srv));
	bad = admin_tok;
	bad.role = TOKEN_ROLE_WORKER;
	pair_start(base, &bad, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.closed && srv.closed);
	assert_string_equal(srv.reason, "bad handshake MAC (wrong token?)");
	event_base_free(base);
}

static void
test_ca_mismatch(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct token tok = worker_tok;

	(void)state;
	/* The right secret, but the token names another scheduler. */
	token_ca_hash(other_pk, tok.ca_hash);
	pair_start(base, &tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.closed && srv.closed);
	assert_non_null(strstr(cli.reason, "CA hash mismatch"));
	assert_non_null(strstr(cli.reason, "not our scheduler"));
	assert_string_equal(srv.reason, "connection closed during handshake");
	assert_int_equal(cli.ready + srv.ready, 0);
	event_base_free(base);
}

static void
test_bad_signature(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct rpc_identity impostor = ident;

	(void)state;
	/* A worker-token holder posing as the scheduler: shows the real key, cannot sign. */
	memcpy(impostor.sign_sk, other_sk, sizeof(other_sk));
	pair_start(base, &worker_tok, &impostor, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.closed && srv.closed);
	assert_string_equal(cli.reason, "bad handshake signature (not our scheduler)");
	assert_int_equal(cli.ready, 0);
	sodium_memzero(&impostor, sizeof(impostor));
	event_base_free(base);
}

/*
 * A relay the test controls between the real client and the real server:
 *   client <-> (rc | relay | rs) <-> server
 * Client-to-server bytes pass through relay_c2s(), which can alter, replay or cut them.
 */
enum relay_mode { RELAY_PASS, RELAY_TAMPER, RELAY_REPLAY, RELAY_TRUNCATE };

struct relay {
	int rc, rs;
	struct event *ev_c, *ev_s;
	enum relay_mode mode;
	size_t c2s; /* client-to-server bytes seen */
	uint8_t frame[4096];
	size_t frame_len;
	bool replayed, cut;
};

/* Limits for the server side of the next relay_start (NULL: the defaults). */
static const struct rpc_limits *relay_limits;

static void
write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return; /* the other side closed: that is what some tests want */
		p += n;
		len -= (size_t)n;
	}
}

static void
relay_c2s(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	uint8_t buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)what;
	if (n <= 0) {
		shutdown(r->rs, SHUT_WR);
		event_del(r->ev_c);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		size_t off = r->c2s + (size_t)i;

		if (off >= CLIENT_HS_BYTES && off - CLIENT_HS_BYTES < sizeof(r->frame))
			r->frame[off - CLIENT_HS_BYTES] = buf[i];
		/* Flip one bit in the first frame's ciphertext, past its length. */
		if (r->mode == RELAY_TAMPER && off == CLIENT_HS_BYTES + 4 + 3)
			buf[i] ^= 0x01;
	}
	if (r->mode == RELAY_TRUNCATE && r->c2s + (size_t)n > CLIENT_HS_BYTES + 10) {
		/* Let the handshake and 10 bytes of the first frame through, then hang up. */
		size_t keep = CLIENT_HS_BYTES + 10 - r->c2s;

		write_all(r->rs, buf, keep);
		shutdown(r->rs, SHUT_WR);
		event_del(r->ev_c);
		r->cut = true;
		r->c2s += (size_t)n;
		return;
	}
	r->c2s += (size_t)n;
	write_all(r->rs, buf, (size_t)n);
	if (r->mode == RELAY_REPLAY && !r->replayed && r->c2s >= CLIENT_HS_BYTES + 4) {
		size_t flen = 4 + ((size_t)r->frame[0] << 24 | (size_t)r->frame[1] << 16 |
		                   (size_t)r->frame[2] << 8 | r->frame[3]);

		if (r->c2s >= CLIENT_HS_BYTES + flen) {
			assert_true(flen <= sizeof(r->frame));
			write_all(r->rs, r->frame, flen);
			r->replayed = true;
		}
	}
}

static void
relay_s2c(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	uint8_t buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf));

	(void)what;
	if (n <= 0) {
		shutdown(r->rc, SHUT_WR);
		event_del(r->ev_s);
		return;
	}
	write_all(r->rc, buf, (size_t)n);
}

static void
relay_start(struct event_base *base, struct relay *r, enum relay_mode mode, struct side *cli,
            struct side *srv)
{
	int a[2], b[2];

	memset(r, 0, sizeof(*r));
	r->mode = mode;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b), 0);
	r->rc = a[0];
	r->rs = b[0];
	cli->c = rpc_client(base, a[1], "relay", &worker_tok, NULL, &cbs, cli);
	srv->c = rpc_accept(base, b[1], "relay", &ident, relay_limits, &cbs, srv);
	r->ev_c = event_new(base, r->rc, EV_READ | EV_PERSIST, relay_c2s, r);
	r->ev_s = event_new(base, r->rs, EV_READ | EV_PERSIST, relay_s2c, r);
	event_add(r->ev_c, NULL);
	event_add(r->ev_s, NULL);
}

static void
relay_stop(struct relay *r)
{
	event_free(r->ev_c);
	event_free(r->ev_s);
	close(r->rc);
	close(r->rs);
}

static void
test_tampered_frame(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct relay r;

	(void)state;
	relay_start(base, &r, RELAY_TAMPER, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	send_heartbeat(cli.c, 1);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "decrypt failure (tampered, replayed or reordered frame)");
	assert_int_equal(srv.nmsg, 0);
	/* The client learns through the hang-up. */
	RUN_UNTIL(base, cli.closed);
	assert_string_equal(cli.reason, "connection closed by peer");
	relay_stop(&r);
	event_base_free(base);
}

static void
test_replayed_frame(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct relay r;

	(void)state;
	relay_start(base, &r, RELAY_REPLAY, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	send_heartbeat(cli.c, 7);
	RUN_UNTIL(base, srv.closed);
	assert_true(r.replayed);
	/* The original went through once; its copy was refused. */
	assert_int_equal(srv.nmsg, 1);
	assert_int_equal(srv.ids[0], 7);
	assert_string_equal(srv.reason, "decrypt failure (tampered, replayed or reordered frame)");
	rpc_free(cli.c);
	relay_stop(&r);
	event_base_free(base);
}

static void
test_truncated_frame(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct relay r;

	(void)state;
	relay_start(base, &r, RELAY_TRUNCATE, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	send_heartbeat(cli.c, 1);
	RUN_UNTIL(base, srv.closed);
	assert_true(r.cut);
	assert_non_null(strstr(srv.reason, "truncated frame (EOF after 10 of "));
	assert_int_equal(srv.nmsg, 0);
	rpc_free(cli.c);
	relay_stop(&r);
	event_base_free(base);
}

static void
test_oversize_frame(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct rpc_limits limits = {.max_frame = 1024};
	static const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xf0};
	struct shoal_err err;
	char buf[2048] = {0};
	struct relay r;

	(void)state;
	relay_start(base, &r, RELAY_PASS, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	/* The length prefix alone is enough to refuse: no body follows it. */
	write_all(r.rs, huge, sizeof(huge));
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "frame of 2147483632 bytes exceeds limit of 4194321");
	rpc_free(cli.c);
	relay_stop(&r);

	/* A lower limit holds both ways: refused on send, refused on receipt. */
	memset(&cli, 0, sizeof(cli));
	memset(&srv, 0, sizeof(srv));
	pair_start(base, &worker_tok, &ident, &limits, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	assert_int_equal(rpc_send_bytes(cli.c, buf, 1025, &err), -1);
	assert_non_null(strstr(err.msg, "exceeds the frame limit of 1024"));
	assert_int_equal(rpc_send_bytes(cli.c, buf, 1024, &err), 0);
	RUN_UNTIL(base, srv.closed); /* 1024 zero bytes are no Envelope */
	assert_string_equal(srv.reason, "unparsable envelope (1024 bytes)");
	RUN_UNTIL(base, cli.closed);
	event_base_free(base);
}

static void
test_unparsable_envelope(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	struct shoal_err err;

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	/* Authentic, decrypts fine, but a field tag with a truncated varint. */
	assert_int_equal(rpc_send_bytes(cli.c, "\x08\xff\xff", 3, &err), 0);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "unparsable envelope (3 bytes)");
	RUN_UNTIL(base, cli.closed);
	event_base_free(base);
}

/* A server connection fed raw bytes from the test. */
static int
raw_start(struct event_base *base, const struct rpc_limits *limits, struct side *srv)
{
	int sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	srv->c = rpc_accept(base, sp[0], "raw-peer", &ident, limits, &cbs, srv);
	assert_non_null(srv->c);
	return sp[1];
}

static void
test_garbage(void **state)
{
	struct event_base *base = event_base_new();
	struct side srv = {0};
	char buf[16];
	int fd;

	(void)state;
	fd = raw_start(base, NULL, &srv);
	write_all(fd, "GET / HTTP/1.1\r\n\r\n", 18);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "bad magic (not a Shoal client?)");
	/* And the socket is really closed. */
	assert_int_equal(read(fd, buf, sizeof(buf)), 0);
	close(fd);

	/* Judged on the first byte: no need to wait for a whole HELLO. */
	memset(&srv, 0, sizeof(srv));
	fd = raw_start(base, NULL, &srv);
	write_all(fd, "X", 1);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "bad magic (not a Shoal client?)");
	close(fd);

	memset(&srv, 0, sizeof(srv));
	fd = raw_start(base, NULL, &srv);
	write_all(fd, "SHL1\x07", 5);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "unknown role 7");
	close(fd);

	/* A HELLO cut short by EOF. */
	memset(&srv, 0, sizeof(srv));
	fd = raw_start(base, NULL, &srv);
	write_all(fd, "SHL1\x01\x02\x03", 7);
	shutdown(fd, SHUT_WR);
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "connection closed during handshake");
	close(fd);
	event_base_free(base);
}

static void
test_handshake_stall(void **state)
{
	struct event_base *base = event_base_new();
	struct rpc_limits limits = {.handshake_timeout_ms = 200};
	struct side srv = {0};
	int64_t t0;
	int fd;

	(void)state;
	fd = raw_start(base, &limits, &srv);
	write_all(fd, "SHL1\x01\x02\x03", 7);
	t0 = util_now_ms();
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "handshake timeout after 200 ms");
	assert_true(util_now_ms() - t0 >= 150);
	assert_true(util_now_ms() - t0 < 2000);
	close(fd);
	event_base_free(base);
}

static void
test_idle_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct rpc_limits limits = {.idle_timeout_ms = 150};
	struct side cli = {0}, srv = {0};

	(void)state;
	pair_start(base, &worker_tok, &ident, &limits, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	rpc_set_idle_timeout(cli.c, 0); /* only the server watches */
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason, "idle timeout (nothing read for 150 ms)");
	RUN_UNTIL(base, cli.closed);
	assert_string_equal(cli.reason, "connection closed by peer");
	event_base_free(base);
}

/* One bad peer closes alone: the daemon keeps serving everyone else on the same loop. */
static void
test_keeps_serving(void **state)
{
	struct event_base *base = event_base_new();
	struct side bad = {0}, cli = {0}, srv = {.echo = true}, wrong_c = {0}, wrong_s = {0};
	struct token wrong = worker_tok;
	int fd;

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	fd = raw_start(base, NULL, &bad);
	write_all(fd, "\x00\x01garbage", 9);
	randombytes_buf(wrong.secret, sizeof(wrong.secret));
	pair_start(base, &wrong, &ident, NULL, &wrong_c, &wrong_s);
	RUN_UNTIL(base, bad.closed && wrong_s.closed && wrong_c.closed && cli.ready);
	assert_string_equal(bad.reason, "bad magic (not a Shoal client?)");
	assert_string_equal(wrong_s.reason, "bad handshake MAC (wrong token?)");
	send_heartbeat(cli.c, 42);
	RUN_UNTIL(base, cli.nmsg == 1);
	assert_int_equal(cli.ids[0], 42);
	assert_int_equal(srv.closed + cli.closed, 0);

	/* And a new one after the failures works too. */
	{
		struct side c2 = {0}, s2 = {.echo = true};

		pair_start(base, &admin_tok, &ident, NULL, &c2, &s2);
		RUN_UNTIL(base, c2.ready && s2.ready);
		send_heartbeat(c2.c, 43);
		RUN_UNTIL(base, c2.nmsg == 1);
		rpc_free(c2.c);
		rpc_free(s2.c);
	}
	close(fd);
	rpc_free(cli.c);
	rpc_free(srv.c);
	event_base_free(base);
}

/* rpc_free() from inside a connection's own callbacks: no use after free (ASan watches). */
static void
test_free_in_callback(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {.free_on_msg = true};

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	/* Three frames likely in one read: the two after the free must not be delivered. */
	send_heartbeat(cli.c, 1);
	send_heartbeat(cli.c, 2);
	send_heartbeat(cli.c, 3);
	RUN_UNTIL(base, cli.closed);
	assert_int_equal(srv.nmsg, 1);
	assert_int_equal(srv.closed, 0); /* rpc_free never calls closed */
	assert_string_equal(cli.reason, "connection closed by peer");

	/* Freed from ready, and from closed (a no-op there). */
	memset(&cli, 0, sizeof(cli));
	memset(&srv, 0, sizeof(srv));
	srv.free_on_ready = true;
	cli.free_on_closed = true;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.closed);
	assert_int_equal(srv.ready, 1);
	assert_int_equal(srv.closed, 0);
	event_base_free(base);
}

/* Write len bytes to fd without blocking the loop that reads the other end: whatever the
 * socket does not take now goes after a loop turn. Stops early when the peer hung up. */
static void
feed(struct event_base *base, int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
			continue;
		}
		if (n == -1)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Read or write syscalls ("syscr", "syscw") this thread has made (/proc/thread-self/io); -1
 * where the kernel keeps none. */
static long
io_calls(const char *which)
{
	char line[128];
	size_t len = strlen(which);
	long n = -1;
	FILE *f = fopen("/proc/thread-self/io", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, which, len) == 0 && line[len] == ':') {
			n = strtol(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return n;
}

static long
writes_made(void)
{
	return io_calls("syscw");
}

/* Descriptors some epoll instance of this process watches for writability (/proc/self/fdinfo). */
static int
watched_for_writing(void)
{
	char path[64], link[64], line[256];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]") != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
		f = fopen(path, "r");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f) != NULL) {
			unsigned int tfd, events;
			if (sscanf(line, "tfd: %u events: %x", &tfd, &events) == 2 &&
			    (events & EPOLLOUT))
				n++;
		}
		fclose(f);
	}
	return n;
}

/* Frames queued in one loop turn leave in one write at its end, none before it, and without
 * watching the socket for writability (two epoll_ctl per reply: 2 of the 5 syscalls a
 * heartbeat cost a scheduler); a peer gone by then is one "write error" close. */
static void
test_turn_writes_once(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	long before, after;

	(void)state;
	pair_start(base, &admin_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	RUN_UNTIL(base, rpc_conn_pending(cli.c) == 0 && rpc_conn_pending(srv.c) == 0);
	before = writes_made();
	for (uint64_t i = 1; i <= 3; i++)
		send_heartbeat(cli.c, i);
	after = writes_made();
	assert_true(rpc_conn_pending(cli.c) > 0);
	if (before >= 0)
		assert_int_equal(after - before, 0);
	assert_int_equal(watched_for_writing(), 0);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	after = writes_made();
	assert_int_equal(rpc_conn_pending(cli.c), 0);
	if (before >= 0)
		assert_int_equal(after - before, 1);
	RUN_UNTIL(base, srv.nmsg == 3);

	/* The peer is gone before the turn ends: the flush's write fails and closes srv. */
	rpc_free(cli.c);
	cli.c = NULL;
	send_heartbeat(srv.c, 0);
	RUN_UNTIL(base, srv.closed);
	assert_non_null(strstr(srv.reason, "write error"));
	event_base_free(base);
}

/* A 45 KB frame (an Assignments of 100 specs) is read in a few reads of 16 KiB, not in
 * libevent's reads of 4 KiB with an ioctl(FIONREAD) before each (12 of each for an agent). */
static void
test_big_frame_few_reads(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	struct shoal_err err;
	char *name = xmalloc(45001);
	long before, after;

	(void)state;
	pair_start(base, &worker_tok, &ident, NULL, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	RUN_UNTIL(base, rpc_conn_pending(cli.c) == 0 && rpc_conn_pending(srv.c) == 0);
	memset(name, 'n', 45000);
	name[45000] = '\0';
	reg.node_name = name;
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	assert_int_equal(rpc_send(cli.c, &env, &err), 0);
	/* Written whole (a socketpair's buffer holds it) before the server reads any of it. */
	while (rpc_conn_pending(cli.c) > 0)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	before = io_calls("syscr");
	RUN_UNTIL(base, srv.nmsg == 1);
	after = io_calls("syscr");
	assert_int_equal(srv.last_name_len, 45000);
	if (before >= 0)
		assert_in_range(after - before, 3, 4);
	free(name);
	rpc_free(cli.c);
	rpc_free(srv.c);
	event_base_free(base);
}

/* Hostile: an authenticated peer that stops reading while the server keeps queuing for it
 * (5,000 Registers once took a scheduler from 6.5 to 73 MB). The queue stops at max_queued,
 * the send says why, and the peer is dropped on the next loop turn, not inside rpc_send. */
static void
test_non_reading_peer(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli = {0}, srv = {0};
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	struct shoal_err err;
	char name[4000];
	struct relay r;
	int sent = 0, refused = 0;

	(void)state;
	relay_start(base, &r, RELAY_PASS, &cli, &srv);
	RUN_UNTIL(base, cli.ready && srv.ready);
	event_del(r.ev_s); /* the client side reads nothing more */
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	reg.node_name = name;
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	for (int i = 0; i < 5000; i++) {
		if (rpc_send(srv.c, &env, &err) == 0) {
			sent++;
		} else {
			refused++;
			assert_non_null(strstr(err.msg, "peer not reading"));
		}
		assert_true(rpc_conn_pending(srv.c) <= RPC_DEFAULT_MAX_QUEUED);
		if (i % 100 == 0)
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (srv.closed)
			break;
	}
	assert_true(refused >= 1);
	assert_true(sent < 5000);
	RUN_UNTIL(base, srv.closed);
	assert_non_null(strstr(srv.reason, "peer not reading: over 16777216 bytes queued"));
	rpc_free(cli.c);
	relay_stop(&r);
	event_base_free(base);
}

/* Hostile: a started frame that never completes is dropped after frame_timeout_ms, and its
 * bytes no longer count as held. */
static void
test_partial_frame_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct rpc_limits limits = {.frame_timeout_ms = 200};
	struct side cli = {0}, srv = {0};
	uint8_t part[104] = {0x00, 0x40, 0x00, 0x00}; /* declares 4 MiB, brings 100 bytes */
	struct relay r;

	(void)state;
	relay_limits = &limits;
	relay_start(base, &r, RELAY_PASS, &cli, &srv);
	relay_limits = NULL;
	RUN_UNTIL(base, cli.ready && srv.ready);
	write_all(r.rs, part, sizeof(part));
	RUN_UNTIL(base, srv.c != NULL && rpc_input_held() == sizeof(part));
	RUN_UNTIL(base, srv.closed);
	assert_string_equal(srv.reason,
	                    "partial frame not completed within 200 ms (104 bytes held)");
	assert_int_equal(rpc_input_held(), 0);
	rpc_free(cli.c);
	relay_stop(&r);
	event_base_free(base);
}

/* Hostile: connections that each hold most of a 4 MiB frame (30 of them once took a scheduler
 * from 10 to 131 MB). Past the process's budget the one that grows is dropped; the others,
 * and a connection sending small frames, go on. */
static void
test_partial_frame_budget(void **state)
{
	struct event_base *base = event_base_new();
	struct side cli[4] = {{0}}, srv[4] = {{0}};
	struct relay r[4];
	static uint8_t part[4 + 700 * 1024] = {0x00, 0x40, 0x00, 0x00};
	int dropped = 0;

	(void)state;
	rpc_set_input_budget(2u << 20);
	for (int i = 0; i < 4; i++) {
		relay_start(base, &r[i], RELAY_PASS, &cli[i], &srv[i]);
		RUN_UNTIL(base, cli[i].ready && srv[i].ready);
	}
	for (int i = 0; i < 3; i++)
		feed(base, r[i].rs, part, sizeof(part));
	RUN_UNTIL(base, srv[2].closed || rpc_input_held() >= 3 * sizeof(part));
	for (int i = 0; i < 3; i++)
		if (srv[i].closed) {
			dropped++;
			assert_non_null(strstr(srv[i].reason, "input over budget"));
		}
	assert_int_equal(dropped, 1);
	assert_true(rpc_input_held() <= (2u << 20));
	/* Small frames still pass on a connection that holds nothing. */
	send_heartbeat(cli[3].c, 42);
	RUN_UNTIL(base, srv[3].nmsg == 1);
	for (int i = 0; i < 4; i++) {
		rpc_free(cli[i].c);
		rpc_free(srv[i].c);
		relay_stop(&r[i]);
	}
	assert_int_equal(rpc_input_held(), 0);
	rpc_set_input_budget(0);
	event_base_free(base);
}

static int
setup(void **state)
{
	(void)state;
	if (fixture_rpc_init(&ident) == -1)
		return -1;
	crypto_sign_keypair(other_pk, other_sk);
	worker_tok = ident.worker;
	admin_tok = ident.admin;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_happy_path),
	    cmocka_unit_test(test_worker_role),
	    cmocka_unit_test(test_channel_binding),
	    cmocka_unit_test(test_wrong_token),
	    cmocka_unit_test(test_ca_mismatch),
	    cmocka_unit_test(test_bad_signature),
	    cmocka_unit_test(test_tampered_frame),
	    cmocka_unit_test(test_replayed_frame),
	    cmocka_unit_test(test_truncated_frame),
	    cmocka_unit_test(test_oversize_frame),
	    cmocka_unit_test(test_unparsable_envelope),
	    cmocka_unit_test(test_garbage),
	    cmocka_unit_test(test_handshake_stall),
	    cmocka_unit_test(test_idle_timeout),
	    cmocka_unit_test(test_keeps_serving),
	    cmocka_unit_test(test_free_in_callback),
	    cmocka_unit_test(test_turn_writes_once),
	    cmocka_unit_test(test_big_frame_few_reads),
	    cmocka_unit_test(test_non_reading_peer),
	    cmocka_unit_test(test_partial_frame_timeout),
	    cmocka_unit_test(test_partial_frame_budget),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
