/*
 * shoal-flood: a hostile client for tests/integration/hostile_flood.bats, bounded in count and
 * time. It only ever talks to the address it is given (run it in a lab namespace).
 *
 *   shoal-flood idle HOST:PORT N SECONDS
 *       Open N TCP connections, send nothing, hold them SECONDS. Prints
 *       "opened=N closed_by_peer=M failed=F": how many connected, how many the server closed
 *       meanwhile, how many could not connect.
 *   shoal-flood hello HOST:PORT SECONDS
 *       One connection after another, each sending a HELLO (the scheduler answers each with
 *       a signature and two X25519 operations) and waiting for the ACCEPT, for SECONDS.
 *       Prints "accepts=N refused=M per_s=R".
 *   shoal-flood serve ADDR:PORT SECONDS
 *       A backend that takes any number of connections at once and answers each request
 *       with a minimal HTTP reply, for SECONDS (at most 600).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <sodium.h>

#include "err.h"
#include "util.h"

#define FLOOD_MAX_CONNS   20000
#define FLOOD_MAX_SECONDS 120
/* HELLO: "SHL1" | role | 32-byte X25519 key; ACCEPT: 32 + 32 + 32 + 64 + 24 bytes. */
#define HELLO_LEN  (4 + 1 + 32)
#define ACCEPT_LEN (32 + 32 + 32 + 64 + 24)

static int
usage(void)
{
	fputs("usage: shoal-flood idle HOST:PORT N SECONDS\n"
	      "       shoal-flood hello HOST:PORT SECONDS\n"
	      "       shoal-flood serve ADDR:PORT SECONDS\n",
	      stderr);
	return 2;
}

static int
parse_target(const char *spec, struct sockaddr_in *sin)
{
	struct shoal_err err;
	char host[64];
	uint16_t port;

	if (util_parse_hostport(spec, host, sizeof(host), &port, &err) == -1) {
		fprintf(stderr, "shoal-flood: %s\n", err.msg);
		return -1;
	}
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
		fprintf(stderr, "shoal-flood: %s: want an IPv4 address\n", spec);
		return -1;
	}
	return 0;
}

static int
flood_idle(const struct sockaddr_in *sin, int n, int seconds)
{
	struct pollfd *p = xcalloc((size_t)n, sizeof(*p));
	int opened = 0, failed = 0, closed = 0;
	int64_t deadline;

	for (int i = 0; i < n; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		p[i].fd = -1;
		if (fd == -1) {
			failed++;
			continue;
		}
		if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) == -1 &&
		    errno != EINPROGRESS) {
			close(fd);
			failed++;
			continue;
		}
		p[i].fd = fd;
		p[i].events = POLLOUT;
	}
	/* Wait for the connects (the kernel completes them from the server's backlog). */
	deadline = util_now_ms() + 5000;
	for (int pending = n - failed; pending > 0 && util_now_ms() < deadline;) {
		if (poll(p, (nfds_t)n, 100) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			int soerr = 0;
			socklen_t len = sizeof(soerr);

			if (p[i].fd == -1 || !(p[i].revents & (POLLOUT | POLLERR | POLLHUP)) ||
			    p[i].events != POLLOUT)
				continue;
			pending--;
			getsockopt(p[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
			if (soerr != 0) {
				close(p[i].fd);
				p[i].fd = -1;
				failed++;
				continue;
			}
			opened++;
			p[i].events = POLLIN; /* from now on: did the server hang up? */
		}
	}
	printf("connected=%d\n", opened);
	fflush(stdout);
	deadline = util_now_ms() + (int64_t)seconds * 1000;
	while (util_now_ms() < deadline) {
		if (poll(p, (nfds_t)n, 200) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			char c;

			if (p[i].fd == -1 || p[i].events != POLLIN || !p[i].revents)
				continue;
			if (recv(p[i].fd, &c, 1, MSG_DONTWAIT) > 0)
				continue; /* the server spoke first: fine, still idle from our side
				           */
			close(p[i].fd);
			p[i].fd = -1;
			closed++;
		}
	}
	for (int i = 0; i < n; i++)
		if (p[i].fd != -1)
			close(p[i].fd);
	free(p);
	printf("opened=%d closed_by_peer=%d failed=%d\n", opened, closed, failed);
	return 0;
}

/* One HELLO: 1 when an ACCEPT came back, 0 when the server closed without one. */
static int
hello_once(const struct sockaddr_in *sin)
{
	uint8_t hello[HELLO_LEN], acc[ACCEPT_LEN];
	struct timeval tv = {2, 0};
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int ok = 0;

	if (fd == -1)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memcpy(hello, "SHL1", 4);
	hello[4] = 2; /* admin */
	randombytes_buf(hello + 5, 32);
	if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) == 0 &&
	    send(fd, hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello)) {
		while (got < sizeof(acc)) {
			ssize_t n = recv(fd, acc + got, sizeof(acc) - got, 0);

			if (n <= 0)
				break;
			got += (size_t)n;
		}
		ok = got == sizeof(acc);
	}
	close(fd);
	return ok;
}

