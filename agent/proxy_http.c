/*
 * The node proxy's HTTP mode (see proxy_http.h): one client connection, its current request,
 * its backend connections. The parser is proxy_http_parse.c.
 *
 * One client connection runs one request at a time (pipelined requests wait in its input
 * buffer), through these states: HEAD (reading a request head), a request in flight (its body
 * going up while the answer may already come down), TUNNEL after a 101, CLOSING (an error
 * answer or the last answer on its way out). Events are level-triggered and stay registered
 * (no epoll_ctl per request); a side is taken off only while the other cannot take its bytes.
 */
#include "proxy_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "proxy_pp.h"
#include "util.h"

/* ---- connections -------------------------------------------------------------------- */

#define PH_IDLE_MAX     4 /* backend connections a client connection keeps between requests */
#define PH_MAX_ATTEMPTS 4 /* tries per request: the first and HAProxy's retries 3 */
/* A side whose bytes the other side has not taken past this stops being read. */
#define PH_HIGH      (256 * 1024)
#define PH_READ_SIZE (16 * 1024)
/* After an error answer the client gets this long to read it before the close. */
#define PH_LINGER_MS 1000

struct ph_buf {
	char *d;
	size_t off, len, cap;
};

static void
ph_buf_reserve(struct ph_buf *b, size_t n)
{
	if (b->off + b->len + n <= b->cap)
		return;
	if (b->off) {
		memmove(b->d, b->d + b->off, b->len);
		b->off = 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n)
			cap *= 2;
		b->d = xrealloc(b->d, cap);
		b->cap = cap;
	}
}

static void
ph_buf_append(struct ph_buf *b, const char *p, size_t n)
{
	ph_buf_reserve(b, n);
	memcpy(b->d + b->off + b->len, p, n);
	b->len += n;
}

