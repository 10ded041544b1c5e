/*
 * The task supervisor (tasks.h): the node's task list, each task's record in the data dir
 * and its reports to the scheduler, and applying Assignments (starts and stops run as worker
 * jobs, tasks_op.c; completions come back here). The files of the supervisor share
 * tasks_internal.h.
 */
#include "tasks.h"
#include "health.h"
#include "tasks_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "runtime/container.h"
#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "metrics.h"
#include "netnode.h"
#include "rpc.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"

/* ---- records and reports ---- */

static const char *
state_name(enum agent_task_state s)
{
	static const char *const names[] = {"",        "",         "preparing", "starting",
	                                    "running", "stopping", "stopped",   "failed"};
	return (size_t)s < ARRAY_SIZE(names) ? names[s] : "?";
}

static char *
record_path(struct tasks *ts, const struct agent_task *t)
{
	return xasprintf("%s/tasks/%s.json", ts->root, t->id);
}

static void
record_save(struct tasks *ts, struct agent_task *t)
{
	cleanup_free char *path = record_path(ts, t);
	json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s?, s:s}", "id", t->id, "name",
	                      t->name, "service", t->service, "slot", (int)t->slot, "version",
	                      (json_int_t)t->version, "container_id", t->container_id, "spec",
	                      t->spec_json, "pin", t->pin, "image_digest", t->image_digest);
	char *text = json_dumps(j, JSON_COMPACT);
	struct shoal_err err;

	if (util_write_file_atomic(path, text, strlen(text), 0600, &err) == -1)
		shoal_log(LOG_ERR, "task %s: %s", t->name, err.msg);
	free(text);
	json_decref(j);
}

static void
fill_status(const struct agent_task *t, Shoal__TaskStatus *s)
{
	shoal__task_status__init(s);
	s->task_id = (char *)t->id;
	s->state = (Shoal__TaskState)t->state;
	s->timestamp_ms = t->state_since;
	s->exit_code = t->exit_code;
	s->oom_killed = t->oom_killed;
	s->message = t->message ? t->message : "";
	s->container_ip = (char *)t->ip;
	s->started_at_ms = t->started_at;
	s->image_digest = (char *)t->image_digest;
	s->last_output = t->last_output ? t->last_output : "";
	/* The text lives in a buffer the task owns, as long as the status is used. */
	s->health = (char *)health_text(&t->health, ((struct agent_task *)t)->health_buf,
	                                sizeof(t->health_buf));
	s->health_state = (Shoal__HealthState)health_wire_state(&t->health);
	s->health_reason = t->health.status == HEALTH_UNHEALTHY ? (char *)t->health.reason : "";
}

void
tasks_report(struct tasks *ts, struct agent_task *t)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__TaskReport tr = SHOAL__TASK_REPORT__INIT;
	Shoal__TaskStatus st, *sp = &st;
	struct session *s = &ts->agent->session;
	struct shoal_err err;

	if (s->state != SESSION_READY || s->conn == NULL)
		return; /* the next Register carries every task's state */
	fill_status(t, &st);
	tr.statuses = &sp;
	tr.n_statuses = 1;
	env.id = ++s->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_TASK_REPORT;
	env.task_report = &tr;
	if (rpc_send(s->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "report %s: %s", t->name, err.msg);
}

void
tasks_set_state(struct tasks *ts, struct agent_task *t, enum agent_task_state st, const char *msg)
{
	bool changed = t->state != st || (msg && (!t->message || strcmp(msg, t->message) != 0));

	t->state = st;
	t->state_since = util_wall_ms();
	free(t->message);
	t->message = msg && msg[0] ? xstrdup(msg) : NULL;
	if (!changed)
		return;
	if (st == ATASK_FAILED)
		shoal_log(LOG_WARNING, "task %s %s: %s", t->name, state_name(st),
		          msg ? msg : "exited");
	else
		shoal_log(LOG_INFO, "task %s %s%s%s", t->name, state_name(st), msg ? ": " : "",
		          msg ? msg : "");
	tasks_report(ts, t);
}

/* ---- task list ---- */

