/*
 * lifeclient [options] HOST:PORT [HOST:PORT...]: one continuous, sequential HTTP client that
 * sends "GET /" to the targets in turn (round-robin), and counts how every request ended:
 *   ok        a complete "HTTP/1.x 200" answer
 *   refused   the connect was refused (ECONNREFUSED) or found no route
 *   reset     the connection was reset or closed before a complete answer began
 *   timeout   no complete answer within --timeout (default 2000 ms)
 *   bad       an answer that is not a 200, or a truncated one
 * Modes: by default a new connection per request (HTTP/1.0); --keepalive keeps one
 * HTTP/1.1 connection per target open across requests and opens a new one only when the
 * server closed it after a complete answer (that is no failure; a reused connection found
 * closed before any byte of an answer is counted as a reset).
 * It runs until SIGTERM/SIGINT, or until --stop-file exists, or --count requests were sent,
 * then prints "ok=N refused=N reset=N timeout=N bad=N" on stdout and exits 0.
 *   --stats FILE     rewritten with that line about every 200 ms (for a watcher: the soak)
 *   --interval MS    pause between requests (default 0)
 * Every failure is logged on stderr with its time, target, kind, phase and duration, so a
 * failed run says where the request hung.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

enum kind { K_OK, K_REFUSED, K_RESET, K_TIMEOUT, K_BAD, K_N };
static const char *const kind_names[K_N] = {"ok", "refused", "reset", "timeout", "bad"};

/* An answer slower than this is counted as slow too (a connect retried after a timeout). */
#define SLOW_MS 500

struct target {
	struct sockaddr_in addr;
	const char *text;
	int fd; /* keep-alive mode: the open connection, or -1 */
};

static volatile sig_atomic_t stop_now;
static long counts[K_N], slow;
static int64_t t_start;

static void
on_signal(int sig)
{
	(void)sig;
	stop_now = 1;
}

static void
format_counts(char *buf, size_t len)
{
	snprintf(buf, len, "ok=%ld refused=%ld reset=%ld timeout=%ld bad=%ld slow=%ld\n",
	         counts[K_OK], counts[K_REFUSED], counts[K_RESET], counts[K_TIMEOUT], counts[K_BAD],
	         slow);
}

static void
write_stats(const char *path)
{
	char line[256], tmp[4096];
	FILE *f;

	format_counts(line, sizeof(line));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fputs(line, f);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static int
parse_target(const char *s, struct target *t)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return -1;
	memset(&t->addr, 0, sizeof(t->addr));
	t->addr.sin_family = AF_INET;
	t->addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &t->addr.sin_addr) != 1)
		return -1;
	t->text = s;
	t->fd = -1;
	return 0;
}

/* Wait for events on fd until deadline; 1 ready, 0 timed out. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left;
	int rc;

	for (;;) {
		left = deadline - util_now_ms();
		if (left <= 0)
			return 0;
		rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return 0;
		if (errno != EINTR)
			return 1;
	}
}

static enum kind
errno_kind(int e)
{
	if (e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH)
		return K_REFUSED;
	if (e == ETIMEDOUT)
		return K_TIMEOUT;
	return K_RESET;
}

/* Connect to t before deadline: the fd, or -1 with *k and *phase set. */
static int
open_conn(struct target *t, int64_t deadline, enum kind *k, const char **phase)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	int one = 1, soerr = 0;
	socklen_t sl = sizeof(soerr);

	*phase = "connect";
	if (fd == -1) {
		*k = K_RESET;
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&t->addr, sizeof(t->addr)) == -1) {
		if (errno != EINPROGRESS) {
			*k = errno_kind(errno);
			close(fd);
			return -1;
		}
		if (!wait_fd(fd, POLLOUT, deadline)) {
			*k = K_TIMEOUT;
			close(fd);
			return -1;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1 || soerr != 0) {
			*k = errno_kind(soerr ? soerr : errno);
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Does buf[0..len) hold a complete answer? Sets *done; returns false on a malformed head. */
static bool
complete(const char *buf, size_t len, bool eof, bool *done, bool *reusable)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *cl;
	size_t head, body;

	*done = false;
	*reusable = false;
	if (end == NULL)
		return !eof;
	head = (size_t)(end - buf) + 4;
	cl = memmem(buf, head, "Content-Length:", 15);
	if (cl == NULL)
		cl = memmem(buf, head, "content-length:", 15);
	if (cl) {
		body = strtoul(cl + 15, NULL, 10);
		if (len >= head + body) {
			*done = true;
			*reusable = memmem(buf, head, "onnection: close", 16) == NULL &&
			            memmem(buf, head, "HTTP/1.1", 8) == buf;
		}
		return true;
	}
	/* No length: the answer ends at EOF. */
	*done = eof;
	return true;
}

/* One request to t; returns how it ended. */
static enum kind
request(struct target *t, bool keepalive, int timeout_ms, const char **phase, bool *reused)
{
	static const char req10[] = "GET / HTTP/1.0\r\nHost: lab\r\n\r\n";
	static const char req11[] = "GET / HTTP/1.1\r\nHost: lab\r\n\r\n";
	const char *req = keepalive ? req11 : req10;
	size_t reqlen = keepalive ? sizeof(req11) - 1 : sizeof(req10) - 1, len = 0, off = 0;
	int64_t deadline = util_now_ms() + timeout_ms;
	char buf[16384];
	enum kind k = K_OK;
	bool done = false, reusable = false, eof = false;
	int fd = keepalive ? t->fd : -1;

	*reused = fd != -1;
	if (fd == -1 && (fd = open_conn(t, deadline, &k, phase)) == -1)
		return k;
	t->fd = -1;
	*phase = "send";
	while (off < reqlen) {
		ssize_t n = send(fd, req + off, reqlen - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EAGAIN) {
			if (!wait_fd(fd, POLLOUT, deadline)) {
				k = K_TIMEOUT;
				goto out;
			}
			continue;
		}
		k = K_RESET;
		goto out;
	}
	*phase = "recv";
	while (!done) {
		ssize_t n;
		if (!wait_fd(fd, POLLIN, deadline)) {
			k = K_TIMEOUT;
			goto out;
		}
		n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n == -1) {
			k = len ? K_BAD : K_RESET;
			goto out;
		}
		if (n == 0)
			eof = true;
		len += (size_t)n;
		buf[len] = '\0';
		if (len == 0 && eof) {
			k = K_RESET; /* closed before any byte of an answer */
			goto out;
		}
		if (!complete(buf, len, eof, &done, &reusable) || (eof && !done) ||
		    len == sizeof(buf) - 1) {
			k = K_BAD;
			goto out;
		}
	}
	if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || memcmp(buf + 9, "200", 3) != 0)
		k = K_BAD;
