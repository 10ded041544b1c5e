#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"
#include "metrics.h"
#include "runtime/container.h"
#include "server-t.h"
#include "tasks-t.h"
#include "shoal.pb-c.h"
#include "timer.h"
#include "util.h"

#define FIRST_CHECK_MS 500 /* the first verdict should not wait a whole interval */

static void schedule(struct health *h, int64_t ms);

static struct event_base *
base_of(struct health *h)
{
	return h->task->owner->agent->base;
}

/* End the check in flight, if any, without a verdict. */
static void
cancel(struct health *h)
{
	if (h->bev)
		bufferevent_free(h->bev);
	h->bev = NULL;
	if (h->child_ev)
		event_free(h->child_ev);
	h->child_ev = NULL;
	if (h->child_fd >= 0)
		close(h->child_fd);
	h->child_fd = -1;
	if (h->child > 0) {
		/* The shim kills the command's whole process group and exits at once; it never
		 * waits for the container, so neither does this. */
		kill(h->child, SIGTERM);
		while (waitpid(h->child, NULL, 0) == -1 && errno == EINTR)
			;
	}
	h->child = 0;
	if (h->deadline)
		event_del(h->deadline);
}

static void
verdict(struct health *h, bool ok, const char *why)
{
	const struct service_spec *sp = &h->task->spec;
	enum health_status before = h->status;

	cancel(h);
	metrics_health_result((int)sp->health.kind, ok);
	if (ok) {
		h->failures = 0;
		h->reason[0] = '\0';
		h->status = HEALTH_HEALTHY;
	} else {
		snprintf(h->reason, sizeof(h->reason), "%s", why);
		/* Inside start_period a failure is expected (the app is still starting). */
		if (h->status != HEALTH_HEALTHY &&
		    util_now_ms() - h->started_mono < sp->health.start_period_ms) {
			shoal_log(LOG_DEBUG, "task %s: check failed in start period: %s",
			          h->task->name, why);
		} else if (++h->failures >= sp->health.retries) {
			h->status = HEALTH_UNHEALTHY;
		}
	}
	if (h->status != before && h->changed)
		h->changed(h->task);
	if (h->task)
		schedule(h, sp->health.interval_ms);
}

/* A socket in the container's network namespace: 127.0.0.1 there is the container itself,
 * bridge or host network alike, with or without an address from the node's network. */
static int
socket_in_container(pid_t pid)
{
	cleanup_free char *path = xasprintf("/proc/%d/ns/net", (int)pid);
	cleanup_close int target = open(path, O_RDONLY | O_CLOEXEC);
	cleanup_close int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int fd;

	if (target == -1 || self == -1)
		return -1;
	if (setns(target, CLONE_NEWNET) == -1)
		return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (setns(self, CLONE_NEWNET) == -1) {
		/* The loop thread must not stay in a container's namespace. */
		shoal_log(LOG_ERR, "health: cannot return to the node's network namespace: %s",
		          strerror(errno));
		abort();
	}
	return fd;
}

int
health_http_status(const char *line, size_t len)
{
	char buf[64];
	int code;

	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, line, len);
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/%*d.%*d %d", &code) != 1 || code < 100 || code > 999)
		return -1;
	return code;
}

static void
on_bev_read(struct bufferevent *bev, void *arg)
{
	struct health *h = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	char why[160];
	int code;

	if (line == NULL)
		return; /* the status line is not complete yet */
	code = health_http_status(line, len);
	free(line);
	if (code >= 200 && code < 400) {
		verdict(h, true, NULL);
		return;
	}
	if (code < 0)
		snprintf(why, sizeof(why), "GET %s: not an HTTP response",
		         h->task->spec.health.http_path);
	else
		snprintf(why, sizeof(why), "GET %s: %d", h->task->spec.health.http_path, code);
	verdict(h, false, why);
}

static void
on_bev_event(struct bufferevent *bev, short what, void *arg)
{
	struct health *h = arg;
	const struct service_spec *sp = &h->task->spec;
	char why[160];

	if (what & BEV_EVENT_CONNECTED) {
		if (sp->health.kind == MANIFEST_HEALTH_TCP) {
			verdict(h, true, NULL);
			return;
		}
		evbuffer_add_printf(
		    bufferevent_get_output(bev),
		    "GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: shoal-health\r\n"
		    "Connection: close\r\n\r\n",
		    sp->health.http_path);
		bufferevent_enable(bev, EV_READ);
		return;
	}
	if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s port %u: %s",
		         sp->health.kind == MANIFEST_HEALTH_TCP ? "connect to" : "GET",
		         sp->health.port, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		snprintf(why, sizeof(why), "GET %s: connection closed without a response",
		         sp->health.http_path);
	verdict(h, false, why);
}