struct agent_task *
tasks_add(struct tasks *ts, const char *id, const char *name, const char *service, uint32_t slot,
          uint64_t version, const char *spec_json, struct service_spec *spec)
{
	struct agent_task *t = xcalloc(1, sizeof(*t));

	snprintf(t->id, sizeof(t->id), "%s", id);
	t->name = xstrdup(name);
	t->service = xstrdup(service);
	t->slot = slot;
	t->version = version;
	t->spec_json = xstrdup(spec_json);
	t->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	t->exit_code = -1;
	t->sync_fd = t->pid_fd = -1;
	t->owner = ts;
	t->state_since = util_wall_ms();
	if (ts->n == ts->cap) {
		ts->cap = ts->cap ? ts->cap * 2 : 16;
		ts->v = xrealloc(ts->v, ts->cap * sizeof(*ts->v));
	}
	ts->v[ts->n++] = t;
	return t;
}
static void
task_destroy(struct tasks *ts, struct agent_task *t)
{
	for (size_t i = 0; i < ts->n; i++) {
		if (ts->v[i] == t) {
			ts->v[i] = ts->v[--ts->n];
			break;
		}
	}
	tasks_watch_stop(t);
	free(t->name);
	free(t->service);
	free(t->spec_json);
	free(t->message);
	free(t->pin);
	free(t->kill_reason);
	free(t->last_output);
	manifest_spec_free(&t->spec);
	free(t);
}

struct agent_task *
tasks_find(struct tasks *ts, const char *id_or_name)
{
	for (size_t i = 0; i < ts->n; i++)
		if (strcmp(ts->v[i]->id, id_or_name) == 0 ||
		    strcmp(ts->v[i]->name, id_or_name) == 0)
			return ts->v[i];
	return NULL;
}

/* ---- completions ---- */

static void stop_task(struct tasks *ts, struct agent_task *t);

static void
start_done(struct tasks *ts, struct op *op)
{
	struct agent_task *t = op->t;

	if (op->container_id[0]) {
		snprintf(t->container_id, sizeof(t->container_id), "%s", op->container_id);
		record_save(ts, t);
	}
	if (op->image_digest[0]) {
		snprintf(t->image_digest, sizeof(t->image_digest), "%s", op->image_digest);
		record_save(ts, t);
	}
	metrics_container_started(op->rc == 0, (double)(util_now_ms() - op->queued_ms) / 1000.0);
	if (op->rc == 0) {
		t->started_at = op->started_at;
		t->exit_code = -1;
		tasks_watch_sync(ts, t, op->sync_fd);
		t->pid = op->pid;
		tasks_watch_health(t);
		tasks_set_state(ts, t, ATASK_RUNNING, NULL);
	} else {
		t->exit_code = op->exit_code;
		tasks_set_state(ts, t, ATASK_FAILED, op->err.msg);
	}
	if (!t->wanted)
		stop_task(ts, t);
}

static void
stop_done(struct tasks *ts, struct op *op)
{
	struct agent_task *t = op->t;
	cleanup_free char *path = record_path(ts, t);

	if (op->rc == -1)
		shoal_log(LOG_WARNING, "task %s: remove: %s", t->name, op->err.msg);
	if (t->state == ATASK_STOPPING)
		tasks_set_state(ts, t, ATASK_STOPPED, NULL);
	if (t->wanted) {
		/* Listed again while it stopped (a scheduler that changed its mind). */
		t->removing = false;
		return;
	}
	unlink(path);
	/* The container is gone: its address can go to another task. */
	netnode_release(&ts->agent->netnode, t->id);
	task_destroy(ts, t);
}

static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct tasks *ts = arg;
	struct op *op;

	(void)what;
	struct op_msg m;

	while (read(fd, &m, sizeof(m)) == (ssize_t)sizeof(m)) {
		op = m.op;
		if (!m.done) {
			if (op->t->state == ATASK_PREPARING)
				tasks_set_state(ts, op->t, ATASK_PREPARING, m.text);
			continue;
		}
		op->t->busy = false;
		ts->workers--;
		if (op->kind == OP_START)
			start_done(ts, op);
		else
			stop_done(ts, op);
		tasks_op_free(op);
	}
}

/* ---- the supervisor ---- */