out:
	if (k == K_OK && keepalive && reusable && !eof)
		t->fd = fd;
	else
		close(fd);
	return k;
}

static void
usage(void)
{
	fprintf(stderr, "usage: lifeclient [--keepalive] [--timeout MS] [--interval MS] "
	                "[--stop-file PATH] [--stats PATH] [--count N] HOST:PORT...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *stop_file = NULL, *stats = NULL;
	int timeout_ms = 2000, interval_ms = 0;
	long max_count = 0, sent = 0;
	bool keepalive = false;
	struct target *targets;
	size_t ntargets = 0, next = 0;
	int64_t last_stats = 0, last_stop_check = 0;
	struct sigaction sa;
	char line[256];
	int i;

	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--keepalive") == 0)
			keepalive = true;
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
			interval_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--stop-file") == 0 && i + 1 < argc)
			stop_file = argv[++i];
		else if (strcmp(argv[i], "--stats") == 0 && i + 1 < argc)
			stats = argv[++i];
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
			max_count = atol(argv[++i]);
		else
			usage();
	}
	if (i == argc || timeout_ms <= 0 || interval_ms < 0)
		usage();
	targets = calloc((size_t)(argc - i), sizeof(*targets));
	if (targets == NULL)
		return 1;
	for (; i < argc; i++) {
		if (parse_target(argv[i], &targets[ntargets]) == -1) {
			fprintf(stderr, "lifeclient: bad target %s (want IPv4:PORT)\n", argv[i]);
			return 2;
		}
		ntargets++;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stderr, NULL, _IOLBF, 0);
	t_start = util_now_ms();
	while (!stop_now && (max_count == 0 || sent < max_count)) {
		struct target *t = &targets[next];
		const char *phase = "";
		bool reused = false;
		int64_t t0 = util_now_ms(), t1;
		enum kind k;

		next = (next + 1) % ntargets;
		k = request(t, keepalive, timeout_ms, &phase, &reused);
		t1 = util_now_ms();
		counts[k]++;
		sent++;
		if (k == K_OK && t1 - t0 >= SLOW_MS)
			slow++;
		if (k != K_OK || t1 - t0 >= SLOW_MS) {
			struct timespec wall;
			struct tm tm;
			char when[32];
			clock_gettime(CLOCK_REALTIME, &wall);
			wall.tv_sec -= (t1 - t0) / 1000;
			gmtime_r(&wall.tv_sec, &tm);
			strftime(when, sizeof(when), "%H:%M:%S", &tm);
			fprintf(stderr, "lifeclient: %s t=%lldms %s %s in %s after %lldms%s\n",
			        when, (long long)(t0 - t_start), t->text, kind_names[k], phase,
			        (long long)(t1 - t0), reused ? " (reused connection)" : "");
		}
		if (stats && t1 - last_stats >= 200) {
			write_stats(stats);
			last_stats = t1;
		}
		if (stop_file && t1 - last_stop_check >= 50) {
			struct stat st;
			last_stop_check = t1;
			if (stat(stop_file, &st) == 0)
				break;
		}
		if (interval_ms)
			usleep((useconds_t)interval_ms * 1000);
	}
	if (stats)
		write_stats(stats);
	format_counts(line, sizeof(line));
	fputs(line, stdout);
	fflush(stdout);
	for (size_t n = 0; n < ntargets; n++)
		if (targets[n].fd >= 0)
			close(targets[n].fd);
	free(targets);
	return 0;
}
