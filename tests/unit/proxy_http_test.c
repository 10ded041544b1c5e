/*
 * Unit tests for agent/proxy_http_parse (the HTTP mode's parser), agent/proxy_http (the mode
 * end to end over 127.0.0.1 with backends in threads) and agent/proxy_pp (the PROXY protocol
 * header, and the L4 proxy sending it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "err.h"
#include "log.h"
#include "agent/proxy.h"
#include "agent/proxy_http.h"
#include "agent/proxy_http_parse.h"
#include "agent/proxy_pp.h"
#include "proxy_serve.h"

/* ---- parser ------------------------------------------------------------------------- */

static int
parse_req(const char *s, struct proxy_http_msg *m)
{
	size_t scan = 0, hl = proxy_http_parse_head_end(s, strlen(s), &scan);

	if (hl == 0)
		return -1;
	return proxy_http_parse_request(s, hl, m);
}

static void
test_head_end(void **state)
{
	const char *r = "GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
	size_t scan = 0, n = strlen(r);

	(void)state;
	/* Fed a byte at a time, the end is found exactly once, where it is. */
	for (size_t i = 1; i < n; i++) {
		size_t hl = proxy_http_parse_head_end(r, i, &scan);

		if (i < n - 4)
			assert_int_equal(hl, 0);
		else
			assert_int_equal(hl, n - 4);
		if (hl)
			break;
	}
	scan = 0;
	assert_int_equal(proxy_http_parse_head_end("\r\n\r", 3, &scan), 0);
	assert_int_equal(proxy_http_parse_head_end("\r\n\r\n", 4, &scan), 4);
}

static void
test_request_ok(void **state)
{
	struct proxy_http_msg m;

	(void)state;
	assert_int_equal(parse_req("GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n", &m), 0);
	assert_true(m.keep_alive);
	assert_int_equal(m.body, PROXY_HTTP_BODY_NONE);
	assert_int_equal(m.minor, 1);
	assert_int_equal(parse_req("GET / HTTP/1.0\r\n\r\n", &m), 0);
	assert_false(m.keep_alive);
	assert_int_equal(parse_req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &m), 0);
	assert_true(m.keep_alive);
	assert_int_equal(parse_req("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &m), 0);
	assert_false(m.keep_alive);
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_LENGTH);
	assert_int_equal(m.length, 12);
	/* The same length twice is one length. */
	assert_int_equal(
	    parse_req("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", &m), 0);
	assert_int_equal(parse_req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_CHUNKED);
	assert_int_equal(parse_req("HEAD / HTTP/1.1\r\n\r\n", &m), 0);
	assert_true(m.is_head);
	assert_int_equal(
	    parse_req("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", &m),
	    0);
	assert_true(m.upgrade);
}

/* Anything two parsers could frame differently, or that is not HTTP/1.x, is refused. */
static void
test_request_hostile(void **state)
{
	static const struct {
		const char *req;
		int want;
	} cases[] = {
	    {"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 501},
	    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
	    {"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\n folded\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nX: a\rY: b\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", 400},
	    {"GET / HTTP/2.0\r\n\r\n", 400},
	    {"GET / HTTP/1.12\r\n\r\n", 400},
	    {"GET  / HTTP/1.1\r\n\r\n", 400},
	    {"GET /a b HTTP/1.1\r\n\r\n", 400},
	    {"G(T / HTTP/1.1\r\n\r\n", 400},
	    {" GET / HTTP/1.1\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\n\r\n", 0},
	    {"CONNECT a:443 HTTP/1.1\r\n\r\n", 501},
	    {"GET / HTTP/1.1\r\n:x\r\n\r\n", 400},
	};
	struct proxy_http_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = parse_req(cases[i].req, &m);

		if (got != cases[i].want)
			fail_msg("case %zu: %s: got %d, want %d", i, cases[i].req, got,
			         cases[i].want);
	}
	/* A NUL in the head (length-delimited, not a C string). */
	const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	assert_int_equal(proxy_http_parse_request(nul, sizeof(nul) - 1, &m), 400);
}