static void
start_task(struct tasks *ts, struct agent_task *t)
{
	char cidr[20] = "", gateway[16] = "";
	struct shoal_err err;
	int rc = 0;

	/* The address is leased here, on the loop, so two starts never race for one; and
	 * before the first report, which then carries it. */
	if (t->spec.network == MANIFEST_NETWORK_BRIDGE)
		rc = netnode_alloc(&ts->agent->netnode, t->id, t->ip, cidr, gateway, &err);
	record_save(ts, t);
	if (rc == -1) {
		tasks_set_state(ts, t, ATASK_FAILED, err.msg);
		return;
	}
	tasks_set_state(ts, t, ATASK_PREPARING, NULL);
	tasks_op_run(ts, t, OP_START, cidr[0] ? cidr : NULL, gateway[0] ? gateway : NULL);
}

static void
stop_task(struct tasks *ts, struct agent_task *t)
{
	if (t->busy)
		return; /* decided again when the running op completes */
	t->removing = true;
	if (t->state <= ATASK_RUNNING)
		tasks_set_state(ts, t, ATASK_STOPPING, NULL);
	tasks_op_run(ts, t, OP_STOP, NULL, NULL);
}

/* Whether the task or container name SERVICE.SLOT.xxxx belongs to a service of the list. */
static bool
service_listed(const Shoal__Assignments *as, const char *name)
{
	const char *last = strrchr(name, '.'), *slot = NULL;
	size_t len;

	for (const char *p = name; p < last; p++)
		if (*p == '.')
			slot = p;
	if (last == NULL || slot == NULL)
		return true; /* not a task's: not ours to judge */
	len = (size_t)(slot - name);
	for (size_t k = 0; k < as->n_services; k++)
		if (strlen(as->services[k]) == len && strncmp(as->services[k], name, len) == 0)
			return true;
	return false;
}

/*
 * The ended containers kept for the logs of services that are gone, or being removed, go (a
 * stop of a task of theirs removes its container whole). Stripped, each is two small files:
 * cheap enough for the loop. Containers of tasks still on the list are their stop op's.
 */
static void
forget_removed(struct tasks *ts, const Shoal__Assignments *as)
{
	struct shoal_err err = {0};
	struct container **v;
	size_t n = 0;

	v = container_list(ts->root, &n, &err);
	for (size_t i = 0; v && i < n; i++) {
		const char *name = v[i]->spec.name;
		if (name == NULL || v[i]->status != CONTAINER_EXITED || container_alive(v[i]) ||
		    tasks_find(ts, name) != NULL || service_listed(as, name))
			continue;
		if (container_remove(v[i], true, &err) == -1)
			shoal_log(LOG_WARNING, "forget %s: %s", name, err.msg);
	}
	if (v)
		container_list_free(v, n);
}

/*
 * The spec of (service, version) from a task of that version that these Assignments list
 * too (wanted), or NULL: the one the scheduler counted on. Not any task of that version: one
 * no longer listed is on its way out, and a service removed and applied again numbers its
 * versions anew.
 */
static const char *
held_spec(const struct tasks *ts, const char *service, uint64_t version)
{
	for (size_t i = 0; i < ts->n; i++)
		if (ts->v[i]->wanted && ts->v[i]->version == version &&
		    strcmp(ts->v[i]->service, service) == 0)
			return ts->v[i]->spec_json;
	return NULL;
}

