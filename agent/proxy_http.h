#ifndef SHOAL_AGENT_PROXY_HTTP_H
#define SHOAL_AGENT_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

struct event_base;

/*
 * The node proxy's HTTP mode (`proxy: {mode: http}`): one client connection carries many
 * HTTP/1.x requests, and each goes to the next backend in rotation, with X-Forwarded-For
 * (appended to one the client sent), X-Forwarded-Proto and Forwarded added. A request whose
 * backend refuses the connect, or resets or closes before the first byte of the answer, is
 * sent again to another backend (at most 1 + 3 tries, like the L4 mode's connects), as long as
 * the proxy still holds all of it (PROXY_HTTP_RETRY_MAX bytes). Backend connections are kept
 * for the client connection's next requests (a few per client, HAProxy's `http-reuse safe`).
 *
 * Errors the client gets: 400 (malformed request, then close), 431 (head over
 * PROXY_HTTP_HEAD_MAX), 501 (a transfer coding other than chunked, CONNECT), 502 (no
 * backend answered, or the answer is not HTTP), 503 (no backend), 504 (no answer within the
 * idle timeout). Upgrades (101 Switching Protocols) become a plain two-way relay.
 *
 * The parser below is pure (no I/O) and written for hostile input: requests must be strict
 * HTTP/1.0 or 1.1 with CRLF line ends, no obs-fold, no Content-Length together with
 * Transfer-Encoding, no differing Content-Lengths: anything a backend could frame
 * differently from the proxy is a 400 (request smuggling).
 */

#define PROXY_HTTP_HEAD_MAX  (16 * 1024) /* request head; more: 431 */
#define PROXY_HTTP_RHEAD_MAX (64 * 1024) /* response head; more: 502 */
#define PROXY_HTTP_RETRY_MAX (64 * 1024) /* request bytes kept for a retry */

enum proxy_http_body {
	PROXY_HTTP_BODY_NONE = 0,
	PROXY_HTTP_BODY_LENGTH,  /* Content-Length */
	PROXY_HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
	PROXY_HTTP_BODY_CLOSE,   /* responses only: until the backend closes */
};

/* What the proxy needs of one request or response head. */
struct proxy_http_msg {
	size_t head_len; /* bytes of the head, its empty line included */
	int minor;       /* HTTP/1.minor */
	int status;      /* responses: 100..599 */
	bool is_head;    /* requests: the HEAD method (its answer has no body) */
	bool keep_alive; /* the sender keeps the connection after this message */
	bool upgrade;    /* Connection: upgrade */
	enum proxy_http_body body;
	uint64_t length; /* PROXY_HTTP_BODY_LENGTH */
	/* Requests: the end of the value of the last X-Forwarded-For line (0: none), and
	 * whether X-Forwarded-Proto was sent. */
	size_t xff_end;
	bool has_xfp;
};

/*
 * The length of the head at the start of buf[0..len) (through its empty line), or 0 when it
 * is not complete yet. *scan (0 at first) keeps where to look from on the next call, so a
 * head that arrives in pieces is scanned once.
 */
size_t proxy_http_head_end(const char *buf, size_t len, size_t *scan);

/* The same for an answer's head, whose lines may end with a bare LF. */
size_t proxy_http_resp_head_end(const char *buf, size_t len, size_t *scan);

/* Parse a complete request head (head_len bytes). 0, or the status to answer with (400, 501). */
int proxy_http_parse_request(const char *buf, size_t head_len, struct proxy_http_msg *m);

/* Parse a complete response head to request req. 0, or -1 when it is not HTTP/1.x. */
int proxy_http_parse_response(const char *buf, size_t head_len, const struct proxy_http_msg *req,
                              struct proxy_http_msg *m);

/*
 * The request head to send to the backend: head (m from proxy_http_parse_request) with
 * client_ip appended to its last X-Forwarded-For (or one added), X-Forwarded-Proto: http when
 * absent, and a Forwarded element. out has room for m->head_len + PROXY_HTTP_ADD_MAX bytes.
 */
#define PROXY_HTTP_ADD_MAX 256
size_t proxy_http_rewrite(const char *head, const struct proxy_http_msg *m, const char *client_ip,
                          bool v6, char *out);

/*
 * The head of an answer to an HTTP/1.1 keep-alive client whose backend meant to close after
 * it (an HTTP/1.0 server, or no length: busybox httpd's CGI answers): the status line says
 * HTTP/1.1, Connection and Keep-Alive lines go, and with chunk set Transfer-Encoding: chunked
 * is added (the proxy then frames the body itself), so the client's connection outlives the
 * backend's (HAProxy does the same). Lines end CRLF, whatever the backend used. out has room
 * for 2 * m->head_len + 32 bytes.
 */
size_t proxy_http_rewrite_response(const char *head, const struct proxy_http_msg *m, bool chunk,
                                   char *out);

/* A chunked body's framing, fed as bytes arrive. */
struct proxy_http_chunk {
	int state;
	uint64_t left; /* data bytes left in this chunk */
	int digits;
	bool done; /* the last chunk and the trailers have passed */
};

/* How many of p[0..n) belong to the body (all until done is set); -1 on a framing error. */
ssize_t proxy_http_chunk_feed(struct proxy_http_chunk *st, const char *p, size_t n);

/* ---- connections ---------------------------------------------------------------------- */

/* What the owner (proxy.c) gives: backends in rotation and their accounting. A backend is an
 * opaque pointer the owner keeps alive while a reference is held. */
struct proxy_http_ops {
	/* The next backend with a free slot, slot and one reference taken; avoid (may be NULL)
	 * is passed over while another will do. NULL: none. */
	void *(*pick)(void *owner, const void *avoid);
	/* pick found every backend at its limit: queue the client for a slot (true), which
	 * then comes through proxy_http_conn_slot; false: no queue (no limit). */
	bool (*wait)(void *owner);
	/* Give back pick's slot and reference. */
	void (*release)(void *owner, void *be);
	void (*ref)(void *be);
	void (*unref)(void *be);
	const struct sockaddr *(*addr)(void *be, socklen_t *len);
	/* A connect to be was refused, reset or timed out (errno code). */
	void (*failed)(void *owner, void *be, int code);
	void (*connected)(void *owner, void *be);
	/* Bytes of client requests (in) and answers (out) relayed. */
	void (*bytes)(void *owner, void *be, uint64_t in, uint64_t out);
	/* The client connection is over: the owner frees its side, then calls
	 * proxy_http_conn_free. */
	void (*done)(void *owner);
};

struct proxy_http_config {
	int64_t idle_ms;       /* keep-alive wait for a request, and for an answer */
	int64_t connect_ms;    /* backend connect */
	int64_t first_byte_ms; /* a new connection's first request head */
	int protocol;          /* enum proxy_protocol: a PROXY header on each backend connection */
};

struct proxy_http_conn;

/* Serve client fd (takes it) on base. The config and ops outlive the connection. */
struct proxy_http_conn *proxy_http_conn_new(struct event_base *base, int fd,
                                            const struct proxy_http_config *cfg,
                                            const struct proxy_http_ops *ops, void *owner);

/*
 * The slot a queued request waited for: be with a slot and one reference (taken), or NULL
 * when none came in time (the client gets a 503). May end the connection (ops->done).
 */
void proxy_http_conn_slot(struct proxy_http_conn *c, void *be);

/* Close the client and its backend connections. NULL is a no-op. */
void proxy_http_conn_free(struct proxy_http_conn *c);

#endif
