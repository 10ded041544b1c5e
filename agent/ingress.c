#include "ingress.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "backoff.h"
#include "fdio.h"
#include "err.h"
#include "log.h"
#include "runtime/spawn.h"
#include "shoal.pb-c.h"
#include "timer.h"
#include "util.h"

/* Reconnection back-off after the ingress went away: 100 ms doubling to 2 s. */
static const struct backoff reconnect_backoff = {.base_ms = 100, .cap_ms = 2000};
/* How long the agent waits for a starting ingress, or for a hello. */
#define START_TIMEOUT_MS 5000
/* A report request unanswered this long: the ingress is alive but stuck (or the answer was
 * lost); the gauges of the last report are no longer "now". */
#define REPORT_STALE_MS 3000

char *
ingress_socket_path(const char *data_dir)
{
	return xasprintf("%s/ingress.sock", data_dir);
}

char *
ingress_pid_path(const char *data_dir)
{
	return xasprintf("%s/ingress.pid", data_dir);
}

const char *
ingress_version(void)
{
	static char v[96];
	struct stat st;

	if (v[0] == '\0') {
		if (stat("/proc/self/exe", &st) == -1)
			snprintf(v, sizeof(v), "unknown");
		else
			snprintf(v, sizeof(v), "%lld-%lld.%09ld-%llu", (long long)st.st_size,
			         (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
			         (unsigned long long)st.st_ino);
	}
	return v;
}

/* ---- framing ---- */

void
ingress_frame_send(struct bufferevent *bev, const Shoal__IngressFrame *f)
{
	size_t n = shoal__ingress_frame__get_packed_size(f);
	uint8_t *buf = xmalloc(n + 4);

	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	shoal__ingress_frame__pack(f, buf + 4);
	bufferevent_write(bev, buf, n + 4);
	free(buf);
}

int
ingress_frame_take(struct bufferevent *bev, Shoal__IngressFrame **out)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[4];
	uint32_t n;
	uint8_t *body;

	if (evbuffer_get_length(in) < 4)
		return 0;
	evbuffer_copyout(in, hdr, 4);
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n > INGRESS_MAX_FRAME)
		return -1;
	if (evbuffer_get_length(in) < 4 + (size_t)n)
		return 0;
	evbuffer_drain(in, 4);
	body = evbuffer_pullup(in, n);
	*out = shoal__ingress_frame__unpack(NULL, n, body);
	evbuffer_drain(in, n);
	return *out ? 1 : -1;
}

