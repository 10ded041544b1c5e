#ifndef SHOAL_AGENT_PROXY_HTTP_PARSE_H
#define SHOAL_AGENT_PROXY_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The parser of the proxy's HTTP mode (proxy_http.h): pure, no I/O, written for hostile
 * input. Requests must be strict HTTP/1.0 or 1.1 with CRLF line ends, no obs-fold, no
 * Content-Length together with Transfer-Encoding, no differing Content-Lengths: anything a
 * backend could frame differently from the proxy is a 400 (request smuggling). Answers get
 * the leniency RFC 9112 allows a recipient (bare LF line ends).
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
size_t proxy_http_parse_head_end(const char *buf, size_t len, size_t *scan);

/* The same for an answer's head, whose lines may end with a bare LF. */
size_t proxy_http_parse_resp_head_end(const char *buf, size_t len, size_t *scan);

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
size_t proxy_http_parse_rewrite_request(const char *head, const struct proxy_http_msg *m,
                                        const char *client_ip, bool v6, char *out);

/*
 * The head of an answer to an HTTP/1.1 keep-alive client whose backend meant to close after
 * it (an HTTP/1.0 server, or no length: busybox httpd's CGI answers): the status line says
 * HTTP/1.1, Connection and Keep-Alive lines go, and with chunk set Transfer-Encoding: chunked
 * is added (the proxy then frames the body itself), so the client's connection outlives the
 * backend's (HAProxy does the same). Lines end CRLF, whatever the backend used. out has room
 * for 2 * m->head_len + 32 bytes.
 */
size_t proxy_http_parse_rewrite_response(const char *head, const struct proxy_http_msg *m,
                                         bool chunk, char *out);

/* A chunked body's framing, fed as bytes arrive. */
struct proxy_http_chunk {
	int state;
	uint64_t left; /* data bytes left in this chunk */
	int digits;
	bool done; /* the last chunk and the trailers have passed */
};

/* How many of p[0..n) belong to the body (all until done is set); -1 on a framing error. */
ssize_t proxy_http_parse_chunk(struct proxy_http_chunk *st, const char *p, size_t n);

#endif