static void
start_socket_check(struct health *h)
{
	const struct service_spec *sp = &h->task->spec;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(sp->health.port)};
	int fd = socket_in_container(h->task->pid);

	if (fd == -1) {
		verdict(h, false, "cannot reach the container's network");
		return;
	}
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	h->bev = bufferevent_socket_new(base_of(h), fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(h->bev, on_bev_read, NULL, on_bev_event, h);
	if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		verdict(h, false, "connect failed");
}

static void
on_child(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;
	int status = 0;
	char why[160];

	(void)fd;
	(void)what;
	if (waitpid(h->child, &status, WNOHANG) <= 0)
		return;
	h->child = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		verdict(h, true, NULL);
		return;
	}
	if (WIFEXITED(status))
		snprintf(why, sizeof(why), "command exited with %d", WEXITSTATUS(status));
	else
		snprintf(why, sizeof(why), "command killed by signal %d", WTERMSIG(status));
	verdict(h, false, why);
}

/* Run the command through `shoal-shim exec`: inside the container and exactly as confined
 * as its init (cgroups, namespaces, capabilities, no_new_privs, seccomp, user, rlimits). The
 * image's binaries are the container root's to replace, so the check must never run them
 * with anything the container itself does not have. */
static void
start_cmd_check(struct health *h)
{
	const struct manifest_argv *cmd = &h->task->spec.health.cmd;
	cleanup_free char **argv = xcalloc(cmd->n + 1, sizeof(char *));
	struct shoal_err err;
	pid_t pid;

	for (size_t i = 0; i < cmd->n; i++)
		argv[i] = cmd->v[i];
	pid = container_exec_start(h->task->owner->root, h->task->container_id, argv, NULL, &err);
	if (pid == -1) {
		verdict(h, false, "cannot start the check command");
		return;
	}
	h->child = pid;
	h->child_fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (h->child_fd == -1) {
		verdict(h, false, "cannot watch the check command");
		return;
	}
	h->child_ev = event_new(base_of(h), h->child_fd, EV_READ, on_child, h);
	event_add(h->child_ev, NULL);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;
	char why[160];

	(void)fd;
	(void)what;
	snprintf(why, sizeof(why), "timed out after %lldms",
	         (long long)h->task->spec.health.timeout_ms);
	verdict(h, false, why);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct health *h = arg;

	(void)fd;
	(void)what;
	if (h->task->pid <= 0)
		return;
	timer_add_ms(h->deadline, h->task->spec.health.timeout_ms);
	if (h->task->spec.health.kind == MANIFEST_HEALTH_CMD)
		start_cmd_check(h);
	else
		start_socket_check(h);
}

static void
schedule(struct health *h, int64_t ms)
{
	if (h->timer)
		timer_add_ms(h->timer, ms);
}

void
health_start(struct health *h, struct agent_task *t, void (*changed)(struct agent_task *t))
{
	const struct service_spec *sp = &t->spec;

	health_stop(h);
	h->task = t;
	h->changed = changed;
	h->child_fd = -1;
	if (sp->health.kind == MANIFEST_HEALTH_NONE) {
		h->status = HEALTH_NONE;
		return;
	}
	h->status = HEALTH_STARTING;
	h->started_mono = util_now_ms();
	h->timer = evtimer_new(base_of(h), on_timer, h);
	h->deadline = evtimer_new(base_of(h), on_deadline, h);
	schedule(h,
	         sp->health.interval_ms < FIRST_CHECK_MS ? sp->health.interval_ms : FIRST_CHECK_MS);
}

void
health_stop(struct health *h)
{
	if (h->task == NULL)
		return;
	cancel(h);
	if (h->timer)
		event_free(h->timer);
	if (h->deadline)
		event_free(h->deadline);
	memset(h, 0, sizeof(*h));
	h->child_fd = -1;
}

const char *
health_text(const struct health *h, char *buf, size_t len)
{
	switch (h->status) {
	case HEALTH_NONE:
		snprintf(buf, len, "%s", "");
		break;
	case HEALTH_STARTING:
		snprintf(buf, len, "starting");
		break;
	case HEALTH_HEALTHY:
		snprintf(buf, len, "healthy");
		break;
	case HEALTH_UNHEALTHY:
		snprintf(buf, len, "unhealthy: %s", h->reason);
		break;
	}
	return buf;
}

int
health_wire_state(const struct health *h)
{
	switch (h->status) {
	case HEALTH_NONE:
		return SHOAL__HEALTH_STATE__HEALTH_STATE_NONE;
	case HEALTH_STARTING:
		return SHOAL__HEALTH_STATE__HEALTH_STATE_STARTING;
	case HEALTH_HEALTHY:
		return SHOAL__HEALTH_STATE__HEALTH_STATE_HEALTHY;
	case HEALTH_UNHEALTHY:
		return SHOAL__HEALTH_STATE__HEALTH_STATE_UNHEALTHY;
	}
	return SHOAL__HEALTH_STATE__HEALTH_STATE_UNSET;
}