static int
read_all(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = recv(fd, p, n, 0);

		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = ECONNRESET;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int
ingress_frame_write_fd(int fd, const Shoal__IngressFrame *f, struct shoal_err *err)
{
	size_t n = shoal__ingress_frame__get_packed_size(f);
	cleanup_free uint8_t *buf = xmalloc(n + 4);

	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	shoal__ingress_frame__pack(f, buf + 4);
	if (fdio_send_all(fd, buf, n + 4) == -1)
		return err_set(err, errno, "send");
	return 0;
}

Shoal__IngressFrame *
ingress_frame_read_fd(int fd, struct shoal_err *err)
{
	uint8_t hdr[4];
	cleanup_free uint8_t *body = NULL;
	Shoal__IngressFrame *f;
	uint32_t n;

	if (read_all(fd, hdr, 4) == -1) {
		err_set(err, errno, "receive");
		return NULL;
	}
	n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (n > INGRESS_MAX_FRAME) {
		err_set(err, EPROTO, "frame of %u bytes", n);
		return NULL;
	}
	body = xmalloc(n ? n : 1);
	if (read_all(fd, body, n) == -1) {
		err_set(err, errno, "receive");
		return NULL;
	}
	f = shoal__ingress_frame__unpack(NULL, n, body);
	if (f == NULL)
		err_set(err, EPROTO, "unparsable frame");
	return f;
}

/* ---- the agent's end ---- */

static void ingress_connect(struct ingress *g);

static void
retry_later(struct ingress *g)
{
	int64_t ms = backoff_ms(&reconnect_backoff, g->failures);

	g->failures++;
	timer_add_ms(g->retry, ms);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	ingress_connect(arg);
}

/*
 * The connection is gone: the last report's counters stay true (they only grow), but its
 * gauges (connections open, clients queued, the oldest wait) said "now" and now is unknown.
 * Heartbeats keep sending this report until a new one comes, which after a crash can take
 * the whole reconnect back-off: a queue gauge frozen at its last value read as clients
 * waiting long after they had all gone.
 */
static void
report_forget_gauges(Shoal__IngressReport *r)
{
	for (size_t i = 0; r && i < r->n_stats; i++) {
		r->stats[i]->active = 0;
		r->stats[i]->queue_len = 0;
		r->stats[i]->queue_max_wait_ms = 0;
	}
}

static void
drop_conn(struct ingress *g, const char *why)
{
	if (g->bev == NULL)
		return;
	shoal_log(LOG_WARNING, "ingress: connection to pid %d lost: %s", (int)g->pid, why);
	bufferevent_free(g->bev);
	g->bev = NULL;
	g->report_pending = false;
	report_forget_gauges(g->report);
	retry_later(g);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct ingress *g = arg;
	Shoal__IngressFrame *f;
	int rc;

	while ((rc = ingress_frame_take(bev, &f)) == 1) {
		switch (f->body_case) {
		case SHOAL__INGRESS_FRAME__BODY_REPORT:
			shoal__ingress_report__free_unpacked(g->report, NULL);
			g->report = f->report;
			f->report = NULL; /* kept: detached before the frame is freed */
			f->body_case = SHOAL__INGRESS_FRAME__BODY__NOT_SET;
			g->report_pending = false;
			if (g->ops.on_report)
				g->ops.on_report(g->report, g->arg);
			break;
		case SHOAL__INGRESS_FRAME__BODY_FAILURE:
			if (g->ops.on_failure)
				g->ops.on_failure(f->failure, g->arg);
			break;
		default:
			break;
		}
		shoal__ingress_frame__free_unpacked(f, NULL);
		if (g->bev == NULL)
			return;
	}
	if (rc == -1)
		drop_conn(g, "bad frame");
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	drop_conn(arg, (what & BEV_EVENT_EOF) ? "closed by the ingress" : strerror(errno));
}

/* A connected socket to the ingress, or -1 (errno set). */
static int
dial(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Start `shoal-agent ingress` detached (its own session, init's child), and wait until it
 * listens or says why it cannot. */
static int
spawn_ingress(struct ingress *g, bool take_over, struct shoal_err *err)
{
	char self[4096];
	int sv[2], status;
	pid_t pid;
	ssize_t n;
	char msg[300];
	size_t len = 0;
	struct pollfd pfd;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return err_set(err, errno, "readlink /proc/self/exe");
	self[n] = '\0';
	if (pipe2(sv, O_CLOEXEC) == -1)
		return err_set(err, errno, "pipe");
	pid = fork();
	if (pid == -1) {
		close(sv[0]);
		close(sv[1]);
		return err_set(err, errno, "fork");
	}
	if (pid == 0) {
		/* Double fork, as for a shim: a new session (a signal to the agent's process
		 * group misses it) and a parent that exits at once (init adopts it). */
		char *argv[32];
		int k = 0, null;

		if (setsid() == -1)
			_exit(1);
		pid = fork();
		if (pid != 0)
			_exit(pid == -1 ? 1 : 0);
		null = open("/dev/null", O_RDWR);
		if (null == -1 || dup2(null, 0) == -1 || dup2(null, 1) == -1 ||
		    dup2(sv[1], 3) == -1)
			_exit(1);
		signal(SIGPIPE, SIG_DFL);
		argv[k++] = "shoal-agent";
		argv[k++] = "ingress";
		argv[k++] = "--data-dir";
		argv[k++] = g->data_dir;
		argv[k++] = "--sync-fd";
		argv[k++] = "3";
		if (take_over)
			argv[k++] = "--take-over";
		for (size_t i = 0; g->host_args[i] && k < 30; i++)
			argv[k++] = g->host_args[i];
		argv[k] = NULL;
		execv(self, argv);
		_exit(127);
	}
	close(sv[1]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	/* Read until EOF: the ingress closes the pipe once listening, after any message. */
	pfd.fd = sv[0];
	pfd.events = POLLIN;
	for (;;) {
		int r = poll(&pfd, 1, START_TIMEOUT_MS);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(sv[0]);
			return err_set(err, ETIMEDOUT, "ingress did not start within %dms",
			               START_TIMEOUT_MS);
		}
		n = read(sv[0], msg + len, sizeof(msg) - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(msg) - 1)
			break;
	}
	close(sv[0]);
	msg[len] = '\0';
	if (len > 0)
		return err_set(err, 0, "ingress: %s", msg);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return err_set(err, 0, "could not start the ingress");
	return 0;
}

/* Connect and read the hello: the fd, or -1 with errno. */
static int
dial_hello(struct ingress *g, Shoal__IngressFrame **hello, struct shoal_err *err)
{
	struct timeval tv = {START_TIMEOUT_MS / 1000, 0};
	int fd = dial(g->sock_path);

	if (fd == -1)
		return err_set(err, errno, "connect %s", g->sock_path);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	*hello = ingress_frame_read_fd(fd, err);
	if (*hello == NULL || (*hello)->body_case != SHOAL__INGRESS_FRAME__BODY_HELLO) {
		if (*hello)
			err_set(err, EPROTO, "no hello");
		shoal__ingress_frame__free_unpacked(*hello, NULL);
		*hello = NULL;
		close(fd);
		return err_prefix(err, "ingress hello");
	}
	return fd;
}

static void
ingress_connect(struct ingress *g)
{
	Shoal__IngressFrame *hello = NULL;
	struct shoal_err err;
	bool started = false;
	int fd;

	fd = dial_hello(g, &hello, &err);
	if (fd == -1) {
		/* None runs, or one that does not answer: that one is stopped (it would hold the
		 * ports), and a new one started. A stale socket file is replaced. */
		if (ingress_stop(g->data_dir, &err) == 1)
			shoal_log(LOG_WARNING, "ingress: stopped one that did not answer");
		if (spawn_ingress(g, false, &err) == -1) {
			shoal_log(LOG_ERR, "ingress: %s", err.msg);
			retry_later(g);
			return;
		}
		started = true;
		fd = dial_hello(g, &hello, &err);
	} else if (strcmp(hello->hello->version, ingress_version()) != 0) {
		shoal_log(LOG_INFO,
		          "ingress: pid %d runs another binary (%s, this one %s): replacing it, "
		          "listeners handed over",
		          (int)hello->hello->pid, hello->hello->version, ingress_version());
		close(fd);
		shoal__ingress_frame__free_unpacked(hello, NULL);
		hello = NULL;
		if (spawn_ingress(g, true, &err) == -1) {
			shoal_log(LOG_ERR, "ingress: upgrade: %s", err.msg);
			retry_later(g);
			return;
		}
		started = true;
		fd = dial_hello(g, &hello, &err);
	}
	if (fd == -1) {
		shoal_log(LOG_ERR, "ingress: %s", err.msg);
		retry_later(g);
		return;
	}
	g->pid = hello->hello->pid;
	shoal_log(LOG_INFO, "ingress: %s pid %d", started ? "started" : "adopted", (int)g->pid);
	shoal__ingress_frame__free_unpacked(hello, NULL);
	evutil_make_socket_nonblocking(fd);
	g->bev = bufferevent_socket_new(g->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(g->bev, on_read, NULL, on_event, g);
	bufferevent_enable(g->bev, EV_READ);
	g->failures = 0;
	if (g->apply)
		bufferevent_write(g->bev, g->apply, g->apply_len);
	ingress_request_report(g);
}

int
ingress_init(struct ingress *g, struct event_base *base, const char *data_dir,
             const struct ingress_spawn_opts *o, const struct ingress_ops *ops, void *arg,
             struct shoal_err *err)
{
	size_t k = 0;
	char **a;

	memset(g, 0, sizeof(*g));
	(void)ingress_version(); /* this binary as it is at start */
	g->sock_path = ingress_socket_path(data_dir);
	if (strlen(g->sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		err_set(err, ENAMETOOLONG, "socket path %s is too long for a unix socket",
		        g->sock_path);
		free(g->sock_path);
		g->sock_path = NULL;
		return -1;
	}
	g->base = base;
	g->data_dir = xstrdup(data_dir);
	g->ops = *ops;
	g->arg = arg;
	a = g->host_args = xcalloc(11, sizeof(char *));
	a[k++] = xstrdup("--log-level"); /* the agent's */
	a[k++] = xstrdup(log_level <= LOG_ERR       ? "error"
	                 : log_level <= LOG_WARNING ? "warn"
	                 : log_level <= LOG_NOTICE  ? "notice"
	                 : log_level <= LOG_INFO    ? "info"
	                                            : "debug");
	if (o->threads > 0) {
		a[k++] = xstrdup("--threads");
		a[k++] = xasprintf("%d", o->threads);
	}
	if (o->max_conns > 0) {
		a[k++] = xstrdup("--max-conns");
		a[k++] = xasprintf("%d", o->max_conns);
	}
	if (o->idle_timeout_ms > 0) {
		a[k++] = xstrdup("--idle-timeout");
		a[k++] = xasprintf("%lldms", (long long)o->idle_timeout_ms);
	}
	if (o->first_byte_timeout_ms > 0) {
		a[k++] = xstrdup("--first-byte-timeout");
		a[k++] = xasprintf("%lldms", (long long)o->first_byte_timeout_ms);
	}
	g->retry = event_new(base, -1, 0, on_retry, g);
	ingress_connect(g);
	return 0;
}

void
ingress_free(struct ingress *g)
{
	if (g->bev)
		bufferevent_free(g->bev);
	if (g->retry)
		event_free(g->retry);
	for (size_t i = 0; g->host_args && g->host_args[i]; i++)
		free(g->host_args[i]);
	free(g->host_args);
	free(g->apply);
	shoal__ingress_report__free_unpacked(g->report, NULL);
	free(g->sock_path);
	free(g->data_dir);
	memset(g, 0, sizeof(*g));
}

void
ingress_apply(struct ingress *g, const Shoal__Endpoints *ep, const char *address)
{
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT;
	Shoal__IngressApply ap = SHOAL__INGRESS_APPLY__INIT;
	size_t n;

	ap.listen_address = (char *)address;
	ap.endpoints = (Shoal__Endpoints *)ep;
	f.body_case = SHOAL__INGRESS_FRAME__BODY_APPLY;
	f.apply = &ap;
	n = shoal__ingress_frame__get_packed_size(&f);
	free(g->apply);
	g->apply = xmalloc(n + 4);
	g->apply[0] = (uint8_t)(n >> 24);
	g->apply[1] = (uint8_t)(n >> 16);
	g->apply[2] = (uint8_t)(n >> 8);
	g->apply[3] = (uint8_t)n;
	shoal__ingress_frame__pack(&f, g->apply + 4);
	g->apply_len = n + 4;
	if (g->bev == NULL)
		return;
	bufferevent_write(g->bev, g->apply, g->apply_len);
	/* The acknowledgement of this table must wait for its report, pending or not. */
	g->report_pending = false;
	ingress_request_report(g);
}

bool
ingress_request_report(struct ingress *g)
{
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT;

	if (g->bev == NULL)
		return false;
	if (g->report_pending) {
		if (util_now_ms() - g->report_asked_ms < REPORT_STALE_MS)
			return false;
		/* Stop passing on frozen gauges, and ask again (a late answer is harmless); the
		 * caller still goes on now, as none may come. */
		report_forget_gauges(g->report);
		f.body_case = SHOAL__INGRESS_FRAME__BODY_REPORT_REQUEST;
		f.report_request = true;
		ingress_frame_send(g->bev, &f);
		g->report_asked_ms = util_now_ms();
		return false;
	}
	f.body_case = SHOAL__INGRESS_FRAME__BODY_REPORT_REQUEST;
	f.report_request = true;
	ingress_frame_send(g->bev, &f);
	g->report_pending = true;
	g->report_asked_ms = util_now_ms();
	return true;
}

const Shoal__IngressReport *
ingress_report(const struct ingress *g)
{
	return g->report;
}

int
ingress_stop(const char *data_dir, struct shoal_err *err)
{
	cleanup_free char *path = ingress_pid_path(data_dir);
	cleanup_free char *text = NULL;
	unsigned long long start = 0;
	int pid = 0;

	text = util_read_file(path, NULL, err);
	if (text == NULL)
		return err->code == ENOENT ? 0 : -1;
	if (sscanf(text, "%d %llu", &pid, &start) != 2 || pid <= 1)
		return err_set(err, 0, "%s: not a pid and a start time", path);
	if (spawn_proc_start_time(pid) != start) {
		unlink(path);
		return 0;
	}
	kill(pid, SIGTERM);
	for (int i = 0; i < 50 && spawn_proc_start_time(pid) == start; i++)
		usleep(100 * 1000);
	if (spawn_proc_start_time(pid) == start)
		kill(pid, SIGKILL);
	unlink(path);
	return 1;
}
