#include "rpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "err.h"
#include "log.h"
#include "rpc_handshake.h"
#include "rpc_conn-t.h"
#include "util.h"

#define RPC_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define RPC_TAG    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
/* Frames up to this size are packed and decrypted on the stack, without a malloc. */
#define RPC_SMALL_FRAME 4096
/* Input held by a connection that is not worth judging against the budget: frames this small
 * complete in one read. */
#define RPC_HELD_FLOOR (64 * 1024)
/* A ready connection reads at most this much at a time, and at most RPC_READS times a turn
 * (then the loop serves the others and comes back). */
#define RPC_READ_ROOM (16 * 1024)
#define RPC_READS     16

/*
 * Bytes held in every connection's input buffer (partial frames, handshakes in progress) in
 * this process, and the budget for them. Each connection is already bounded by one frame (4
 * MiB), but 30 connections holding partial 4 MiB frames took a scheduler from 10 to 131 MB:
 * past the budget a connection holding more than RPC_HELD_FLOOR is dropped. The loop that
 * runs the connections is one thread, and so are these.
 */
static size_t rpc_held_total;
static size_t rpc_held_budget = RPC_DEFAULT_INPUT_BUDGET;
static struct rpc_counters rpc_counted;

static void
rpc_destroy(struct rpc_conn *c)
{
	rpc_held_total -= c->held;
	if (c->frame_timer != NULL)
		event_free(c->frame_timer);
	if (c->kill != NULL)
		event_free(c->kill);
	if (c->flush != NULL)
		event_free(c->flush);
	if (c->rd != NULL)
		event_free(c->rd);
	bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->hs != NULL) {
		sodium_memzero(c->hs, sizeof(*c->hs));
		free(c->hs);
	}
	sodium_memzero(c, sizeof(*c));
	free(c);
}

static void
rpc_enter(struct rpc_conn *c)
{
	c->depth++;
}

/* Leave a callback; the connection is freed here if it died inside it. */
static void
rpc_leave(struct rpc_conn *c)
{
	if (--c->depth == 0 && c->dead)
		rpc_destroy(c);
}

/* Stop every event of c so that nothing calls back into it before it is freed. */
static void
rpc_quiesce(struct rpc_conn *c)
{
	c->dead = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	if (c->timer != NULL)
		event_del(c->timer);
	if (c->frame_timer != NULL)
		event_del(c->frame_timer);
	if (c->kill != NULL)
		event_del(c->kill);
	if (c->flush != NULL)
		event_del(c->flush);
	if (c->rd != NULL)
		event_del(c->rd);
}

/*
 * Close c for the given reason: one log line, the closed callback, then free (deferred to
 * rpc_leave() while one of c's callbacks is on the stack). Always returns -1 so that a parser
 * can `return rpc_fail(...)`.
 */
static int __attribute__((format(printf, 3, 4)))
rpc_fail(struct rpc_conn *c, int level, const char *fmt, ...)
{
	char reason[200];
	va_list ap;

	if (c->dead)
		return -1;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	rpc_quiesce(c);
	shoal_log(level, "rpc: %s: closing: %s", c->peer, reason);
	if (c->cb.closed != NULL) {
		rpc_enter(c);
		c->cb.closed(c, reason, c->arg);
		c->depth--;
	}
	if (c->depth == 0)
		rpc_destroy(c);
	return -1;
}

/*
 * Writing. libevent's bufferevent registers for writability (epoll_ctl) when a frame is
 * queued, writes on the next turn, then unregisters (epoll_ctl again). For a heartbeat and
 * its reply that made 5.1 syscalls where 3 do (read, FIONREAD, write): a scheduler with
 * 10,000 nodes spent 20-40% more CPU per heartbeat. Once ready, a connection instead writes
 * everything a loop turn queued for it with one writev at the end of that turn (an event
 * made active, not a descriptor watched), and has libevent watch for writability only while
 * the socket is full.
 */