static void
ph_buf_consume(struct ph_buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

static void
ph_buf_free(struct ph_buf *b)
{
	free(b->d);
	memset(b, 0, sizeof(*b));
}

struct ph_bconn {
	struct proxy_http_conn *c;
	void *be; /* a ref */
	int fd;
	struct event rd, wr;
	bool rd_on, wr_on;
	bool connecting;
	bool fresh; /* opened for this request: a failure is the backend's, not a stale reuse */
	char pp[PROXY_PP_MAX];
	size_t pp_len;
};

enum ph_state {
	PH_HEAD,    /* waiting for (the rest of) a request head */
	PH_REQ,     /* a request in flight */
	PH_TUNNEL,  /* after 101 Switching Protocols: raw bytes both ways */
	PH_CLOSING, /* the last bytes to the client, then close */
};

struct proxy_http_conn {
	struct event_base *base;
	const struct proxy_http_config *cfg;
	const struct proxy_http_ops *ops;
	void *owner;
	int fd;
	struct event crd, cwr, tmr;
	bool crd_on, cwr_on;
	bool dead;       /* over: the callback that set it hands it to ops->done */
	bool linger;     /* an error answer went out: wait for the client's close */
	bool first;      /* no request head yet: first_byte_ms applies */
	bool client_eof; /* the client half-closed: answer what it sent, then close */
	bool queued;     /* waiting in the service's queue for a slot (ops->wait) */
	char ip[INET6_ADDRSTRLEN];
	bool v6;
	struct sockaddr_storage src, dst;
	enum ph_state state;
	int64_t last_ms;
	struct ph_buf in; /* client bytes not handled yet (a head, body, pipelined requests) */
	size_t scan;
	struct ph_buf cout; /* bytes for the client its socket did not take yet */
	/* The request in flight. */
	struct proxy_http_msg req;
	void *be; /* pick's slot and ref */
	struct ph_bconn *b;
	struct ph_buf up; /* request bytes for the backend; [0, up_sent) sent */
	size_t up_sent;
	bool up_trimmed; /* up no longer starts at the request: no retry */
	bool req_done;   /* the whole request is in up */
	uint64_t body_left;
	struct proxy_http_chunk chunk;
	int attempts;
	void *avoid; /* a ref: the backend that just failed */
	bool resp_started;
	struct ph_buf rhead; /* the answer's head until it is complete */
	size_t rscan;
	bool rhead_done;
	struct proxy_http_msg resp;
	uint64_t rleft;
	struct proxy_http_chunk rchunk;
	bool reframed; /* the answer's head was rewritten for a keep-alive client */
	bool rechunk;  /* ... and its close-delimited body goes out chunked */
	uint64_t bytes_in, bytes_out;
	struct ph_bconn *idle[PH_IDLE_MAX];
	size_t nidle;
};

static __thread char ph_scratch[64 * 1024];
static __thread char ph_chunkbuf[64 * 1024 + 32];

static int64_t
ph_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
ph_arm(struct proxy_http_conn *c, int64_t ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_add(&c->tmr, &tv);
}

static void
ph_ev(struct event *ev, bool *on, bool want)
{
	if (*on == want)
		return;
	*on = want;
	if (want)
		event_add(ev, NULL);
	else
		event_del(ev);
}

static void
ph_bconn_close(struct ph_bconn *b)
{
	const struct proxy_http_ops *ops = b->c->ops;

	event_del(&b->rd);
	event_del(&b->wr);
	close(b->fd);
	ops->unref(b->be);
	free(b);
}

/* A non-blocking connect says EINPROGRESS even when the handshake finished before it returned,
 * which loopback and a local bridge do: then the request goes now, not a loop turn later. */
static bool
ph_established(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
	       ti.tcpi_state == TCP_ESTABLISHED;
}

static void ph_bconn_read_cb(evutil_socket_t fd, short what, void *arg);
static void ph_bconn_write_cb(evutil_socket_t fd, short what, void *arg);
static void ph_process(struct proxy_http_conn *c);
static void ph_start_on(struct proxy_http_conn *c, void *given);

static void
ph_start(struct proxy_http_conn *c)
{
	ph_start_on(c, NULL);
}
static void ph_flush_up(struct proxy_http_conn *c);

/* Bytes for the client: sent now if its socket takes them, the rest kept (and the backend
 * not read while that is over PH_HIGH). */
static void
ph_to_client(struct proxy_http_conn *c, const char *p, size_t n)
{
	c->bytes_out += n;
	if (c->cout.len == 0) {
		ssize_t s = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s == -1 && errno != EAGAIN && errno != EINTR) {
			c->dead = true;
			return;
		}
		if (s > 0) {
			p += s;
			n -= (size_t)s;
		}
	}
	if (n == 0)
		return;
	ph_buf_append(&c->cout, p, n);
	ph_ev(&c->cwr, &c->cwr_on, true);
	if (c->cout.len > PH_HIGH && c->b)
		ph_ev(&c->b->rd, &c->b->rd_on, false);
}

/* The request's slot goes back; the backend connection to the idle list when keep, else
 * closed. */
static void
ph_drop_backend(struct proxy_http_conn *c, bool keep)
{
	struct ph_bconn *b = c->b;

	if (c->be) {
		c->ops->bytes(c->owner, c->be, c->bytes_in, c->bytes_out);
		c->bytes_in = c->bytes_out = 0;
		c->ops->release(c->owner, c->be);
		c->be = NULL;
	}
	c->b = NULL;
	if (b == NULL)
		return;
	if (!keep) {
		ph_bconn_close(b);
		return;
	}
	if (c->nidle == PH_IDLE_MAX) {
		ph_bconn_close(c->idle[0]);
		memmove(c->idle, c->idle + 1, (PH_IDLE_MAX - 1) * sizeof(*c->idle));
		c->nidle--;
	}
	ph_ev(&b->wr, &b->wr_on, false);
	ph_ev(&b->rd, &b->rd_on, true); /* a close while idle is seen and the connection dropped */
	c->idle[c->nidle++] = b;
}

