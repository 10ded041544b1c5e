/*
 * The node proxy's HTTP mode (see proxy_http.h): one client connection, its current request,
 * its backend connections. The parser is proxy_http_parse.c.
 *
 * One client connection runs one request at a time (pipelined requests wait in its input
 * buffer), through these states: HEAD (reading a request head), a request in flight (its body
 * going up while the answer may already come down), TUNNEL after a 101, CLOSING (an error
 * answer or the last answer on its way out). Events are level-triggered and stay registered
 * (no epoll_ctl per request); a side is taken off only while the other cannot take its bytes.
 *
 * This file holds the client side; backend connections and the answer's relay are
 * proxy_http_backend.c, and the two share proxy_http_internal.h.
 */
#include "proxy_http.h"
#include "proxy_http_internal.h"

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

#include "timer.h"
#include "util.h"

/* After an error answer the client gets this long to read it before the close. */
#define PH_LINGER_MS 1000

void
proxy_http_buf_reserve(struct ph_buf *b, size_t n)
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

void
proxy_http_buf_append(struct ph_buf *b, const char *p, size_t n)
{
	proxy_http_buf_reserve(b, n);
	memcpy(b->d + b->off + b->len, p, n);
	b->len += n;
}

void
proxy_http_buf_consume(struct ph_buf *b, size_t n)
{
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

void
proxy_http_buf_free(struct ph_buf *b)
{
	free(b->d);
	memset(b, 0, sizeof(*b));
}

__thread char proxy_http_scratch[64 * 1024];

int64_t
proxy_http_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
proxy_http_arm(struct proxy_http_conn *c, int64_t ms)
{
	timer_add_ms(&c->tmr, ms);
}

void
proxy_http_ev(struct event *ev, bool *on, bool want)
{
	if (*on == want)
		return;
	*on = want;
	if (want)
		event_add(ev, NULL);
	else
		event_del(ev);
}

/* Bytes for the client: sent now if its socket takes them, the rest kept (and the backend
 * not read while that is over PH_HIGH). */
void
proxy_http_to_client(struct proxy_http_conn *c, const char *p, size_t n)
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
	proxy_http_buf_append(&c->cout, p, n);
	proxy_http_ev(&c->cwr, &c->cwr_on, true);
	if (c->cout.len > PH_HIGH && c->b)
		proxy_http_ev(&c->b->rd, &c->b->rd_on, false);
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
void
proxy_http_error(struct proxy_http_conn *c, int status)
{
	char msg[256];
	int n;

	if (c->resp_started || c->state == PH_TUNNEL) {
		c->dead = true;
		return;
	}
	proxy_http_backend_drop(c, false);
	n = snprintf(msg, sizeof(msg),
	             "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n%s\n",
	             status, ph_reason(status), strlen(ph_reason(status)) + 1, ph_reason(status));
	c->state = PH_CLOSING;
	c->linger = true;
	c->resp_started = true;
	proxy_http_to_client(c, msg, (size_t)n);
	if (!c->dead && c->cout.len == 0) {
		shutdown(c->fd, SHUT_WR);
		proxy_http_arm(c, PH_LINGER_MS);
	}
}

/* The answer is complete. */
void
proxy_http_finish(struct proxy_http_conn *c, bool reusable)
{
	bool keep = c->req.keep_alive && (c->resp.keep_alive || c->reframed) && c->req_done;

	proxy_http_backend_drop(c, reusable && c->resp.keep_alive && c->req_done);
	/* The buffer stays for the next request unless a big body grew it. */
	if (c->up.cap > PROXY_HTTP_RETRY_MAX)
		proxy_http_buf_free(&c->up);
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
	proxy_http_ev(&c->crd, &c->crd_on, !c->client_eof);
	c->last_ms = proxy_http_now_ms();
	proxy_http_arm(c, c->cfg->idle_ms);
	proxy_http_process(c); /* a pipelined request may be waiting */
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
				proxy_http_error(c, 400);
				return;
			}
			take = (size_t)k;
			c->req_done = c->chunk.done;
		}
	}
	if (take) {
		proxy_http_buf_append(&c->up, c->in.d + c->in.off, take);
		proxy_http_buf_consume(&c->in, take);
	}
	if (c->up.len - c->up_sent > PH_HIGH)
		proxy_http_ev(&c->crd, &c->crd_on, false);
}