static void
rpc_flushcb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int n, e;

	(void)fd;
	(void)what;
	c->flushing = false;
	if (c->dead || c->writing || evbuffer_get_length(out) == 0)
		return;
	rpc_enter(c);
	/* A bufferevent keeps its output's front frozen so that only it drains it; so do we. */
	evbuffer_unfreeze(out, 1);
	n = evbuffer_write(out, bufferevent_getfd(c->bev));
	e = errno;
	evbuffer_freeze(out, 1);
	if (n < 0 && e != EAGAIN && e != EINTR)
		rpc_fail(c, LOG_WARNING, "write error: %s", strerror(e));
	else if (evbuffer_get_length(out) > 0) {
		c->writing = true;
		bufferevent_enable(c->bev, EV_WRITE);
	}
	rpc_leave(c);
}

/* libevent's write event drained what the full socket held back: stop watching it. */
static void
rpc_writecb(struct bufferevent *bev, void *arg)
{
	struct rpc_conn *c = arg;

	if (c->state == RPC_READY && c->writing) {
		c->writing = false;
		bufferevent_disable(bev, EV_WRITE);
	}
}

/* Something was queued for c: have it written at the end of this loop turn. */
static void
rpc_queued(struct rpc_conn *c)
{
	if (c->writing || c->flushing)
		return;
	c->flushing = true;
	event_active(c->flush, EV_TIMEOUT, 1);
}

static void rpc_rdcb(evutil_socket_t fd, short what, void *arg);
static void rpc_eof(struct rpc_conn *c);

/* The handshake is done: drop its material and timer, and tell the owner. */
static int
rpc_ready(struct rpc_conn *c)
{
	c->role = c->hs->role;
	sodium_memzero(c->hs, sizeof(*c->hs));
	free(c->hs);
	c->hs = NULL;
	event_free(c->timer);
	c->timer = NULL;
	c->state = RPC_READY;
	/* From now on frames are read by rpc_rdcb and written by rpc_flushcb, not by libevent's
	 * bufferevent. */
	c->rd = event_new(bufferevent_get_base(c->bev), bufferevent_getfd(c->bev),
	                  EV_READ | EV_PERSIST, rpc_rdcb, c);
	if (c->rd == NULL)
		return rpc_fail(c, LOG_WARNING, "cannot set up reading");
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		rpc_queued(c);
	rpc_set_idle_timeout(c, c->idle_ms);
	if (c->cb.ready != NULL)
		c->cb.ready(c, c->arg);
	return c->dead ? -1 : 0;
}

static uint32_t
rpc_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
rpc_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int
rpc_frame(struct rpc_conn *c, struct evbuffer *in, size_t have)
{
	uint8_t hdr[4], small[RPC_SMALL_FRAME], *m, *p;
	unsigned char tag;
	Shoal__Envelope *env;
	size_t mlen;
	uint32_t len;
	int r;

	if (have < sizeof(hdr))
		return 1;
	evbuffer_copyout(in, hdr, sizeof(hdr));
	len = rpc_get_be32(hdr);
	/* Refuse on the prefix alone: never buffer what we would refuse anyway. */
	if (len > c->max_frame + RPC_ABYTES)
		return rpc_fail(c, LOG_WARNING, "frame of %u bytes exceeds limit of %u", len,
		                c->max_frame + RPC_ABYTES);
	if (len < RPC_ABYTES)
		return rpc_fail(c, LOG_WARNING, "frame of %u bytes is shorter than its tag", len);
	if (have - sizeof(hdr) < len)
		return 1;
	p = evbuffer_pullup(in, (ev_ssize_t)(sizeof(hdr) + len));
	mlen = len - RPC_ABYTES;
	m = mlen <= sizeof(small) ? small : xmalloc(mlen);
	r = crypto_secretstream_xchacha20poly1305_pull(&c->rx, m, NULL, &tag, p + sizeof(hdr), len,
	                                               NULL, 0);
	evbuffer_drain(in, sizeof(hdr) + len);
	env = r == 0 && tag == RPC_TAG ? shoal__envelope__unpack(NULL, mlen, m) : NULL;
	if (m != small)
		free(m);
	if (r != 0)
		return rpc_fail(c, LOG_WARNING,
		                "decrypt failure (tampered, replayed or reordered frame)");
	if (tag != RPC_TAG)
		return rpc_fail(c, LOG_WARNING, "unexpected stream tag %u", tag);
	if (env == NULL)
		return rpc_fail(c, LOG_WARNING, "unparsable envelope (%zu bytes)", mlen);
	rpc_counted.frames_in++;
	rpc_counted.bytes_in += sizeof(hdr) + len;
	if (c->cb.message != NULL)
		c->cb.message(c, env, c->arg);
	shoal__envelope__free_unpacked(env, NULL);
	return c->dead ? -1 : 0;
}