static void
test_response(void **state)
{
	struct proxy_http_msg req = {0}, m;
	const char *r;

	(void)state;
	r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.status, 200);
	assert_int_equal(m.body, PROXY_HTTP_BODY_LENGTH);
	assert_true(m.keep_alive);
	r = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_false(m.keep_alive);
	r = "HTTP/1.1 200 OK\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_CLOSE);
	assert_false(m.keep_alive);
	r = "HTTP/1.1 204 No Content\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_NONE);
	assert_true(m.keep_alive);
	r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_CHUNKED);
	req.is_head = true;
	r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_NONE);
	r = "HTTP/1.1 20 OK\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), -1);
	r = "SSH-2.0-OpenSSH\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), -1);
	r = "HTTP/1.1 200\r\n\r\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	/* Bare LF line ends from a server (busybox httpd passing a CGI's lines on). */
	size_t scan = 0;
	r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\nContent-Length: 3\n\nabc";
	assert_int_equal(proxy_http_parse_resp_head_end(r, strlen(r), &scan), strlen(r) - 3);
	assert_int_equal(proxy_http_parse_response(r, strlen(r) - 3, &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_NONE); /* req.is_head is still set */
	req.is_head = false;
	assert_int_equal(proxy_http_parse_response(r, strlen(r) - 3, &req, &m), 0);
	assert_int_equal(m.length, 3);
	r = "HTTP/1.1 200 OK\nX: a\rb\n\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), -1);
}

static void
test_chunked(void **state)
{
	const char *body = "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	struct proxy_http_chunk st = {0};
	size_t n = strlen(body), off = 0;

	(void)state;
	/* A byte at a time: the body ends exactly before NEXT. */
	while (!st.done && off < n) {
		ssize_t k = proxy_http_parse_chunk(&st, body + off, 1);

		assert_true(k == 0 || k == 1);
		off += (size_t)k;
		if (k == 0)
			break;
	}
	assert_true(st.done);
	assert_int_equal(off, n - 4);
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, body, n), (ssize_t)(n - 4));
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, "0\r\n\r\n", 5), 5);
	assert_true(st.done);
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, "x\r\n", 3), -1);
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, "ffffffffffffffffff\r\n", 20), -1);
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, "2\r\nabX\r\n", 8), -1);
	memset(&st, 0, sizeof(st));
	assert_int_equal(proxy_http_parse_chunk(&st, "2\nab\r\n", 6), -1);
}

static void
test_rewrite(void **state)
{
	struct proxy_http_msg m;
	char out[1024];
	size_t n;
	const char *r;

	(void)state;
	r = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(parse_req(r, &m), 0);
	n = proxy_http_parse_rewrite_request(r, &m, "10.0.0.7", false, out);
	out[n] = '\0';
	assert_string_equal(out, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.7\r\n"
	                         "X-Forwarded-Proto: http\r\nForwarded: for=10.0.0.7;proto=http\r\n"
	                         "\r\n");
	/* Appended to the last X-Forwarded-For; a Forwarded-Proto sent is kept as is. */
	r = "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2  \r\n"
	    "X-Forwarded-Proto: https\r\n\r\n";
	assert_int_equal(parse_req(r, &m), 0);
	n = proxy_http_parse_rewrite_request(r, &m, "::1", true, out);
	out[n] = '\0';
	assert_string_equal(out, "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\n"
	                         "x-forwarded-for: 2.2.2.2, ::1  \r\nX-Forwarded-Proto: https\r\n"
	                         "Forwarded: for=\"[::1]\";proto=http\r\n\r\n");
}

static void
test_rewrite_response(void **state)
{
	const char *r = "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n"
	                "Keep-Alive: timeout=5\r\n\r\n";
	struct proxy_http_msg req = {0}, m;
	char out[512];
	size_t n;

	(void)state;
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	assert_int_equal(m.body, PROXY_HTTP_BODY_CLOSE);
	n = proxy_http_parse_rewrite_response(r, &m, true, out);
	out[n] = '\0';
	assert_string_equal(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                         "Transfer-Encoding: chunked\r\n\r\n");
	r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\n\n";
	assert_int_equal(proxy_http_parse_response(r, strlen(r), &req, &m), 0);
	n = proxy_http_parse_rewrite_response(r, &m, true, out);
	out[n] = '\0';
	assert_string_equal(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
	                         "Transfer-Encoding: chunked\r\n\r\n");
}