static int
flood_hello(const struct sockaddr_in *sin, int seconds)
{
	int64_t t0 = util_now_ms(), deadline = t0 + (int64_t)seconds * 1000;
	long accepts = 0, refused = 0;

	while (util_now_ms() < deadline) {
		if (hello_once(sin))
			accepts++;
		else
			refused++;
	}
	printf("accepts=%ld refused=%ld per_s=%ld\n", accepts, refused,
	       accepts * 1000 / (util_now_ms() - t0 + 1));
	return 0;
}

/*
 * A backend for the proxy's test that, unlike a forking httpd, takes any number of
 * connections at once: accept everything (backlog 4096), answer each request's first bytes
 * with a minimal HTTP reply and close, close on EOF. Ends after SECONDS.
 */
static int
flood_serve(const struct sockaddr_in *sin, int seconds)
{
	static const char reply[] = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
	struct pollfd *p = xcalloc(FLOOD_MAX_CONNS + 1, sizeof(*p));
	int64_t deadline = util_now_ms() + (int64_t)seconds * 1000;
	int one = 1, n = 1, lfd;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(lfd, (const struct sockaddr *)sin, sizeof(*sin)) == -1 ||
	    listen(lfd, 4096) == -1) {
		perror("shoal-flood: serve");
		return 1;
	}
	p[0].fd = lfd;
	p[0].events = POLLIN;
	while (util_now_ms() < deadline) {
		if (poll(p, (nfds_t)n, 200) <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			int fd;

			while (n <= FLOOD_MAX_CONNS &&
			       (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) !=
			           -1) {
				p[n].fd = fd;
				p[n].events = POLLIN;
				p[n].revents = 0;
				n++;
			}
		}
		for (int i = 1; i < n; i++) {
			char buf[4096];
			ssize_t r;

			if (!p[i].revents)
				continue;
			r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (r == -1 && errno == EAGAIN)
				continue;
			if (r > 0 && send(p[i].fd, reply, sizeof(reply) - 1, MSG_NOSIGNAL) == -1)
				r = -1;
			close(p[i].fd);
			p[i--] = p[--n];
		}
	}
	for (int i = 0; i < n; i++)
		close(p[i].fd);
	free(p);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin;
	struct shoal_err err;
	uint64_t nofile;

	if (sodium_init() < 0 || argc < 4 || parse_target(argv[2], &sin) == -1)
		return usage();
	(void)util_raise_nofile(&nofile, &err);
	if (strcmp(argv[1], "idle") == 0 && argc == 5) {
		int n = atoi(argv[3]), s = atoi(argv[4]);

		if (n <= 0 || n > FLOOD_MAX_CONNS || s <= 0 || s > FLOOD_MAX_SECONDS)
			return usage();
		return flood_idle(&sin, n, s);
	}
	if (strcmp(argv[1], "serve") == 0 && argc == 4) {
		int s = atoi(argv[3]);

		if (s <= 0 || s > 600)
			return usage();
		return flood_serve(&sin, s);
	}
	if (strcmp(argv[1], "hello") == 0 && argc == 4) {
		int s = atoi(argv[3]);

		if (s <= 0 || s > FLOOD_MAX_SECONDS)
			return usage();
		return flood_hello(&sin, s);
	}
	return usage();
}
