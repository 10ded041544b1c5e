/*
 * A running task's container (tasks.h): its exit, seen on the shim's sync socket or, for a
 * container re-adopted after an agent restart, on a pidfd; and its health check's verdicts.
 */
#include "tasks_internal.h"
#include "health.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "runtime/container.h"
#include "runtime/logfile.h"
#include "log.h"
#include "server-t.h"
#include "util.h"

void
tasks_watch_stop(struct agent_task *t)
{
	health_stop(&t->health);
	t->pid = 0;
	if (t->unhealthy_ev)
		event_free(t->unhealthy_ev);
	t->unhealthy_ev = NULL;
	if (t->exit_ev)
		event_free(t->exit_ev);
	t->exit_ev = NULL;
	if (t->sync_fd >= 0)
		close(t->sync_fd);
	if (t->pid_fd >= 0)
		close(t->pid_fd);
	t->sync_fd = t->pid_fd = -1;
}

static void
exited(struct tasks *ts, struct agent_task *t, int code, int sig, bool oom)
{
	char msg[128];

	tasks_watch_stop(t);
	if (t->removing || t->state >= ATASK_STOPPING)
		return; /* a stop we asked for: the stop op reports it */
	t->exit_code = oom ? 137 : sig ? 128 + sig : code;
	t->oom_killed = oom;
	if (t->kill_reason)
		snprintf(msg, sizeof(msg), "%s", t->kill_reason);
	else if (oom)
		snprintf(msg, sizeof(msg), "OOM-killed (exit 137)");
	else if (sig)
		snprintf(msg, sizeof(msg), "killed by signal %d (exit %d)", sig, 128 + sig);
	else
		snprintf(msg, sizeof(msg), "exited with code %d", code);
	free(t->last_output);
	t->last_output = NULL;
	if (t->container_id[0]) {
		cleanup_free char *dir = xasprintf("%s/containers/%s", ts->root, t->container_id);
		t->last_output = logfile_last(dir, 5, 1024);
	}
	tasks_set_state(ts, t, t->exit_code == 0 && !t->kill_reason ? ATASK_STOPPED : ATASK_FAILED,
	                msg);
}

/* How long an unhealthy task keeps running after its report, so the scheduler can take it
 * out of every proxy's Endpoints before it dies: killed at once, connects still on their way
 * to it and requests in flight on it failed. (A wedged app serves nothing meanwhile either.) */
#define UNHEALTHY_DRAIN_MS 1000

static void
kill_unhealthy(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct tasks *ts = t->owner;
	struct container *c;

	(void)fd;
	(void)what;
	/* Healthy again meanwhile, or being stopped anyway: nothing to kill. */
	if (t->health.status != HEALTH_UNHEALTHY || t->removing || t->state >= ATASK_STOPPING)
		return;
	free(t->kill_reason);
	t->kill_reason = xasprintf("unhealthy: %s", t->health.reason);
	c = container_load(ts->root, t->container_id, NULL);
	if (c && container_alive(c) && container_kill(c, SIGKILL, NULL) == 0)
		shoal_log(LOG_INFO, "task %s killed: unhealthy", t->name);
	container_free(c);
}

/*
 * The check's verdict changed. Tell the scheduler (an unhealthy task leaves Endpoints at
 * once); an unhealthy task is killed UNHEALTHY_DRAIN_MS later so its restart policy replaces
 * it, as in Swarm.
 */
static void
on_health(struct agent_task *t)
{
	struct tasks *ts = t->owner;
	struct timeval tv = {UNHEALTHY_DRAIN_MS / 1000, (UNHEALTHY_DRAIN_MS % 1000) * 1000};
	char buf[200];

	shoal_log(t->health.status == HEALTH_UNHEALTHY ? LOG_WARNING : LOG_INFO, "task %s %s",
	          t->name, health_text(&t->health, buf, sizeof(buf)));
	tasks_report(ts, t);
	if (t->health.status != HEALTH_UNHEALTHY || t->removing)
		return;
	if (t->unhealthy_ev == NULL)
		t->unhealthy_ev = evtimer_new(ts->agent->base, kill_unhealthy, t);
	if (!evtimer_pending(t->unhealthy_ev, NULL))
		evtimer_add(t->unhealthy_ev, &tv);
}

static void
on_sync(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct container_msg m;
	struct shoal_err err;

	(void)fd;
	(void)what;
	if (container_wait_exit(t->sync_fd, &m, &err) == -1) {
		/* The shim went away without a word: read what it recorded. */
		struct container *c = container_load(t->owner->root, t->container_id, NULL);
		exited(t->owner, t, c ? c->exit_code : -1, c ? c->exit_signal : 0,
		       c ? c->oom_killed : false);
		container_free(c);
		return;
	}
	exited(t->owner, t, m.exit_code, m.signal, m.oom != 0);
}

/* The init of a re-adopted container exited; its shim writes the exit into state.json right
 * after. Read it, and look again on a timer (never sleeping on the loop) until it is there,
 * for at most half a second. */
static void
on_pidfd(evutil_socket_t fd, short what, void *arg)
{
	struct agent_task *t = arg;
	struct container *c = container_load(t->owner->root, t->container_id, NULL);

	(void)fd;
	(void)what;
	if (c != NULL && c->status != CONTAINER_EXITED && t->exit_polls++ < 50) {
		struct timeval tv = {0, 10000};
		container_free(c);
		if (t->exit_ev)
			event_free(t->exit_ev);
		t->exit_ev = evtimer_new(t->owner->agent->base, on_pidfd, t);
		evtimer_add(t->exit_ev, &tv);
		return;
	}
	exited(t->owner, t, c ? c->exit_code : -1, c ? c->exit_signal : 0,
	       c ? c->oom_killed : false);
	container_free(c);
}

void
tasks_watch_sync(struct tasks *ts, struct agent_task *t, int fd)
{
	t->sync_fd = fd;
	t->exit_ev = event_new(ts->agent->base, fd, EV_READ, on_sync, t);
	event_add(t->exit_ev, NULL);
}

bool
tasks_watch_pid(struct tasks *ts, struct agent_task *t, pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd == -1)
		return false;
	t->pid_fd = fd;
	t->exit_ev = event_new(ts->agent->base, fd, EV_READ, on_pidfd, t);
	event_add(t->exit_ev, NULL);
	return true;
}

void
tasks_watch_health(struct agent_task *t)
{
	health_start(&t->health, t, on_health);
}