static const char *
ph_reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Error";
	}
}

/* Answer status and close; only before any byte of an answer went out (else just close). */
static void
ph_error(struct proxy_http_conn *c, int status)
{
	char msg[256];
	int n;

	if (c->resp_started || c->state == PH_TUNNEL) {
		c->dead = true;
		return;
	}
	ph_drop_backend(c, false);
	n = snprintf(msg, sizeof(msg),
	             "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n%s\n",
	             status, ph_reason(status), strlen(ph_reason(status)) + 1, ph_reason(status));
	c->state = PH_CLOSING;
	c->linger = true;
	c->resp_started = true;
	ph_to_client(c, msg, (size_t)n);
	if (!c->dead && c->cout.len == 0) {
		shutdown(c->fd, SHUT_WR);
		ph_arm(c, PH_LINGER_MS);
	}
}

/* The answer is complete. */
static void
ph_finish(struct proxy_http_conn *c, bool reusable)
{
	bool keep = c->req.keep_alive && (c->resp.keep_alive || c->reframed) && c->req_done;

	ph_drop_backend(c, reusable && c->resp.keep_alive && c->req_done);
	/* The buffer stays for the next request unless a big body grew it. */
	if (c->up.cap > PROXY_HTTP_RETRY_MAX)
		ph_buf_free(&c->up);
	c->up.len = c->up.off = 0;
	c->up_sent = 0;
	c->up_trimmed = false;
	c->rhead.len = c->rhead.off = 0;
	c->ops->unref(c->avoid);
	c->avoid = NULL;
	if (!keep) {
		c->state = PH_CLOSING;
		if (c->cout.len == 0)
			c->dead = true;
		return;
	}
	c->state = PH_HEAD;
	c->resp_started = false;
	ph_ev(&c->crd, &c->crd_on, !c->client_eof);
	c->last_ms = ph_now_ms();
	ph_arm(c, c->cfg->idle_ms);
	ph_process(c); /* a pipelined request may be waiting */
}

/* The current backend connection failed before any byte of the answer: try another backend
 * while the whole request is still here. connect: the connect itself failed (the backend is
 * down; a reused connection that the backend had closed is not its failure). */
static void
ph_retry(struct proxy_http_conn *c, int code, bool connect)
{
	void *be = c->be;

	if (connect)
		c->ops->failed(c->owner, be, code);
	c->ops->unref(c->avoid);
	c->ops->ref(be);
	c->avoid = be;
	ph_drop_backend(c, false);
	if (c->up_trimmed || c->attempts >= PH_MAX_ATTEMPTS) {
		ph_error(c, 502);
		return;
	}
	c->up_sent = 0;
	c->rhead.len = c->rhead.off = 0;
	ph_start(c);
}

/* Open (or take from the idle list) a connection to given (a slot and a reference taken), or
 * else to the next backend, and send the request. */