static void
test_pp_build(void **state)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(8080)};
	struct sockaddr_in6 c6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	char out[PROXY_PP_MAX + 1];
	size_t n;

	(void)state;
	inet_pton(AF_INET, "192.168.56.11", &a.sin_addr);
	inet_pton(AF_INET, "192.168.56.12", &b.sin_addr);
	n = proxy_pp_build(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
	out[n] = '\0';
	assert_string_equal(out, "PROXY TCP4 192.168.56.11 192.168.56.12 40000 8080\r\n");
	n = proxy_pp_build(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
	assert_int_equal(n, 28);
	assert_memory_equal(out, "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16);
	assert_memory_equal(out + 16, "\xc0\xa8\x38\x0b\xc0\xa8\x38\x0c\x9c\x40\x1f\x90", 12);
	/* Mixed families: UNKNOWN / UNSPEC. */
	n = proxy_pp_build(1, (struct sockaddr *)&a, (struct sockaddr *)&c6, out);
	out[n] = '\0';
	assert_string_equal(out, "PROXY UNKNOWN\r\n");
	n = proxy_pp_build(2, (struct sockaddr *)&c6, (struct sockaddr *)&c6, out);
	assert_int_equal(n, 52);
	assert_int_equal((unsigned char)out[13], 0x21);
	/* The longest v1 line fits. */
	memset(&c6.sin6_addr, 0xff, 16);
	c6.sin6_port = htons(65535);
	n = proxy_pp_build(1, (struct sockaddr *)&c6, (struct sockaddr *)&c6, out);
	assert_true(n > 0 && n <= PROXY_PP_MAX);
}

/* ---- end to end over 127.0.0.1 -------------------------------------------------------- */

/* A backend: a listening socket and a thread per connection. mode: 0 HTTP keep-alive
 * (answers "b<id> xff=<X-Forwarded-For> fwd=<Forwarded> len=<body bytes>"), 1 reads a
 * PROXY header line or block into pp and echoes the rest, 2 accepts and closes at once. */
struct backend {
	int lfd;
	uint16_t port;
	int id, mode;
	pthread_t thread;
	_Atomic int requests;
	char pp[PROXY_PP_MAX];
	_Atomic size_t pp_len;
};

struct bconn_arg {
	struct backend *b;
	int fd;
};

static ssize_t
read_head(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	while (len < cap - 1) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);

		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return (ssize_t)len;
	}
	return -1;
}

static void
header_value(const char *head, const char *name, char *out, size_t cap)
{
	const char *p = head;

	out[0] = '\0';
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, strlen(name)) == 0 && p[strlen(name)] == ':') {
			const char *v = p + strlen(name) + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			snprintf(out, cap, "%.*s", (int)(e - v), v);
		}
	}
}

