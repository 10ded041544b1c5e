/*
 * The node proxy's HTTP mode (see proxy_http.h), backend side: connections to backends
 * (opened, reused from the client connection's idle list, retried elsewhere on a failure
 * before the answer), the request going up and the answer coming down, reframed for a
 * keep-alive client when the backend closes.
 */
#include "proxy_http.h"
#include "proxy_http_internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "util.h"

static __thread char ph_chunkbuf[64 * 1024 + 32];

void
proxy_http_backend_close(struct ph_bconn *b)
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

/* The request's slot goes back; the backend connection to the idle list when keep, else
 * closed. */
void
proxy_http_backend_drop(struct proxy_http_conn *c, bool keep)
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
		proxy_http_backend_close(b);
		return;
	}
	if (c->nidle == PH_IDLE_MAX) {
		proxy_http_backend_close(c->idle[0]);
		memmove(c->idle, c->idle + 1, (PH_IDLE_MAX - 1) * sizeof(*c->idle));
		c->nidle--;
	}
	proxy_http_ev(&b->wr, &b->wr_on, false);
	proxy_http_ev(&b->rd, &b->rd_on,
	              true); /* a close while idle is seen and the connection dropped */
	c->idle[c->nidle++] = b;
}

/* The current backend connection failed before any byte of the answer: try another backend
 * while the whole request is still here. connect: the connect itself failed (the backend is
 * down; a reused connection that the backend had closed is not its failure). */
void
proxy_http_backend_retry(struct proxy_http_conn *c, int code, bool connect)
{
	void *be = c->be;

	if (connect)
		c->ops->failed(c->owner, be, code);
	c->ops->unref(c->avoid);
	c->ops->ref(be);
	c->avoid = be;
	proxy_http_backend_drop(c, false);
	if (c->up_trimmed || c->attempts >= PH_MAX_ATTEMPTS) {
		proxy_http_error(c, 502);
		return;
	}
	c->up_sent = 0;
	c->rhead.len = c->rhead.off = 0;
	proxy_http_backend_start(c, NULL);
}

/* Open (or take from the idle list) a connection to given (a slot and a reference taken), or
 * else to the next backend, and send the request. */
void
proxy_http_backend_start(struct proxy_http_conn *c, void *given)
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
			proxy_http_ev(&c->crd, &c->crd_on, false);
			return;
		}
		if (be == NULL) {
			proxy_http_error(c, c->attempts == 0 ? 503 : 502);
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
			proxy_http_backend_flush(c);
			return;
		}
		sa = c->ops->addr(be, &len);
		fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			/* No fd left here is this proxy's overload, not the backend's fault. */
			proxy_http_error(c, errno == EMFILE || errno == ENFILE ? 503 : 502);
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
		proxy_http_ev(&b->rd, &b->rd_on, true);
		if (rc == 0 || ph_established(fd)) {
			c->ops->connected(c->owner, be);
		} else {
			b->connecting = true;
			proxy_http_ev(&b->wr, &b->wr_on, true);
			proxy_http_arm(c, c->cfg->connect_ms);
		}
		proxy_http_backend_flush(c);
		return;
	}
	proxy_http_error(c, 502);
}

/* Send what up holds to the backend; keep it for a retry until it exceeds
 * PROXY_HTTP_RETRY_MAX. */