void
proxy_http_process(struct proxy_http_conn *c)
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
				proxy_http_backend_flush(c);
		}
		return;
	}
	hl = proxy_http_parse_head_end(c->in.d + c->in.off, c->in.len, &c->scan);
	if (hl == 0) {
		if (c->client_eof) { /* nothing (or half a head) left to answer */
			c->state = PH_CLOSING;
			c->dead = c->cout.len == 0;
		} else if (c->in.len >= PROXY_HTTP_HEAD_MAX)
			proxy_http_error(c, 431);
		return;
	}
	if (hl > PROXY_HTTP_HEAD_MAX) {
		proxy_http_error(c, 431);
		return;
	}
	c->scan = 0;
	st = proxy_http_parse_request(c->in.d + c->in.off, hl, m);
	if (st != 0) {
		proxy_http_error(c, st);
		return;
	}
	c->first = false;
	c->up.len = c->up.off = 0;
	proxy_http_buf_reserve(&c->up, hl + PROXY_HTTP_ADD_MAX);
	c->up.len = proxy_http_parse_rewrite_request(c->in.d + c->in.off, m, c->ip, c->v6, c->up.d);
	c->up.off = 0;
	proxy_http_buf_consume(&c->in, hl);
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
	c->last_ms = proxy_http_now_ms();
	ph_body_up(c);
	if (!c->dead)
		proxy_http_backend_start(c, NULL);
}

static void
ph_client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_http_conn *c = arg;
	ssize_t n;

	(void)what;
	if (c->state == PH_CLOSING) { /* the answer is out or going: discard, wait for EOF */
		n = recv(fd, proxy_http_scratch, sizeof(proxy_http_scratch), MSG_DONTWAIT);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			c->dead = true;
		goto out;
	}
	if (c->in.len >= PROXY_HTTP_HEAD_MAX + PH_READ_SIZE) {
		/* pipelined requests beyond what one head may take: read on after this one */
		proxy_http_ev(&c->crd, &c->crd_on, false);
		return;
	}
	proxy_http_buf_reserve(&c->in, PH_READ_SIZE);
	n = recv(fd, c->in.d + c->in.off + c->in.len, c->in.cap - c->in.off - c->in.len,
	         MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 0 && c->state != PH_TUNNEL) {
		/* A half-close (`nc` does it when its input ends): the requests it sent still
		 * get their answers, then the connection closes. */
		c->client_eof = true;
		proxy_http_ev(&c->crd, &c->crd_on, false);
		proxy_http_process(c);
		goto out;
	}
	if (n <= 0) {
		c->dead = true;
		goto out;
	}
	c->in.len += (size_t)n;
	c->last_ms = proxy_http_now_ms();
	proxy_http_process(c);
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
		proxy_http_buf_consume(&c->cout, (size_t)s);
	}
	c->last_ms = proxy_http_now_ms();
	proxy_http_ev(&c->cwr, &c->cwr_on, false);
	if (c->b && c->state != PH_CLOSING)
		proxy_http_ev(&c->b->rd, &c->b->rd_on, true);
	if (c->state == PH_CLOSING) {
		if (c->linger) {
			shutdown(fd, SHUT_WR);
			proxy_http_arm(c, PH_LINGER_MS);
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
	int64_t now = proxy_http_now_ms(), limit, idle;

	(void)fd;
	(void)what;
	if (c->queued) { /* the queue's own timeout applies */
		proxy_http_arm(c, c->cfg->idle_ms);
		return;
	}
	if (c->state == PH_CLOSING) {
		c->dead = true;
		goto out;
	}
	if (c->b && c->b->connecting) {
		proxy_http_backend_retry(c, ETIMEDOUT, true);
		goto out;
	}
	limit = c->state == PH_HEAD && c->first && c->cfg->first_byte_ms < c->cfg->idle_ms
	            ? c->cfg->first_byte_ms
	            : c->cfg->idle_ms;
	idle = now - c->last_ms;
	if (idle >= limit) {
		if (c->state == PH_REQ && !c->resp_started)
			proxy_http_error(c, 504);
		else
			c->dead = true;
		goto out;
	}
	proxy_http_arm(c, limit - idle);
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
	proxy_http_ev(&c->crd, &c->crd_on, true);
	c->last_ms = proxy_http_now_ms();
	proxy_http_arm(c, cfg->first_byte_ms < cfg->idle_ms ? cfg->first_byte_ms : cfg->idle_ms);
	return c;
}

void
proxy_http_conn_slot(struct proxy_http_conn *c, void *be)
{
	c->queued = false;
	c->last_ms = proxy_http_now_ms();
	if (be == NULL) {
		proxy_http_error(c, 503);
	} else {
		if (!c->client_eof)
			proxy_http_ev(&c->crd, &c->crd_on, true);
		proxy_http_backend_start(c, be);
	}
	if (c->dead)
		c->ops->done(c->owner);
}

void
proxy_http_conn_free(struct proxy_http_conn *c)
{
	if (c == NULL)
		return;
	proxy_http_backend_drop(c, false);
	for (size_t i = 0; i < c->nidle; i++)
		proxy_http_backend_close(c->idle[i]);
	c->ops->unref(c->avoid);
	event_del(&c->crd);
	event_del(&c->cwr);
	event_del(&c->tmr);
	close(c->fd);
	proxy_http_buf_free(&c->in);
	proxy_http_buf_free(&c->cout);
	proxy_http_buf_free(&c->up);
	proxy_http_buf_free(&c->rhead);
	free(c);
}