static void *
backend_conn(void *arg)
{
	struct bconn_arg *a = arg;
	struct backend *b = a->b;
	int fd = a->fd;
	char buf[8192];

	free(a);
	if (b->mode == 2) {
		struct linger lg = {1, 0}; /* a reset, before any byte of an answer */

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		return NULL;
	}
	if (b->mode == 3) { /* busybox httpd's CGI answers: HTTP/1.1, no length, close */
		char resp[128];
		int n;

		if (read_head(fd, buf, sizeof(buf)) > 0) {
			atomic_fetch_add(&b->requests, 1);
			n = snprintf(resp, sizeof(resp),
			             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\n\nb%d body",
			             b->id);
			send(fd, resp, (size_t)n, MSG_NOSIGNAL);
		}
		close(fd);
		return NULL;
	}
	if (b->mode == 5) { /* 101 Switching Protocols, then an echo of the new protocol */
		static const char up[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n"
		                         "Connection: Upgrade\r\n\r\n";
		ssize_t n;

		if (read_head(fd, buf, sizeof(buf)) > 0 &&
		    send(fd, up, sizeof(up) - 1, MSG_NOSIGNAL) == (ssize_t)sizeof(up) - 1)
			while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
				if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
					break;
		close(fd);
		return NULL;
	}
	if (b->mode == 1) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0) {
			size_t k = (size_t)n < sizeof(b->pp) ? (size_t)n : sizeof(b->pp);

			memcpy(b->pp, buf, k);
			atomic_store(&b->pp_len, k);
		}
		close(fd);
		return NULL;
	}
	for (;;) {
		ssize_t hl = read_head(fd, buf, sizeof(buf));
		char xff[256], fwd[256], cl[32], body[700], resp[1024];
		size_t head_end, have, want;
		int n;

		if (hl < 0)
			break;
		head_end = (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4;
		header_value(buf, "X-Forwarded-For", xff, sizeof(xff));
		header_value(buf, "Forwarded", fwd, sizeof(fwd));
		header_value(buf, "Content-Length", cl, sizeof(cl));
		want = (size_t)atol(cl);
		have = (size_t)hl - head_end;
		while (have < want) {
			ssize_t r = recv(fd, buf, sizeof(buf), 0);

			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		atomic_fetch_add(&b->requests, 1);
		n = snprintf(body, sizeof(body), "b%d xff=%s fwd=%s len=%zu", b->id, xff, fwd,
		             want);
		n = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
		             n, body);
		if (b->mode == 4)
			usleep(300 * 1000); /* a slow answer: the slot stays taken meanwhile */
		if (send(fd, resp, (size_t)n, MSG_NOSIGNAL) != n)
			break;
	}
out:
	close(fd);
	return NULL;
}

static void *
backend_main(void *arg)
{
	struct backend *b = arg;

	for (;;) {
		int fd = accept(b->lfd, NULL, NULL);
		struct bconn_arg *a;
		pthread_t t;

		if (fd == -1)
			return NULL; /* the listener was shut down */
		a = malloc(sizeof(*a));
		a->b = b;
		a->fd = fd;
		pthread_create(&t, NULL, backend_conn, a);
		pthread_detach(t);
	}
}

static void
backend_start(struct backend *b, int id, int mode)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);

	memset(b, 0, sizeof(*b));
	b->id = id;
	b->mode = mode;
	b->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(b->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(b->lfd, 64), 0);
	getsockname(b->lfd, (struct sockaddr *)&sin, &len);
	b->port = ntohs(sin.sin_port);
	pthread_create(&b->thread, NULL, backend_main, b);
}

static void
backend_stop(struct backend *b)
{
	shutdown(b->lfd, SHUT_RDWR);
	pthread_join(b->thread, NULL);
	close(b->lfd);
}

/* A port nothing listens on (refused). */
static uint16_t
dead_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct proxy *
start_proxy_limited(const uint16_t *ports, size_t n, bool http, enum proxy_protocol pp,
                    uint32_t max_per_be, int64_t queue_ms, uint16_t *listen)
{
	struct proxy_options po = {.threads = 2};
	struct proxy_service_spec opts = {.http = http,
	                                  .protocol = pp,
	                                  .max_conns_per_backend = max_per_be,
	                                  .queue_timeout_ms = queue_ms};
	struct shoal_err err;
	struct proxy *p = proxy_create(&po, &err);

	assert_non_null(p);
	*listen = proxy_serve_web(p, &opts, ports, n);
	return p;
}

static struct proxy *
start_proxy(const uint16_t *ports, size_t n, bool http, enum proxy_protocol pp, uint16_t *listen)
{
	return start_proxy_limited(ports, n, http, pp, 0, 0, listen);
}