static void
ph_start_on(struct proxy_http_conn *c, void *given)
{
	int one = 1;

	while (c->attempts < PH_MAX_ATTEMPTS) {
		struct ph_bconn *b = NULL;
		const struct sockaddr *sa;
		socklen_t len;
		void *be;
		int fd, rc;

		be = given ? given : c->ops->pick(c->owner, c->avoid);
		given = NULL;
		if (be == NULL && c->ops->wait(c->owner)) {
			/* The client is not read while it waits: what it sends stays in its
			 * socket, and only the slot or the queue's timeout ends the wait. */
			c->queued = true;
			ph_ev(&c->crd, &c->crd_on, false);
			return;
		}
		if (be == NULL) {
			ph_error(c, c->attempts == 0 ? 503 : 502);
			return;
		}
		c->attempts++;
		c->be = be;
		for (size_t i = 0; i < c->nidle; i++) {
			if (c->idle[i]->be != be)
				continue;
			b = c->idle[i];
			memmove(c->idle + i, c->idle + i + 1,
			        (c->nidle - i - 1) * sizeof(*c->idle));
			c->nidle--;
			b->fresh = false;
			c->b = b;
			ph_flush_up(c);
			return;
		}
		sa = c->ops->addr(be, &len);
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			/* No fd left here is this proxy's overload, not the backend's fault. */
			ph_error(c, errno == EMFILE || errno == ENFILE ? 503 : 502);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc = connect(fd, sa, len);
		if (rc == -1 && errno != EINPROGRESS) {
			int code = errno;

			close(fd);
			c->ops->failed(c->owner, be, code);
			c->ops->unref(c->avoid);
			c->ops->ref(be);
			c->avoid = be;
			c->ops->release(c->owner, be);
			c->be = NULL;
			continue;
		}
		b = xcalloc(1, sizeof(*b));
		b->c = c;
		b->fd = fd;
		b->be = be;
		c->ops->ref(be);
		b->fresh = true;
		event_assign(&b->rd, c->base, fd, EV_READ | EV_PERSIST, ph_bconn_read_cb, b);
		event_assign(&b->wr, c->base, fd, EV_WRITE | EV_PERSIST, ph_bconn_write_cb, b);
		if (c->cfg->protocol)
			b->pp_len = proxy_pp_build(c->cfg->protocol, (struct sockaddr *)&c->src,
			                           (struct sockaddr *)&c->dst, b->pp);
		c->b = b;
		ph_ev(&b->rd, &b->rd_on, true);
		if (rc == 0 || ph_established(fd)) {
			c->ops->connected(c->owner, be);
		} else {
			b->connecting = true;
			ph_ev(&b->wr, &b->wr_on, true);
			ph_arm(c, c->cfg->connect_ms);
		}
		ph_flush_up(c);
		return;
	}
	ph_error(c, 502);
}

/* Send what up holds to the backend; keep it for a retry until it exceeds
 * PROXY_HTTP_RETRY_MAX. */
static void
ph_flush_up(struct proxy_http_conn *c)
{
	struct ph_bconn *b = c->b;

	if (b == NULL || b->connecting)
		return;
	if (b->pp_len) {
		ssize_t s = send(b->fd, b->pp, b->pp_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s != (ssize_t)b->pp_len) { /* a fresh socket takes 108 bytes, or is broken */
			ph_retry(c, errno ? errno : EIO, true);
			return;
		}
		b->pp_len = 0;
	}
	while (c->up_sent < c->up.len) {
		ssize_t s = send(b->fd, c->up.d + c->up.off + c->up_sent, c->up.len - c->up_sent,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				ph_ev(&b->wr, &b->wr_on, true);
				return;
			}
			if (!c->resp_started)
				ph_retry(c, errno, false);
			else
				c->dead = true;
			return;
		}
		c->up_sent += (size_t)s;
		c->bytes_in += (uint64_t)s;
	}
	ph_ev(&b->wr, &b->wr_on, false);
	if (c->up_trimmed || c->up.len > PROXY_HTTP_RETRY_MAX || c->state == PH_TUNNEL) {
		c->up.len = c->up.off = 0;
		c->up_sent = 0;
		c->up_trimmed = true;
	}
	if (!c->crd_on && c->state != PH_CLOSING && !c->client_eof)
		ph_ev(&c->crd, &c->crd_on, true);
}

/* Move request body bytes (or tunnel bytes) from in to up. */
static void
ph_body_up(struct proxy_http_conn *c)
{
	size_t take = 0;

	if (c->state == PH_TUNNEL) {
		take = c->in.len;
	} else if (!c->req_done) {
		if (c->req.body == PROXY_HTTP_BODY_LENGTH) {
			take = c->in.len < c->body_left ? c->in.len : (size_t)c->body_left;
			c->body_left -= take;
			c->req_done = c->body_left == 0;
		} else if (c->req.body == PROXY_HTTP_BODY_CHUNKED) {
			ssize_t k =
			    proxy_http_parse_chunk(&c->chunk, c->in.d + c->in.off, c->in.len);

			if (k < 0) {
				ph_error(c, 400);
				return;
			}
			take = (size_t)k;
			c->req_done = c->chunk.done;
		}
	}
	if (take) {
		ph_buf_append(&c->up, c->in.d + c->in.off, take);
		ph_buf_consume(&c->in, take);
	}
	if (c->up.len - c->up_sent > PH_HIGH)
		ph_ev(&c->crd, &c->crd_on, false);
}

