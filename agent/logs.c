#include "logs.h"
#include "exec.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "rpc.h"
#include "runtime/container.h"
#include "runtime/logfile.h"
#include "server-t.h"
#include "tasks.h"
#include "shoal.pb-c.h"
#include "util.h"

#define CHUNK_MAX (256 * 1024) /* well under the frame limit */
#define POLL_MS   200

static void
send_chunk(struct logs *l, uint64_t id, const char *task, const char *data, size_t len, bool eof)
{
	struct session *s = &l->agent->session;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__LogChunk ch = SHOAL__LOG_CHUNK__INIT;
	struct shoal_err err;

	if (s->conn == NULL)
		return;
	ch.task = (char *)task;
	ch.data.data = (uint8_t *)data;
	ch.data.len = len;
	ch.eof = eof;
	env.id = id;
	env.body_case = SHOAL__ENVELOPE__BODY_LOG_CHUNK;
	env.log_chunk = &ch;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "logs: %s", err.msg);
}

static void
send_all(struct logs *l, uint64_t id, const char *task, const char *data, size_t len, bool eof)
{
	do {
		size_t n = len > CHUNK_MAX ? CHUNK_MAX : len;
		send_chunk(l, id, task, data, n, eof && n == len);
		data += n;
		len -= n;
	} while (len > 0);
}

static void
follow_free(struct log_follow *f)
{
	if (f->lf) {
		logfile_close(f->lf);
		free(f->lf);
	}
	free(f);
}

static void
unlink_follow(struct logs *l, struct log_follow *f)
{
	for (struct log_follow **p = &l->follows; *p; p = &(*p)->next) {
		if (*p == f) {
			*p = f->next;
			break;
		}
	}
	follow_free(f);
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct logs *l = arg;
	(void)fd;
	(void)what;
	for (struct log_follow *f = l->follows, *next; f; f = next) {
		struct agent_task *t = tasks_find(&l->agent->tasks, f->task_id);
		char *buf;
		size_t n;
		next = f->next;
		while ((buf = logfile_read(f->lf, &n)) != NULL) {
			send_all(l, f->id, t ? t->name : f->task_id, buf, n, false);
			free(buf);
		}
		/* The container ended (or the task went): what it wrote is all there is. */
		if (t == NULL || t->state != ATASK_RUNNING) {
			send_chunk(l, f->id, t ? t->name : f->task_id, NULL, 0, true);
			unlink_follow(l, f);
		}
	}
	if (l->follows) {
		struct timeval tv = {0, POLL_MS * 1000};
		event_add(l->poll, &tv);
	}
}

void
logs_request(struct logs *l, uint64_t id, const Shoal__LogsRequest *req)
{
	struct agent_task *t = tasks_find(&l->agent->tasks, req->task);
	cleanup_free char *dir = NULL;
	struct log_follow *f;
	struct shoal_err err;
	struct logfile_opts o = {
	    .tail = req->tail, .since_ms = req->since_ms, .timestamps = req->timestamps};
	char *head = NULL, name[256];
	size_t len = 0;
	char msg[600];
	bool following;

	if (req->cancel) {
		for (f = l->follows; f; f = f->next) {
			if (f->id == id) {
				unlink_follow(l, f);
				break;
			}
		}
		return;
	}
	if (t == NULL || t->container_id[0] == '\0') {
		/* An ended task's container is kept, stripped, under the task's name (retired.h).
		 */
		struct container *c =
		    t ? NULL : container_load(l->agent->tasks.root, req->task, NULL);
		if (c == NULL) {
			snprintf(msg, sizeof(msg), "(no output: task %s has no container on %s)\n",
			         req->task, l->agent->name);
			send_chunk(l, id, t ? t->name : req->task, msg, strlen(msg), true);
			return;
		}
		dir = xstrdup(c->dir);
		snprintf(name, sizeof(name), "%s", c->spec.name ? c->spec.name : req->task);
		container_free(c);
	} else {
		dir = xasprintf("%s/containers/%s", l->agent->tasks.root, t->container_id);
		snprintf(name, sizeof(name), "%s", t->name);
	}
	following = req->follow && t && t->state == ATASK_RUNNING;
	f = xcalloc(1, sizeof(*f));
	f->lf = xcalloc(1, sizeof(*f->lf));
	if (logfile_open(f->lf, dir, &o, &head, &len, &err) == -1) {
		snprintf(msg, sizeof(msg), "(cannot read the log of %s: %s)\n", name, err.msg);
		send_chunk(l, id, name, msg, strlen(msg), true);
		follow_free(f);
		return;
	}
	send_all(l, id, name, head, len, !following);
	free(head);
	if (!following) {
		follow_free(f);
		return;
	}
	f->id = id;
	snprintf(f->task_id, sizeof(f->task_id), "%s", t->id);
	f->next = l->follows;
	l->follows = f;
	if (!event_pending(l->poll, EV_TIMEOUT, NULL)) {
		struct timeval tv = {0, POLL_MS * 1000};
		event_add(l->poll, &tv);
	}
}

void
logs_init(struct logs *l, struct agent_server *a)
{
	memset(l, 0, sizeof(*l));
	l->agent = a;
	l->poll = evtimer_new(a->base, on_poll, l);
}

void
logs_reset(struct logs *l)
{
	exec_reset(l);
	while (l->follows)
		unlink_follow(l, l->follows);
}

void
agent_logs_free(struct logs *l)
{
	logs_reset(l);
	if (l->poll)
		event_free(l->poll);
	memset(l, 0, sizeof(*l));
}