static int
client_connect(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	                          .sin_port = htons(port)};
	struct timeval tv = {5, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/* Send req, read one answer into out (its status returned, its body in out). */
static int
exchange(int fd, const char *req, size_t reqlen, char *out, size_t cap)
{
	char buf[8192], cl[32];
	ssize_t hl;
	size_t head_end, have, want;

	if (reqlen && send(fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen)
		return -1;
	hl = read_head(fd, buf, sizeof(buf));
	if (hl < 0)
		return -1;
	head_end = (size_t)(strstr(buf, "\r\n\r\n") - buf) + 4;
	header_value(buf, "Content-Length", cl, sizeof(cl));
	want = (size_t)atol(cl);
	have = (size_t)hl - head_end;
	while (have < want && have < sizeof(buf) - head_end) {
		ssize_t r = recv(fd, buf + head_end + have, sizeof(buf) - head_end - have, 0);

		if (r <= 0)
			return -1;
		have += (size_t)r;
	}
	snprintf(out, cap, "%.*s", (int)want, buf + head_end);
	return atoi(buf + 9);
}

#define GET "GET / HTTP/1.1\r\nHost: t\r\n\r\n"

/* One keep-alive connection, one backend per request in turn; the client's address in
 * X-Forwarded-For (appended to the one it sent) and Forwarded. */
static void
test_http_rotation(void **state)
{
	struct backend b[2];
	uint16_t ports[2], lport;
	struct proxy *p;
	char body[1024], first[8] = "";
	int fd;

	(void)state;
	backend_start(&b[0], 0, 0);
	backend_start(&b[1], 1, 0);
	ports[0] = b[0].port;
	ports[1] = b[1].port;
	p = start_proxy(ports, 2, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 200);
		if (i == 0)
			snprintf(first, sizeof(first), "%.2s", body);
		/* b0 b1 b0 b1 or b1 b0 b1 b0 */
		assert_true((strncmp(body, first, 2) == 0) == (i % 2 == 0));
		assert_non_null(strstr(body, "xff=127.0.0.1 fwd=for=127.0.0.1;proto=http"));
	}
	const char *xreq = "GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
	assert_int_equal(exchange(fd, xreq, strlen(xreq), body, sizeof(body)), 200);
	assert_non_null(strstr(body, "xff=203.0.113.9, 127.0.0.1 "));
	/* Pipelined: two requests in one write, two answers in order. */
	const char *two = GET GET;
	size_t got = 0;
	assert_int_equal(send(fd, two, strlen(two), 0), (ssize_t)strlen(two));
	while (got < sizeof(body) - 1) {
		ssize_t r = recv(fd, body + got, sizeof(body) - 1 - got, 0);
		char *second;

		assert_true(r > 0);
		got += (size_t)r;
		body[got] = '\0';
		second = strstr(body + 1, "HTTP/1.1 200");
		if (second && strstr(second, "proto=http len=0"))
			break;
	}
	/* A body: Content-Length and chunked (the backend sees the body's length, the proxy
	 * passes the chunks on). */
	const char *post = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
	assert_int_equal(exchange(fd, post, strlen(post), body, sizeof(body)), 200);
	assert_non_null(strstr(body, "len=5"));
	const char *chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	                      "3\r\nabc\r\n0\r\n\r\n";
	assert_int_equal(exchange(fd, chunked, strlen(chunked), body, sizeof(body)), 200);
	assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 200);
	close(fd);
	/* A client that half-closes after its request (nc does) still gets the answer. */
	fd = client_connect(lport);
	assert_int_equal(send(fd, GET, strlen(GET), 0), (ssize_t)strlen(GET));
	shutdown(fd, SHUT_WR);
	assert_int_equal(exchange(fd, "", 0, body, sizeof(body)), 200);
	assert_int_equal(recv(fd, body, 1, 0), 0);
	close(fd);
	assert_int_equal(atomic_load(&b[0].requests) + atomic_load(&b[1].requests), 13);
	proxy_destroy(p);
	backend_stop(&b[0]);
	backend_stop(&b[1]);
}

/* A backend that refuses and one that resets before answering: no request is lost, each
 * goes to the one that works. */
static void
test_http_retry(void **state)
{
	struct backend good, rst;
	uint16_t ports[3], lport;
	struct proxy *p;
	char body[1024];
	int fd;

	(void)state;
	backend_start(&good, 0, 0);
	backend_start(&rst, 1, 2);
	ports[0] = dead_port();
	ports[1] = rst.port;
	ports[2] = good.port;
	p = start_proxy(ports, 3, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	for (int i = 0; i < 9; i++) {
		assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 200);
		assert_string_equal(body, "b0 xff=127.0.0.1 fwd=for=127.0.0.1;proto=http len=0");
	}
	close(fd);
	assert_int_equal(atomic_load(&good.requests), 9);
	proxy_destroy(p);
	backend_stop(&good);
	backend_stop(&rst);
}