static void
ph_process(struct proxy_http_conn *c)
{
	struct proxy_http_msg *m = &c->req;
	size_t hl;
	int st;

	if (c->dead)
		return;
	if (c->state != PH_HEAD) {
		if (c->state == PH_REQ || c->state == PH_TUNNEL) {
			ph_body_up(c);
			if (!c->dead && c->state != PH_CLOSING)
				ph_flush_up(c);
		}
		return;
	}
	hl = proxy_http_parse_head_end(c->in.d + c->in.off, c->in.len, &c->scan);
	if (hl == 0) {
		if (c->client_eof) { /* nothing (or half a head) left to answer */
			c->state = PH_CLOSING;
			c->dead = c->cout.len == 0;
		} else if (c->in.len >= PROXY_HTTP_HEAD_MAX)
			ph_error(c, 431);
		return;
	}
	if (hl > PROXY_HTTP_HEAD_MAX) {
		ph_error(c, 431);
		return;
	}
	c->scan = 0;
	st = proxy_http_parse_request(c->in.d + c->in.off, hl, m);
	if (st != 0) {
		ph_error(c, st);
		return;
	}
	c->first = false;
	c->up.len = c->up.off = 0;
	ph_buf_reserve(&c->up, hl + PROXY_HTTP_ADD_MAX);
	c->up.len = proxy_http_parse_rewrite_request(c->in.d + c->in.off, m, c->ip, c->v6, c->up.d);
	c->up.off = 0;
	ph_buf_consume(&c->in, hl);
	c->state = PH_REQ;
	c->up_sent = 0;
	c->attempts = 0;
	c->resp_started = false;
	c->rhead_done = false;
	c->reframed = c->rechunk = false;
	c->rhead.len = c->rhead.off = 0;
	c->rscan = 0;
	c->body_left = m->length;
	memset(&c->chunk, 0, sizeof(c->chunk));
	c->req_done = m->body == PROXY_HTTP_BODY_NONE;
	c->last_ms = ph_now_ms();
	ph_body_up(c);
	if (!c->dead)
		ph_start(c);
}

/* Bytes of the answer: its head (in rhead) parsed once complete, then body framing. */
static void
ph_resp_body(struct proxy_http_conn *c, const char *p, size_t n, size_t *used, bool *done)
{
	size_t take = n;

	*done = false;
	switch (c->resp.body) {
	case PROXY_HTTP_BODY_NONE:
		take = 0;
		*done = true;
		break;
	case PROXY_HTTP_BODY_LENGTH:
		take = n < c->rleft ? n : (size_t)c->rleft;
		c->rleft -= take;
		*done = c->rleft == 0;
		break;
	case PROXY_HTTP_BODY_CHUNKED: {
		ssize_t k = proxy_http_parse_chunk(&c->rchunk, p, n);

		if (k < 0) {
			c->dead = true;
			take = 0;
			break;
		}
		take = (size_t)k;
		*done = c->rchunk.done;
		break;
	}
	case PROXY_HTTP_BODY_CLOSE:
		break;
	}
	*used = take;
}

