/*
 * overload_client HOST PORT CONNS SECONDS [WAIT_S]: CONNS threads each send
 * "GET / HTTP/1.0" over a new connection after another for SECONDS, and count how each ended:
 *   responses  the answer began with "HTTP/"
 *   closed     the connection was refused, reset or closed before any byte of an answer
 *   timeouts   no answer within WAIT_S (default 25) seconds: the client gave up
 * Prints "responses=N closed=N timeouts=N closed_min_ms=N closed_max_ms=N", the shortest and
 * longest time from connect to a close with no answer (-1 when none), for a test to compare
 * with the proxy's queue timeout. Exit 0 unless the arguments are wrong.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static struct addrinfo *target;
static int64_t end_ms;
static int wait_s = 25;
static atomic_long responses, closed, timeouts;
static atomic_long closed_min = -1, closed_max = -1;

static void
note_closed(int64_t ms)
{
	long cur = atomic_load(&closed_min);

	atomic_fetch_add(&closed, 1);
	while ((cur == -1 || ms < cur) && !atomic_compare_exchange_weak(&closed_min, &cur, ms))
		;
	cur = atomic_load(&closed_max);
	while (ms > cur && !atomic_compare_exchange_weak(&closed_max, &cur, ms))
		;
}

/* One request on a new connection. */
static void
one(void)
{
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";
	struct timeval tv = {wait_s, 0};
	char buf[4096], head[5];
	size_t got = 0;
	int64_t t0 = util_now_ms();
	int fd = socket(target->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd == -1) {
		perror("socket");
		exit(1);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, target->ai_addr, target->ai_addrlen) == -1) {
		if (errno == EINPROGRESS || errno == ETIMEDOUT || errno == EAGAIN)
			atomic_fetch_add(&timeouts, 1);
		else
			note_closed(util_now_ms() - t0);
		close(fd);
		return;
	}
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
		note_closed(util_now_ms() - t0);
		close(fd);
		return;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n > 0) {
			/* Keep the first 5 bytes in head, whatever the chunks. */
			for (ssize_t k = 0; k < n && got < sizeof(head); k++)
				head[got++] = buf[k];
			if (got < sizeof(head))
				continue;
			got = sizeof(head);
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			atomic_fetch_add(&timeouts, 1);
			break;
		}
		/* EOF or reset: an answer if one began. */
		if (got == sizeof(head) && memcmp(head, "HTTP/", 5) == 0)
			atomic_fetch_add(&responses, 1);
		else
			note_closed(util_now_ms() - t0);
		break;
	}
	close(fd);
}

static void *
worker(void *arg)
{
	(void)arg;
	while (util_now_ms() < end_ms)
		one();
	return NULL;
}

int
main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	pthread_t *th;
	int conns, secs, rc;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: overload_client HOST PORT CONNS SECONDS [WAIT_S]\n");
		return 2;
	}
	conns = atoi(argv[3]);
	secs = atoi(argv[4]);
	if (argc == 6)
		wait_s = atoi(argv[5]);
	if (conns < 1 || conns > 10000 || secs < 1 || wait_s < 1) {
		fprintf(stderr, "overload_client: bad CONNS, SECONDS or WAIT_S\n");
		return 2;
	}
	rc = getaddrinfo(argv[1], argv[2], &hints, &target);
	if (rc != 0) {
		fprintf(stderr, "overload_client: %s:%s: %s\n", argv[1], argv[2], gai_strerror(rc));
		return 2;
	}
	end_ms = util_now_ms() + (int64_t)secs * 1000;
	th = calloc((size_t)conns, sizeof(*th));
	for (int i = 0; i < conns; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < conns; i++)
		pthread_join(th[i], NULL);
	printf("responses=%ld closed=%ld timeouts=%ld closed_min_ms=%ld closed_max_ms=%ld\n",
	       atomic_load(&responses), atomic_load(&closed), atomic_load(&timeouts),
	       atomic_load(&closed_min), atomic_load(&closed_max));
	freeaddrinfo(target);
	free(th);
	return 0;
}