static void
rpc_frame_timeoutcb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_conn *c = arg;

	(void)fd;
	(void)what;
	rpc_enter(c);
	rpc_fail(c, LOG_WARNING, "partial frame not completed within %d ms (%zu bytes held)",
	         c->frame_ms, c->held);
	rpc_leave(c);
}

/*
 * After a read: account what c still holds in its input buffer against the process budget,
 * and give a started frame frame_ms to complete (restarted when a frame completed), so a
 * peer cannot hold memory by sending most of a frame and then nothing. 0, or -1 once c is
 * closed.
 */
static int
rpc_hold(struct rpc_conn *c, size_t held, bool progressed)
{
	rpc_held_total = rpc_held_total - c->held + held;
	c->held = held;
	if (held > RPC_HELD_FLOOR && rpc_held_total > rpc_held_budget)
		return rpc_fail(c, LOG_WARNING,
		                "input over budget (%zu bytes of a partial frame held, %zu in all, "
		                "budget %zu)",
		                held, rpc_held_total, rpc_held_budget);
	if (c->state != RPC_READY)
		return 0; /* the handshake has its own deadline */
	if (held == 0) {
		if (c->frame_timer != NULL)
			event_del(c->frame_timer);
		return 0;
	}
	if (c->frame_timer == NULL)
		c->frame_timer = evtimer_new(bufferevent_get_base(c->bev), rpc_frame_timeoutcb, c);
	if (c->frame_timer != NULL && (progressed || !evtimer_pending(c->frame_timer, NULL))) {
		struct timeval tv = {c->frame_ms / 1000, (c->frame_ms % 1000) * 1000};

		evtimer_add(c->frame_timer, &tv);
	}
	return 0;
}

/* One handshake step's outcome as a parser's: 0 parse on, 1 more bytes needed, -1 closed. */
static int
rpc_handshake_step(struct rpc_conn *c, enum rpc_hs_step step, const struct rpc_hs_why *why)
{
	switch (step) {
	case RPC_HS_NEXT:
		return 0;
	case RPC_HS_MORE:
		return 1;
	case RPC_HS_DONE:
		return rpc_ready(c);
	default:
		return rpc_fail(c, LOG_WARNING, "%s", why->text);
	}
}

/* Parse what c's input holds: handshake steps, then frames. Whether any completed. */
static bool
rpc_parse(struct rpc_conn *c, struct evbuffer *in)
{
	struct rpc_hs_why why;
	bool progressed = false;
	int r = 0;

	while (r == 0 && !c->dead) {
		size_t have = evbuffer_get_length(in);

		switch (c->state) {
		case RPC_SERVER_HELLO:
			r = rpc_handshake_step(c, rpc_handshake_server_hello(c, in, have, &why),
			                       &why);
			break;
		case RPC_SERVER_FINISH:
			r = rpc_handshake_step(c, rpc_handshake_server_finish(c, in, have, &why),
			                       &why);
			break;
		case RPC_CLIENT_ACCEPT:
			r = rpc_handshake_step(c, rpc_handshake_client_accept(c, in, have, &why),
			                       &why);
			break;
		default:
			r = rpc_frame(c, in, have);
			break;
		}
		progressed |= r == 0;
	}
	return progressed;
}