void
proxy_http_backend_flush(struct proxy_http_conn *c)
{
	struct ph_bconn *b = c->b;

	if (b == NULL || b->connecting)
		return;
	if (b->pp_len) {
		ssize_t s = send(b->fd, b->pp, b->pp_len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s != (ssize_t)b->pp_len) { /* a fresh socket takes 108 bytes, or is broken */
			proxy_http_backend_retry(c, errno ? errno : EIO, true);
			return;
		}
		b->pp_len = 0;
	}
	while (c->up_sent < c->up.len) {
		ssize_t s = send(b->fd, c->up.d + c->up.off + c->up_sent, c->up.len - c->up_sent,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (s == -1) {
			if (errno == EAGAIN || errno == EINTR) {
				proxy_http_ev(&b->wr, &b->wr_on, true);
				return;
			}
			if (!c->resp_started)
				proxy_http_backend_retry(c, errno, false);
			else
				c->dead = true;
			return;
		}
		c->up_sent += (size_t)s;
		c->bytes_in += (uint64_t)s;
	}
	proxy_http_ev(&b->wr, &b->wr_on, false);
	if (c->up_trimmed || c->up.len > PROXY_HTTP_RETRY_MAX || c->state == PH_TUNNEL) {
		c->up.len = c->up.off = 0;
		c->up_sent = 0;
		c->up_trimmed = true;
	}
	if (!c->crd_on && c->state != PH_CLOSING && !c->client_eof)
		proxy_http_ev(&c->crd, &c->crd_on, true);
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
		proxy_http_to_client(c, p, n);
		return;
	}
	while (n > 0 && !c->dead) {
		size_t take = n < 64 * 1024 ? n : 64 * 1024;

		k = snprintf(ph_chunkbuf, 32, "%zx\r\n", take);
		memcpy(ph_chunkbuf + k, p, take);
		memcpy(ph_chunkbuf + k + take, "\r\n", 2);
		proxy_http_to_client(c, ph_chunkbuf, (size_t)k + take + 2);
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
				proxy_http_error(c, 502);
			return;
		}
		c->rscan = 0;
		if (proxy_http_parse_response(h, hl, &c->req, &c->resp) == -1) {
			proxy_http_error(c, 502);
			return;
		}
		c->resp_started = true;
		c->rleft = c->resp.length;
		memset(&c->rchunk, 0, sizeof(c->rchunk));
		if (c->resp.status == 101) {
			/* The rest is the new protocol's: a raw relay from here. */
			c->state = PH_TUNNEL;
			proxy_http_to_client(c, h, c->rhead.len);
			c->rhead.len = c->rhead.off = 0;
			c->rhead_done = true;
			proxy_http_process(c);
			return;
		}
		if (c->resp.status < 200) { /* 100 Continue and the like: one more head follows */
			proxy_http_to_client(c, h, hl);
			proxy_http_buf_consume(&c->rhead, hl);
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
			proxy_http_to_client(c, out, n);
			c->bytes_out += hl;
			free(out);
			if (!c->dead)
				ph_body_out(c, h + hl, used);
		} else {
			proxy_http_to_client(c, h, hl + used);
		}
		if (c->dead)
			return;
		if (done)
			proxy_http_finish(c, used == c->rhead.len - hl);
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
		proxy_http_backend_close(b);
		return;
	}
	if (b->connecting)
		return; /* the write event says how the connect went */
	c->last_ms = proxy_http_now_ms();
	if (!c->rhead_done) {
		proxy_http_buf_reserve(&c->rhead, PH_READ_SIZE);
		n = recv(fd, c->rhead.d + c->rhead.off + c->rhead.len,
		         c->rhead.cap - c->rhead.off - c->rhead.len, MSG_DONTWAIT);
	} else {
		n = recv(fd, proxy_http_scratch, sizeof(proxy_http_scratch), MSG_DONTWAIT);
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		int code = n == 0 ? ECONNRESET : errno;

		if (!c->resp_started && c->state == PH_REQ)
			proxy_http_backend_retry(c, code, false);
		else if (c->state == PH_REQ && c->rhead_done &&
		         c->resp.body == PROXY_HTTP_BODY_CLOSE && n == 0) {
			if (c->rechunk)
				proxy_http_to_client(c, "0\r\n\r\n", 5);
			if (!c->dead)
				proxy_http_finish(c, false);
		} else
			c->dead = true;
		goto out;
	}
	if (c->state == PH_TUNNEL) {
		proxy_http_to_client(c, proxy_http_scratch, (size_t)n);
	} else if (!c->rhead_done) {
		c->rhead.len += (size_t)n;
		ph_resp_head(c);
	} else {
		size_t used;
		bool done;

		ph_resp_body(c, proxy_http_scratch, (size_t)n, &used, &done);
		if (!c->dead)
			ph_body_out(c, proxy_http_scratch, used);
		if (!c->dead && done)
			proxy_http_finish(c, used == (size_t)n);
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
		proxy_http_ev(&b->wr, &b->wr_on, false);
		return;
	}
	c->last_ms = proxy_http_now_ms();
	if (b->connecting) {
		int soerr = 0;
		socklen_t len = sizeof(soerr);

		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
			soerr = errno;
		if (soerr != 0) {
			proxy_http_backend_retry(c, soerr, true);
			goto out;
		}
		b->connecting = false;
		c->ops->connected(c->owner, b->be);
		proxy_http_arm(c, c->cfg->idle_ms);
	}
	proxy_http_backend_flush(c);
out:
	if (c->dead)
		c->ops->done(c->owner);
}