/* Body bytes of the answer for the client: as they are, or as one chunk when rechunk. */
static void
ph_body_out(struct proxy_http_conn *c, const char *p, size_t n)
{
	int k;

	if (!c->rechunk || n == 0) {
		ph_to_client(c, p, n);
		return;
	}
	while (n > 0 && !c->dead) {
		size_t take = n < 64 * 1024 ? n : 64 * 1024;

		k = snprintf(ph_chunkbuf, 32, "%zx\r\n", take);
		memcpy(ph_chunkbuf + k, p, take);
		memcpy(ph_chunkbuf + k + take, "\r\n", 2);
		ph_to_client(c, ph_chunkbuf, (size_t)k + take + 2);
		p += take;
		n -= take;
	}
}

/* The answer's head is complete in rhead: parse it, pass it and what follows on. */
static void
ph_resp_head(struct proxy_http_conn *c)
{
	for (;;) {
		char *h = c->rhead.d + c->rhead.off;
		size_t hl = proxy_http_parse_resp_head_end(h, c->rhead.len, &c->rscan), used = 0;
		bool done;

		if (hl == 0) {
			if (c->rhead.len > PROXY_HTTP_RHEAD_MAX)
				ph_error(c, 502);
			return;
		}
		c->rscan = 0;
		if (proxy_http_parse_response(h, hl, &c->req, &c->resp) == -1) {
			ph_error(c, 502);
			return;
		}
		c->resp_started = true;
		c->rleft = c->resp.length;
		memset(&c->rchunk, 0, sizeof(c->rchunk));
		if (c->resp.status == 101) {
			/* The rest is the new protocol's: a raw relay from here. */
			c->state = PH_TUNNEL;
			ph_to_client(c, h, c->rhead.len);
			c->rhead.len = c->rhead.off = 0;
			c->rhead_done = true;
			ph_process(c);
			return;
		}
		if (c->resp.status < 200) { /* 100 Continue and the like: one more head follows */
			ph_to_client(c, h, hl);
			ph_buf_consume(&c->rhead, hl);
			c->resp_started = false; /* still nothing final: a retry stays possible */
			if (c->dead)
				return;
			continue;
		}
		c->rhead_done = true;
		ph_resp_body(c, h + hl, c->rhead.len - hl, &used, &done);
		c->reframed = c->req.keep_alive && c->req.minor == 1 && !c->resp.keep_alive;
		c->rechunk = c->reframed && c->resp.body == PROXY_HTTP_BODY_CLOSE;
		if (c->reframed) {
			char *out = xmalloc(2 * hl + 32);
			size_t n = proxy_http_parse_rewrite_response(h, &c->resp, c->rechunk, out);

			c->bytes_out -= n; /* counted as the backend's bytes below */
			ph_to_client(c, out, n);
			c->bytes_out += hl;
			free(out);
			if (!c->dead)
				ph_body_out(c, h + hl, used);
		} else {
			ph_to_client(c, h, hl + used);
		}
		if (c->dead)
			return;
		if (done)
			ph_finish(c, used == c->rhead.len - hl);
		else
			c->rhead.len = c->rhead.off = 0;
		return;
	}
}

static void
ph_bconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ph_bconn *b = arg;
	struct proxy_http_conn *c = b->c;
	ssize_t n;

	(void)what;
	if (b != c->b) { /* idle: the backend closed it (or sent what no request asked for) */
		for (size_t i = 0; i < c->nidle; i++) {
			if (c->idle[i] == b) {
				memmove(c->idle + i, c->idle + i + 1,
				        (c->nidle - i - 1) * sizeof(*c->idle));
				c->nidle--;
				break;
			}
		}
		ph_bconn_close(b);
		return;
	}
	if (b->connecting)
		return; /* the write event says how the connect went */
	c->last_ms = ph_now_ms();
	if (!c->rhead_done) {
		ph_buf_reserve(&c->rhead, PH_READ_SIZE);
		n = recv(fd, c->rhead.d + c->rhead.off + c->rhead.len,
		         c->rhead.cap - c->rhead.off - c->rhead.len, MSG_DONTWAIT);
	} else {
		n = recv(fd, ph_scratch, sizeof(ph_scratch), MSG_DONTWAIT);
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		int code = n == 0 ? ECONNRESET : errno;

		if (!c->resp_started && c->state == PH_REQ)
			ph_retry(c, code, false);
		else if (c->state == PH_REQ && c->rhead_done &&
		         c->resp.body == PROXY_HTTP_BODY_CLOSE && n == 0) {
			if (c->rechunk)
				ph_to_client(c, "0\r\n\r\n", 5);
			if (!c->dead)
				ph_finish(c, false);
		} else
			c->dead = true;
		goto out;
	}
	if (c->state == PH_TUNNEL) {
		ph_to_client(c, ph_scratch, (size_t)n);
	} else if (!c->rhead_done) {
		c->rhead.len += (size_t)n;
		ph_resp_head(c);
	} else {
		size_t used;
		bool done;

		ph_resp_body(c, ph_scratch, (size_t)n, &used, &done);
		if (!c->dead)
			ph_body_out(c, ph_scratch, used);
		if (!c->dead && done)
			ph_finish(c, used == (size_t)n);
	}