/* The handshake's reads: libevent's. */
static void
rpc_readcb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct rpc_conn *c = arg;
	bool progressed;

	rpc_enter(c);
	progressed = rpc_parse(c, in);
	if (!c->dead)
		rpc_hold(c, evbuffer_get_length(in), progressed);
	rpc_leave(c);
}

/*
 * One read of at most want bytes, appended to in: what read(2) gave, or -1 with errno. The
 * read goes to a buffer of the thread's and is copied (a heartbeat's hundred bytes), rather
 * than into room reserved in in: that was a 16 KiB chunk malloc'd and freed per heartbeat. A
 * bufferevent keeps its input's end frozen so that only it fills it; so do we.
 */
static ssize_t
rpc_read_into(struct evbuffer *in, int fd, size_t want)
{
	static _Thread_local uint8_t room[RPC_READ_ROOM];
	ssize_t n;
	int e;

	if (want > sizeof(room))
		want = sizeof(room);
	n = read(fd, room, want);
	if (n <= 0)
		return n;
	evbuffer_unfreeze(in, 0);
	e = evbuffer_add(in, room, (size_t)n);
	evbuffer_freeze(in, 0);
	if (e != 0) {
		errno = ENOMEM;
		return -1;
	}
	return n;
}

/*
 * A ready connection's reads. libevent's evbuffer_read asks the kernel how much is waiting
 * (ioctl FIONREAD) before every read, and reads at most 4 KiB: a heartbeat cost a scheduler
 * 3 syscalls where 2 do, and a 45 KiB Assignments cost an agent 12 reads and 12 ioctls. Here
 * each read asks for RPC_READ_ROOM and the next is tried only when one filled it all.
 * The input still stops at one whole frame, as the handshake's watermark has it; the event's
 * own timeout is the idle timeout (nothing read for idle_ms).
 */
static void
rpc_rdcb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t limit = 4 + (size_t)c->max_frame + RPC_ABYTES;
	bool progressed = false, full = true;

	rpc_enter(c);
	if (what & EV_TIMEOUT)
		rpc_fail(c, LOG_WARNING, "idle timeout (nothing read for %d ms)", c->idle_ms);
	/* A message handler may have dropped c (closing: it stopped reading) or freed it. */
	for (int reads = 0; full && !c->dead && !c->closing && reads < RPC_READS; reads++) {
		size_t have = evbuffer_get_length(in), want;
		ssize_t n;

		if (have >= limit)
			break;
		want = limit - have < RPC_READ_ROOM ? limit - have : RPC_READ_ROOM;
		n = rpc_read_into(in, fd, want);
		if (n == 0) {
			rpc_eof(c);
		} else if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				rpc_fail(c, LOG_WARNING, "read error: %s", strerror(errno));
			break;
		} else {
			full = (size_t)n == want;
			progressed |= rpc_parse(c, in);
		}
	}
	if (!c->dead)
		rpc_hold(c, evbuffer_get_length(in), progressed);
	rpc_leave(c);
}

static void
rpc_eof(struct rpc_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t have = evbuffer_get_length(in);
	uint8_t hdr[4];

	if (c->state != RPC_READY)
		rpc_fail(c, LOG_WARNING, "connection closed during handshake");
	else if (have == 0)
		rpc_fail(c, LOG_DEBUG, "connection closed by peer");
	else if (have < sizeof(hdr))
		rpc_fail(c, LOG_WARNING, "truncated frame (EOF after %zu bytes of its length)",
		         have);
	else {
		evbuffer_copyout(in, hdr, sizeof(hdr));
		rpc_fail(c, LOG_WARNING, "truncated frame (EOF after %zu of %zu bytes)", have,
		         sizeof(hdr) + rpc_get_be32(hdr));
	}
}

