/*
 * httpka: HTTP/1.1 requests on keep-alive connections, for proxymode.bats.
 *
 *   httpka [-n N] [-c CONNS] [-t SECONDS] [-x XFF] HOST PORT
 *
 * Opens CONNS connections one after the other and sends N GET / requests on each, one at a
 * time, each waiting for its whole answer (Content-Length, chunked, or until close). Prints a
 * line per request: "ok C BODY" (C = the connection's number, BODY the answer's first line) or
 * "fail C REASON". A connection that breaks is replaced (and the request counted failed), so
 * "ok" lines with one C came on one connection. -x sends an X-Forwarded-For header. Exit 0
 * when every request got a 200.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/proxy_http_parse.h"

static int
dial(const char *host, const char *port, int secs)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	struct timeval tv = {secs, 0};
	int fd;

	if (getaddrinfo(host, port, &hints, &ai) != 0)
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd == -1 || connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* Read one answer: 0 with its status and the first line of its body, -1 on a broken
 * connection (why in err). *closed: the answer ended with the connection. */
static int
read_answer(int fd, int *status, char *line, size_t cap, bool *closed, const char **err)
{
	static char buf[1 << 20];
	size_t len = 0, scan = 0, hl = 0, body = 0;
	int out = 0;
	struct proxy_http_msg req = {0}, m = {0};
	struct proxy_http_chunk st = {0};

	*closed = false;
	line[0] = '\0';
	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);

		if (n <= 0) {
			if (n == 0 && hl && m.body == PROXY_HTTP_BODY_CLOSE) {
				*closed = true;
				break;
			}
			*err = n == 0 ? "closed" : strerror(errno);
			return -1;
		}
		len += (size_t)n;
		if (hl == 0) {
			hl = proxy_http_parse_resp_head_end(buf, len, &scan);
			if (hl == 0)
				continue;
			if (proxy_http_parse_response(buf, hl, &req, &m) == -1) {
				*err = "not HTTP";
				return -1;
			}
			*status = m.status;
			body = hl;
		}
		if (m.body == PROXY_HTTP_BODY_NONE)
			break;
		if (m.body == PROXY_HTTP_BODY_LENGTH && len - hl >= m.length)
			break;
		if (m.body == PROXY_HTTP_BODY_CHUNKED) {
			ssize_t k = proxy_http_parse_chunk(&st, buf + body, len - body);

			if (k < 0) {
				*err = "bad chunk";
				return -1;
			}
			body += (size_t)k;
			if (st.done)
				break;
		}
	}
	if (m.body == PROXY_HTTP_BODY_CHUNKED) {
		/* The first chunk's data: all the first line needs. */
		char *nl = memchr(buf + hl, '\n', len - hl);
		size_t size = strtoul(buf + hl, NULL, 16);

		if (nl && (size_t)(buf + len - nl - 1) >= size)
			snprintf(line, cap, "%.*s", (int)size, nl + 1);
		out = 1;
	}
	if (!out)
		snprintf(line, cap, "%.*s", (int)(len - hl), buf + hl);
	line[strcspn(line, "\r\n")] = '\0';
	if (!m.keep_alive)
		*closed = true;
	return 0;
}

int
main(int argc, char **argv)
{
	int n = 1, conns = 1, secs = 10, opt, bad = 0;
	const char *xff = NULL;

	while ((opt = getopt(argc, argv, "n:c:t:x:")) != -1) {
		switch (opt) {
		case 'n':
			n = atoi(optarg);
			break;
		case 'c':
			conns = atoi(optarg);
			break;
		case 't':
			secs = atoi(optarg);
			break;
		case 'x':
			xff = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: httpka [-n N] [-c CONNS] [-t S] [-x XFF] HOST PORT\n");
			return 2;
		}
	}
	if (optind + 2 != argc) {
		fprintf(stderr, "usage: httpka [-n N] [-c CONNS] [-t S] [-x XFF] HOST PORT\n");
		return 2;
	}
	for (int c = 1; c <= conns; c++) {
		int fd = -1, cid = c;

		for (int i = 0; i < n; i++) {
			char req[512], line[512];
			const char *err = "connect";
			int status = 0, k;
			bool closed;

			if (fd == -1) {
				fd = dial(argv[optind], argv[optind + 1], secs);
				if (fd == -1) {
					printf("fail %d connect: %s\n", cid, strerror(errno));
					bad++;
					continue;
				}
			}
			k = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n%s%s%s\r\n",
			             argv[optind], xff ? "X-Forwarded-For: " : "", xff ? xff : "",
			             xff ? "\r\n" : "");
			if (send(fd, req, (size_t)k, MSG_NOSIGNAL) != k ||
			    read_answer(fd, &status, line, sizeof(line), &closed, &err) == -1) {
				printf("fail %d %s\n", cid, err);
				bad++;
				close(fd);
				fd = -1;
				cid += 1000; /* a new connection from here */
				continue;
			}
			if (status != 200)
				bad++;
			printf("%s %d %d %s\n", status == 200 ? "ok" : "fail", cid, status, line);
			fflush(stdout);
			if (closed) {
				close(fd);
				fd = -1;
				cid += 1000;
			}
		}
		if (fd != -1)
			close(fd);
	}
	return bad ? 1 : 0;
}