out:
	if (c->dead)
		c->ops->done(c->owner);
}

static void
ph_bconn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ph_bconn *b = arg;
	struct proxy_http_conn *c = b->c;

	(void)what;
	if (b != c->b) {
		ph_ev(&b->wr, &b->wr_on, false);
		return;
	}
	c->last_ms = ph_now_ms();
	if (b->connecting) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
			soerr = errno;
		if (soerr != 0) {
			ph_retry(c, soerr, true);
			goto out;
		}
		b->connecting = false;
		c->ops->connected(c->owner, b->be);
		ph_arm(c, c->cfg->idle_ms);
	}
	ph_flush_up(c);
out:
	if (c->dead)
		c->ops->done(c->owner);
}

static void
ph_client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_http_conn *c = arg;
	ssize_t n;

	(void)what;
	if (c->state == PH_CLOSING) { /* the answer is out or going: discard, wait for EOF */
		n = recv(fd, ph_scratch, sizeof(ph_scratch), MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			c->dead = true;
		goto out;
	}
	if (c->in.len >= PROXY_HTTP_HEAD_MAX + PH_READ_SIZE) {
		/* pipelined requests beyond what one head may take: read on after this one */
		ph_ev(&c->crd, &c->crd_on, false);
		return;
	}
	ph_buf_reserve(&c->in, PH_READ_SIZE);
	n = recv(fd, c->in.d + c->in.off + c->in.len, c->in.cap - c->in.off - c->in.len,
	         MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0 && c->state != PH_TUNNEL) {
		/* A half-close (`nc` does it when its input ends): the requests it sent still
		 * get their answers, then the connection closes. */
		c->client_eof = true;
		ph_ev(&c->crd, &c->crd_on, false);
		ph_process(c);
		goto out;
	}
	if (n <= 0) {
		c->dead = true;
		goto out;
	}
	c->in.len += (size_t)n;
	c->last_ms = ph_now_ms();
	ph_process(c);
out:
	if (c->dead)
		c->ops->done(c->owner);
}

static void
ph_client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_http_conn *c = arg;

	(void)what;
	while (c->cout.len) {
		ssize_t s =
		    send(fd, c->cout.d + c->cout.off, c->cout.len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s == -1) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			c->dead = true;
			goto out;
		}
		ph_buf_consume(&c->cout, (size_t)s);
	}
	c->last_ms = ph_now_ms();
	ph_ev(&c->cwr, &c->cwr_on, false);
	if (c->b && c->state != PH_CLOSING)
		ph_ev(&c->b->rd, &c->b->rd_on, true);
	if (c->state == PH_CLOSING) {
		if (c->linger) {
			shutdown(fd, SHUT_WR);
			ph_arm(c, PH_LINGER_MS);
		} else {
			c->dead = true;
		}
	}
out:
	if (c->dead)
		c->ops->done(c->owner);
}