static void
rpc_eventcb(struct bufferevent *bev, short what, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	struct rpc_conn *c = arg;

	(void)bev;
	rpc_enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		c->connecting = false;
	} else if (c->connecting && (what & BEV_EVENT_ERROR)) {
		rpc_fail(c, LOG_WARNING, "connect %s: %s", c->peer, strerror(e ? e : ECONNREFUSED));
	} else if (what & BEV_EVENT_TIMEOUT) {
		rpc_fail(c, LOG_WARNING, "idle timeout (nothing read for %d ms)", c->idle_ms);
	} else if (what & BEV_EVENT_EOF) {
		rpc_eof(c);
	} else if (what & BEV_EVENT_ERROR) {
		rpc_fail(c, LOG_WARNING, "%s error: %s",
		         (what & BEV_EVENT_READING) ? "read" : "write", strerror(e));
	}
	rpc_leave(c);
}

static void
rpc_timeoutcb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_conn *c = arg;

	(void)fd;
	(void)what;
	rpc_enter(c);
	if (c->connecting) {
		rpc_fail(c, LOG_WARNING, "connect %s: timed out after %d ms", c->peer, c->hs_ms);
	} else {
		rpc_fail(c, LOG_WARNING, "handshake timeout after %d ms", c->hs_ms);
	}
	rpc_leave(c);
}

/* Common setup of both sides; takes fd (-1: rpc_connect makes the socket). */
static struct rpc_conn *
rpc_new(struct event_base *base, int fd, const char *peer, const struct rpc_limits *limits,
        const struct rpc_callbacks *cb, void *arg)
{
	struct rpc_conn *c = xcalloc(1, sizeof(*c));
	struct timeval tv;
	int one = 1;

	snprintf(c->peer, sizeof(c->peer), "%s", peer != NULL ? peer : "?");
	if (fd != -1) {
		evutil_make_socket_nonblocking(fd);
		/* Frames are written whole; Nagle would only delay replies. Fails on AF_UNIX. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(base, rpc_timeoutcb, c);
	c->flush = event_new(base, -1, 0, rpc_flushcb, c);
	if (c->bev == NULL || c->timer == NULL || c->flush == NULL) {
		shoal_log(LOG_WARNING, "rpc: %s: closing: cannot set up the connection", c->peer);
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else if (fd != -1)
			close(fd);
		if (c->timer != NULL)
			event_free(c->timer);
		if (c->flush != NULL)
			event_free(c->flush);
		free(c);
		return NULL;
	}
	c->hs = xcalloc(1, sizeof(*c->hs));
	if (cb != NULL)
		c->cb = *cb;
	c->arg = arg;
	c->max_frame = RPC_DEFAULT_MAX_FRAME;
	c->hs_ms = RPC_DEFAULT_HANDSHAKE_MS;
	c->max_queued = RPC_DEFAULT_MAX_QUEUED;
	c->frame_ms = RPC_DEFAULT_FRAME_TIMEOUT_MS;
	if (limits != NULL) {
		if (limits->max_frame > 0)
			c->max_frame = limits->max_frame > UINT32_MAX - RPC_ABYTES
			                   ? UINT32_MAX - RPC_ABYTES
			                   : (uint32_t)limits->max_frame;
		if (limits->handshake_timeout_ms > 0)
			c->hs_ms = limits->handshake_timeout_ms;
		if (limits->idle_timeout_ms > 0)
			c->idle_ms = limits->idle_timeout_ms;
		if (limits->max_queued > 0)
			c->max_queued = limits->max_queued;
		if (limits->frame_timeout_ms > 0)
			c->frame_ms = limits->frame_timeout_ms;
	}
	bufferevent_setcb(c->bev, rpc_readcb, rpc_writecb, rpc_eventcb, c);
	/* The input never needs more than one whole frame: stop reading there (a peer that
	 * pipelines frames is read on as they are consumed). */
	bufferevent_setwatermark(c->bev, EV_READ, 0, 4 + (size_t)c->max_frame + RPC_ABYTES);
	tv.tv_sec = c->hs_ms / 1000;
	tv.tv_usec = (c->hs_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return c;
}

struct rpc_conn *
rpc_accept(struct event_base *base, int fd, const char *peer, const struct rpc_identity *id,
           const struct rpc_limits *limits, const struct rpc_callbacks *cb, void *arg)
{
	struct rpc_conn *c = rpc_new(base, fd, peer, limits, cb, arg);

	if (c == NULL)
		return NULL;
	c->id = id;
	c->state = RPC_SERVER_HELLO;
	return c;
}

struct rpc_conn *
rpc_client(struct event_base *base, int fd, const char *peer, const struct token *token,
           const struct rpc_limits *limits, const struct rpc_callbacks *cb, void *arg)
{
	struct rpc_conn *c = rpc_new(base, fd, peer, limits, cb, arg);

	if (c != NULL)
		rpc_handshake_client_start(c, token);
	return c;
}

struct rpc_conn *
rpc_connect(struct event_base *base, const char *host, uint16_t port, const struct token *token,
            const struct rpc_limits *limits, const struct rpc_callbacks *cb, void *arg,
            struct shoal_err *err)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	socklen_t sslen = sizeof(*sin);
	struct rpc_conn *c;
	char peer[64];
	int one = 1, fd;

	if (host == NULL || host[0] == '\0')
		host = "127.0.0.1";
	snprintf(peer, sizeof(peer), "%s:%u", host, port);
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
		int r = getaddrinfo(host, NULL, &hints, &res);

		if (r == EAI_SYSTEM)
			return err_set(err, errno, "resolve %s", host), NULL;
		if (r != 0)
			return err_set(err, 0, "resolve %s: %s", host, gai_strerror(r)), NULL;
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sslen = res->ai_addrlen;
		freeaddrinfo(res);
		if (ss.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		else
			sin->sin_port = htons(port);
	}
	c = rpc_new(base, -1, peer, limits, cb, arg);
	if (c == NULL)
		return err_set(err, 0, "connect %s: cannot set up the connection", peer), NULL;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sslen) == -1) {
		err_set(err, errno, "connect %s", peer);
		rpc_destroy(c);
		return NULL;
	}
	fd = bufferevent_getfd(c->bev);
	if (fd != -1)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->connecting = true;
	rpc_handshake_client_start(c, token);
	return c;
}