void
tasks_apply(struct tasks *ts, const Shoal__Assignments *as)
{
	size_t started = 0, stopped = 0;

	ts->generation = as->generation;
	for (size_t i = 0; i < ts->n; i++)
		ts->v[i]->wanted = false;
	/* What it already runs first: a new task may take its spec from one listed after it. */
	for (size_t i = 0; i < as->n_tasks; i++) {
		struct agent_task *t = tasks_find(ts, as->tasks[i]->task_id);
		if (t)
			t->wanted = true;
	}
	for (size_t i = 0; i < as->n_tasks; i++) {
		const Shoal__TaskSpec *sp = as->tasks[i];
		const char *json = NULL, *pin = NULL;
		struct service_spec spec;
		struct shoal_err err;
		struct agent_task *t;

		if (tasks_find(ts, sp->task_id))
			continue;
		for (size_t k = 0; k < as->n_specs; k++)
			if (as->specs[k]->version == sp->version &&
			    strcmp(as->specs[k]->service, sp->service) == 0) {
				json = as->specs[k]->spec_json;
				pin = as->specs[k]->image_digest;
			}
		/* Sent once a session (Register.keeps_specs): a task of the version has it. */
		if (json != NULL && json[0] == '\0')
			json = held_spec(ts, sp->service, sp->version);
		if (json == NULL || manifest_spec_from_json(json, &spec, &err) == -1) {
			shoal_log(LOG_ERR, "task %s: no usable spec in the assignments", sp->name);
			continue;
		}
		t = tasks_add(ts, sp->task_id, sp->name, sp->service, sp->slot, sp->version, json,
		              &spec);
		t->wanted = true;
		t->pin = pin && pin[0] ? xstrdup(pin) : NULL;
		start_task(ts, t);
		started++;
	}
	for (size_t i = 0; i < ts->n; i++) {
		struct agent_task *t = ts->v[i];
		if (!t->wanted && !service_listed(as, t->name))
			t->forget = true;
		if (t->wanted || t->removing || t->busy)
			continue;
		stop_task(ts, t);
		stopped++;
	}
	forget_removed(ts, as);
	shoal_log(LOG_DEBUG, "assignments gen=%llu: %zu tasks, %zu to start, %zu to stop",
	          (unsigned long long)as->generation, as->n_tasks, started, stopped);
}

size_t
tasks_status_all(struct tasks *ts, Shoal__TaskStatus ***out)
{
	Shoal__TaskStatus **v = xcalloc(ts->n ? ts->n : 1, sizeof(*v));

	for (size_t i = 0; i < ts->n; i++) {
		v[i] = xmalloc(sizeof(*v[i]));
		fill_status(ts->v[i], v[i]);
	}
	*out = v;
	return ts->n;
}

void
tasks_status_free(Shoal__TaskStatus **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int
tasks_init(struct tasks *ts, struct agent_server *a, const char *root, const char *image_dir,
           struct shoal_err *err)
{
	cleanup_free char *dir = xasprintf("%s/tasks", root);

	memset(ts, 0, sizeof(*ts));
	ts->agent = a;
	ts->root = xstrdup(root);
	ts->image_dir = image_dir ? xstrdup(image_dir) : NULL;
	ts->insecure = xcalloc(1, sizeof(char *));
	pthread_mutex_init(&ts->pull_mu, NULL);
	pthread_rwlock_init(&ts->image_lock, NULL);
	pthread_cond_init(&ts->pull_cv, NULL);
	ts->done_pipe[0] = ts->done_pipe[1] = -1;
	if (util_mkdir_p(dir, 0700, err) == -1)
		return -1;
	if (pipe2(ts->done_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		return err_set(err, errno, "pipe");
	ts->done_ev = event_new(a->base, ts->done_pipe[0], EV_READ | EV_PERSIST, on_done, ts);
	event_add(ts->done_ev, NULL);
	return 0;
}

void
tasks_free(struct tasks *ts)
{
	/* Workers still running hold ops that point at tasks: wait for them (bounded by the
	 * stop grace), so nothing they touch is freed under them. */
	for (int i = 0; ts->workers > 0 && i < 3000; i++) {
		on_done(ts->done_pipe[0], EV_READ, ts);
		if (ts->workers)
			usleep(10000);
	}
	for (int i = 0; __atomic_load_n(&ts->gc_running, __ATOMIC_ACQUIRE) && i < 3000; i++)
		usleep(10000);
	if (ts->gc_ev)
		event_free(ts->gc_ev);
	while (ts->n)
		task_destroy(ts, ts->v[0]);
	free(ts->v);
	if (ts->done_ev)
		event_free(ts->done_ev);
	if (ts->done_pipe[0] >= 0)
		close(ts->done_pipe[0]);
	if (ts->done_pipe[1] >= 0)
		close(ts->done_pipe[1]);
	free(ts->root);
	free(ts->image_dir);
	free(ts->registry_auth);
	for (size_t i = 0; ts->insecure && ts->insecure[i]; i++)
		free(ts->insecure[i]);
	free(ts->insecure);
	for (size_t i = 0; i < ts->npulling; i++)
		free(ts->pulling[i]);
	free(ts->pulling);
	pthread_mutex_destroy(&ts->pull_mu);
	pthread_rwlock_destroy(&ts->image_lock);
	pthread_cond_destroy(&ts->pull_cv);
	memset(ts, 0, sizeof(*ts));
}