static void
ph_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_http_conn *c = arg;
	int64_t now = ph_now_ms(), limit, idle;

	(void)fd;
	(void)what;
	if (c->queued) { /* the queue's own timeout applies */
		ph_arm(c, c->cfg->idle_ms);
		return;
	}
	if (c->state == PH_CLOSING) {
		c->dead = true;
		goto out;
	}
	if (c->b && c->b->connecting) {
		ph_retry(c, ETIMEDOUT, true);
		goto out;
	}
	limit = c->state == PH_HEAD && c->first && c->cfg->first_byte_ms < c->cfg->idle_ms
	            ? c->cfg->first_byte_ms
	            : c->cfg->idle_ms;
	idle = now - c->last_ms;
	if (idle >= limit) {
		if (c->state == PH_REQ && !c->resp_started)
			ph_error(c, 504);
		else
			c->dead = true;
		goto out;
	}
	ph_arm(c, limit - idle);
out:
	if (c->dead)
		c->ops->done(c->owner);
}

struct proxy_http_conn *
proxy_http_conn_new(struct event_base *base, int fd, const struct proxy_http_config *cfg,
                    const struct proxy_http_ops *ops, void *owner)
{
	struct proxy_http_conn *c = xcalloc(1, sizeof(*c));
	socklen_t slen = sizeof(c->src), dlen = sizeof(c->dst);

	c->base = base;
	c->cfg = cfg;
	c->ops = ops;
	c->owner = owner;
	c->fd = fd;
	c->first = true;
	c->state = PH_HEAD;
	if (getpeername(fd, (struct sockaddr *)&c->src, &slen) == -1)
		c->src.ss_family = AF_UNSPEC;
	/* The local address is only for a PROXY header: a syscall saved per connection. */
	if (cfg->protocol == 0 || getsockname(fd, (struct sockaddr *)&c->dst, &dlen) == -1)
		c->dst.ss_family = AF_UNSPEC;
	if (c->src.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&c->src;

		/* A v4 client of a dual-stack listener is a v4 address to the backend. */
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], c->ip, sizeof(c->ip));
		} else {
			inet_ntop(AF_INET6, &a->sin6_addr, c->ip, sizeof(c->ip));
			c->v6 = true;
		}
	} else if (c->src.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&c->src)->sin_addr, c->ip,
		          sizeof(c->ip));
	} else {
		snprintf(c->ip, sizeof(c->ip), "unknown");
	}
	event_assign(&c->crd, base, fd, EV_READ | EV_PERSIST, ph_client_read_cb, c);
	event_assign(&c->cwr, base, fd, EV_WRITE | EV_PERSIST, ph_client_write_cb, c);
	event_assign(&c->tmr, base, -1, 0, ph_timer_cb, c);
	ph_ev(&c->crd, &c->crd_on, true);
	c->last_ms = ph_now_ms();
	ph_arm(c, cfg->first_byte_ms < cfg->idle_ms ? cfg->first_byte_ms : cfg->idle_ms);
	return c;
}

void
proxy_http_conn_slot(struct proxy_http_conn *c, void *be)
{
	c->queued = false;
	c->last_ms = ph_now_ms();
	if (be == NULL) {
		ph_error(c, 503);
	} else {
		if (!c->client_eof)
			ph_ev(&c->crd, &c->crd_on, true);
		ph_start_on(c, be);
	}
	if (c->dead)
		c->ops->done(c->owner);
}

void
proxy_http_conn_free(struct proxy_http_conn *c)
{
	if (c == NULL)
		return;
	ph_drop_backend(c, false);
	for (size_t i = 0; i < c->nidle; i++)
		ph_bconn_close(c->idle[i]);
	c->ops->unref(c->avoid);
	event_del(&c->crd);
	event_del(&c->cwr);
	event_del(&c->tmr);
	close(c->fd);
	ph_buf_free(&c->in);
	ph_buf_free(&c->cout);
	ph_buf_free(&c->up);
	ph_buf_free(&c->rhead);
	free(c);
}