static void
rpc_killcb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_conn *c = arg;

	(void)fd;
	(void)what;
	rpc_enter(c);
	c->closing = false;
	rpc_fail(c, LOG_WARNING,
	         "peer not reading: over %zu bytes queued for it (%zu still unsent)", c->max_queued,
	         evbuffer_get_length(bufferevent_get_output(c->bev)));
	rpc_leave(c);
}

/*
 * Queuing more for c would pass max_queued: the peer stopped reading (5,000 Registers on a
 * non-reading socket took a scheduler from 6.5 to 73 MB). Drop it, but from the loop: the
 * sender may be inside another connection's callback, holding c, and the closed callback
 * must not free what it holds. Until then c sends nothing more. Returns -1 with err.
 */
static int
rpc_overflow(struct rpc_conn *c, size_t queued, struct shoal_err *err)
{
	if (c->kill == NULL)
		c->kill = evtimer_new(bufferevent_get_base(c->bev), rpc_killcb, c);
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (c->rd != NULL)
		event_del(c->rd);
	if (c->kill != NULL)
		event_active(c->kill, EV_TIMEOUT, 1);
	return err_set(err, 0, "rpc: %s: peer not reading (%zu bytes queued, limit %zu)", c->peer,
	               queued, c->max_queued);
}

int
rpc_send_bytes(struct rpc_conn *c, const void *data, size_t len, struct shoal_err *err)
{
	struct evbuffer *out;
	struct evbuffer_iovec v;
	size_t clen = len + RPC_ABYTES;

	if (c->dead || c->state != RPC_READY)
		return err_set(err, 0, "rpc: %s: connection not ready", c->peer);
	if (c->closing)
		return err_set(err, 0, "rpc: %s: closing: peer not reading", c->peer);
	if (len > c->max_frame)
		return err_set(err, 0,
		               "rpc: %s: message of %zu bytes exceeds the frame limit "
		               "of %u",
		               c->peer, len, c->max_frame);
	/* Encrypt straight into the output buffer: no copy of the ciphertext. */
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) + 4 + clen > c->max_queued)
		return rpc_overflow(c, evbuffer_get_length(out), err);
	if (evbuffer_reserve_space(out, (ev_ssize_t)(4 + clen), &v, 1) != 1)
		return err_set(err, ENOMEM, "rpc: %s: queue frame", c->peer);
	rpc_put_be32(v.iov_base, (uint32_t)clen);
	crypto_secretstream_xchacha20poly1305_push(&c->tx, (uint8_t *)v.iov_base + 4, NULL, data,
	                                           len, NULL, 0, RPC_TAG);
	v.iov_len = 4 + clen;
	if (evbuffer_commit_space(out, &v, 1) != 0)
		return err_set(err, ENOMEM, "rpc: %s: queue frame", c->peer);
	rpc_counted.frames_out++;
	rpc_counted.bytes_out += 4 + clen;
	rpc_queued(c);
	return 0;
}