static void
test_http_errors(void **state)
{
	struct backend good;
	uint16_t ports[1], lport, dead[1];
	struct proxy *p, *q;
	char body[1024], big[20000];
	int fd;

	(void)state;
	backend_start(&good, 0, 0);
	ports[0] = good.port;
	p = start_proxy(ports, 1, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	assert_int_equal(
	    exchange(fd, "GET / HTTP/1.1\r\nBad Header\r\n\r\n", 30, body, sizeof(body)), 400);
	assert_int_equal(recv(fd, body, 1, 0), 0); /* then closed */
	close(fd);
	fd = client_connect(lport);
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(exchange(fd, big, sizeof(big), body, sizeof(body)), 431);
	close(fd);
	/* Still serving. */
	fd = client_connect(lport);
	assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 200);
	close(fd);
	/* Every backend refuses: 502 after the retries. */
	dead[0] = dead_port();
	q = start_proxy(dead, 1, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 502);
	close(fd);
	proxy_destroy(q);
	/* No backend at all: 503. */
	q = start_proxy(dead, 0, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	assert_int_equal(exchange(fd, GET, strlen(GET), body, sizeof(body)), 503);
	close(fd);
	proxy_destroy(q);
	proxy_destroy(p);
	backend_stop(&good);
}

/* A backend that answers without a length and closes (busybox httpd's CGI) does not close
 * the keep-alive client's connection: the proxy sends the body chunked, and the next request
 * on the same connection goes to the next backend. */
static void
test_http_close_delimited(void **state)
{
	struct backend b[2];
	uint16_t ports[2], lport;
	struct proxy *p;
	char buf[4096];
	int fd;

	(void)state;
	backend_start(&b[0], 0, 3);
	backend_start(&b[1], 1, 3);
	ports[0] = b[0].port;
	ports[1] = b[1].port;
	p = start_proxy(ports, 2, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	for (int i = 0; i < 4; i++) {
		size_t got = 0;

		assert_int_equal(send(fd, GET, strlen(GET), 0), (ssize_t)strlen(GET));
		while (got < sizeof(buf) - 1 && !(got >= 5 && strstr(buf, "0\r\n\r\n"))) {
			ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);

			assert_true(r > 0);
			got += (size_t)r;
			buf[got] = '\0';
		}
		assert_non_null(strstr(buf, "Transfer-Encoding: chunked\r\n\r\n7\r\nb"));
		assert_non_null(strstr(buf, " body\r\n0\r\n\r\n"));
	}
	close(fd);
	assert_int_equal(atomic_load(&b[0].requests), 2);
	assert_int_equal(atomic_load(&b[1].requests), 2);
	proxy_destroy(p);
	backend_stop(&b[0]);
	backend_stop(&b[1]);
}

/* An upgrade (101) turns the connection into a two-way relay of the new protocol. */
static void
test_http_upgrade(void **state)
{
	struct backend b;
	uint16_t ports[1], lport;
	struct proxy *p;
	const char *req = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n";
	char buf[512];
	ssize_t n;
	int fd;

	(void)state;
	backend_start(&b, 0, 5);
	ports[0] = b.port;
	p = start_proxy(ports, 1, true, PROXY_PROTOCOL_NONE, &lport);
	fd = client_connect(lport);
	assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
	n = read_head(fd, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(strstr(buf, "HTTP/1.1 101 "));
	for (int i = 0; i < 3; i++) {
		assert_int_equal(send(fd, "ping", 4, 0), 4);
		assert_int_equal(recv(fd, buf, sizeof(buf), 0), 4);
		assert_memory_equal(buf, "ping", 4);
	}
	close(fd);
	proxy_destroy(p);
	backend_stop(&b);
}

/* max_conns_per_replica in HTTP mode: a request that finds the backend busy waits in the
 * service's queue and goes when the slot is free; past queue_timeout it gets a 503. */
static void
test_http_queue(void **state)
{
	for (int round = 0; round < 2; round++) {
		struct backend b;
		uint16_t ports[1], lport;
		struct proxy *p;
		struct proxy_stats st;
		char body[1024];
		int a, c;

		(void)state;
		backend_start(&b, 0, 4);
		ports[0] = b.port;
		p = start_proxy_limited(ports, 1, true, PROXY_PROTOCOL_NONE, 1,
		                        round == 0 ? 5000 : 100, &lport);
		a = client_connect(lport);
		c = client_connect(lport);
		assert_int_equal(send(a, GET, strlen(GET), 0), (ssize_t)strlen(GET));
		usleep(50 * 1000); /* a's request has the slot */
		assert_int_equal(send(c, GET, strlen(GET), 0), (ssize_t)strlen(GET));
		assert_int_equal(exchange(a, "", 0, body, sizeof(body)), 200);
		assert_int_equal(exchange(c, "", 0, body, sizeof(body)), round == 0 ? 200 : 503);
		proxy_stats(p, &st);
		assert_int_equal(st.services[0].c.queue_timeouts, round == 0 ? 0 : 1);
		if (round == 0)
			assert_int_equal(st.services[0].c.queued, 1);
		proxy_stats_free(&st);
		/* Both connections still serve (the 503 closed its own). */
		if (round == 0)
			assert_int_equal(exchange(c, GET, strlen(GET), body, sizeof(body)), 200);
		close(a);
		close(c);
		proxy_destroy(p);
		backend_stop(&b);
	}
}

/* The L4 proxy writes the PROXY header before any client byte: the backend reads the
 * client's own address and port, and the address and port it connected to. */
static void
test_pp_l4(void **state)
{
	for (int v = 1; v <= 2; v++) {
		struct backend b;
		uint16_t ports[1], lport;
		struct proxy *p;
		struct sockaddr_in me;
		socklen_t len = sizeof(me);
		char want[128];
		int fd;

		(void)state;
		backend_start(&b, 0, 1);
		ports[0] = b.port;
		p = start_proxy(ports, 1, false, v == 1 ? PROXY_PROTOCOL_V1 : PROXY_PROTOCOL_V2,
		                &lport);
		fd = client_connect(lport);
		getsockname(fd, (struct sockaddr *)&me, &len);
		assert_int_equal(send(fd, "DATA", 4, 0), 4);
		for (int i = 0; i < 500 && atomic_load(&b.pp_len) == 0; i++)
			usleep(10000);
		if (v == 1) {
			int n =
			    snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\n",
			             (unsigned)ntohs(me.sin_port), (unsigned)lport);
			/* the header, then the client's bytes (maybe in a later segment) */
			assert_true(atomic_load(&b.pp_len) >= (size_t)n);
			assert_memory_equal(b.pp, want, (size_t)n);
		} else {
			unsigned char *h = (unsigned char *)b.pp;

			assert_true(atomic_load(&b.pp_len) >= 28);
			assert_memory_equal(h, "\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16);
			assert_memory_equal(h + 16, "\x7f\0\0\x01\x7f\0\0\x01", 8);
			assert_int_equal(h[24] << 8 | h[25], ntohs(me.sin_port));
			assert_int_equal(h[26] << 8 | h[27], lport);
		}
		close(fd);
		proxy_destroy(p);
		backend_stop(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_head_end),
	    cmocka_unit_test(test_request_ok),
	    cmocka_unit_test(test_request_hostile),
	    cmocka_unit_test(test_response),
	    cmocka_unit_test(test_chunked),
	    cmocka_unit_test(test_rewrite),
	    cmocka_unit_test(test_pp_build),
	    cmocka_unit_test(test_http_rotation),
	    cmocka_unit_test(test_http_retry),
	    cmocka_unit_test(test_http_errors),
	    cmocka_unit_test(test_pp_l4),
	    cmocka_unit_test(test_rewrite_response),
	    cmocka_unit_test(test_http_close_delimited),
	    cmocka_unit_test(test_http_queue),
	    cmocka_unit_test(test_http_upgrade),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init("test", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