int
rpc_send(struct rpc_conn *c, const Shoal__Envelope *env, struct shoal_err *err)
{
	size_t len = shoal__envelope__get_packed_size(env);
	uint8_t small[RPC_SMALL_FRAME], *buf;
	int r;

	if (len > c->max_frame)
		return err_set(err, 0,
		               "rpc: %s: message of %zu bytes exceeds the frame limit "
		               "of %u",
		               c->peer, len, c->max_frame);
	buf = len <= sizeof(small) ? small : xmalloc(len);
	shoal__envelope__pack(env, buf);
	r = rpc_send_bytes(c, buf, len, err);
	if (buf != small)
		free(buf);
	return r;
}

void
rpc_set_input_budget(size_t bytes)
{
	rpc_held_budget = bytes > 0 ? bytes : RPC_DEFAULT_INPUT_BUDGET;
}

size_t
rpc_input_held(void)
{
	return rpc_held_total;
}

const struct rpc_counters *
rpc_counters_get(void)
{
	return &rpc_counted;
}

void
rpc_free(struct rpc_conn *c)
{
	if (c == NULL)
		return;
	if (c->depth > 0) {
		/* Inside one of c's callbacks: the callback's caller frees it on the way out. */
		if (!c->dead)
			rpc_quiesce(c);
		return;
	}
	rpc_destroy(c);
}

enum token_role
rpc_conn_role(const struct rpc_conn *c)
{
	return (enum token_role)c->role;
}

const uint8_t *
rpc_conn_binding(const struct rpc_conn *c)
{
	return c->binding;
}

const char *
rpc_conn_peer(const struct rpc_conn *c)
{
	return c->peer;
}

bool
rpc_conn_connecting(const struct rpc_conn *c)
{
	return c->connecting;
}

size_t
rpc_conn_pending(const struct rpc_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void
rpc_set_idle_timeout(struct rpc_conn *c, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	c->idle_ms = ms > 0 ? ms : 0;
	/* The handshake has its own deadline; the idle clock starts once it is done. */
	if (c->state != RPC_READY || c->dead || c->closing)
		return;
	/* event_add without a timeout keeps the one the event had. */
	if (c->idle_ms == 0)
		event_del(c->rd);
	event_add(c->rd, c->idle_ms > 0 ? &tv : NULL);
}

void
rpc_set_user(struct rpc_conn *c, void *user)
{
	c->user = user;
}

void *
rpc_get_user(const struct rpc_conn *c)
{
	return c->user;
}
