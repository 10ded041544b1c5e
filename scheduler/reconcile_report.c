#include "reconcile_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "err.h"
#include "events.h"
#include "log.h"
#include "logs.h"
#include "reconcile.h"
#include "reconcile_pass.h"
#include "reconcile_task.h"
#include "server-t.h"
#include "service.h"
#include "store.h"
#include "shoal.pb-c.h"
#include "task.h"
#include "util.h"

static struct slot *
slot_of(struct task *t)
{
	return service_slot_find(t->svc, t->slot);
}

/* t reached a terminal state: it gives its node back, leaves the stopping list. */
static void
finished(struct sched_server *srv, struct task *t)
{
	struct slot *sl = slot_of(t);

	t->finished_mono = util_now_ms();
	endpoints_forget(srv, t);
	reconcile_task_unbind(srv, t);
	if (sl) {
		for (size_t i = 0; i < sl->nstopping; i++) {
			if (sl->stopping[i] == t) {
				slot_del_stopping(sl, t);
				reconcile_task_to_history(srv, sl, t);
				reconcile_mark(srv, t->svc);
				return;
			}
		}
	}
	if (task_row_kept(t))
		reconcile_persist_task(srv, t);
	reconcile_mark(srv, t->svc);
}

/*
 * A node reported an address it may not claim. One line per node per second at most, so a
 * flood of such reports cannot flood the log; the next line counts what was held back.
 */
static void
refuse_status(struct node *n, const struct task *t, const struct shoal_err *err)
{
	int64_t now = util_now_ms();

	if (n->refused_log_ms && now - n->refused_log_ms < 1000) {
		n->refused_quiet++;
		return;
	}
	if (n->refused_quiet)
		shoal_log(LOG_WARNING,
		          "node %s: refused the status of task %s: %s (%u more not logged)",
		          n->name, t->name, err->msg, n->refused_quiet);
	else
		shoal_log(LOG_WARNING, "node %s: refused the status of task %s: %s", n->name,
		          t->name, err->msg);
	n->refused_log_ms = now;
	n->refused_quiet = 0;
}

/*
 * The first manifest digest a task of a version reports pins the version to it: tasks
 * assigned from then on run name@digest, so a tag moved meanwhile does not split one
 * version's replicas across two images. Replicas started before the first report run the
 * tag (the race is bounded by one pull; an update with parallelism 1 starts one first).
 */
static bool
is_digest(const char *d)
{
	if (strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
		return false;
	for (d += 7; *d; d++)
		if (!((*d >= '0' && *d <= '9') || (*d >= 'a' && *d <= 'f')))
			return false;
	return true;
}

static void
pin_version(struct sched_server *srv, struct task *t, const char *digest)
{
	struct service *svc = t->svc;
	struct shoal_err err;

	if (!is_digest(digest))
		return; /* not a digest: nothing to pin */
	if (t->version != svc->version && t->version != svc->prev_version)
		return;
	if (!service_pin_set(svc, t->version, digest))
		return;
	shoal_log(LOG_INFO, "service %s: version %llu pinned to %s (reported by %s)", svc->name,
	          (unsigned long long)t->version, digest, t->name);
	reconcile_pass_tx(srv);
	if (store_pin_put(&srv->store, svc->name, t->version, digest,
	                  t->version == svc->version ? svc->prev_version : svc->version,
	                  &err) == -1)
		reconcile_pass_warn(&err);
}

void
reconcile_task_status(struct sched_server *srv, struct node *n, const Shoal__TaskStatus *ts)
{
	struct task *t = task_map_get(&srv->tasks, ts->task_id);
	enum task_state st = (enum task_state)ts->state, old;
	const char *ip = ts->container_ip;
	struct shoal_err err;
	struct slot *sl;
	enum task_health health;
	const char *reason;

	if (t == NULL || t->node != n || !t->bound)
		return; /* stale: a task this node no longer has */
	if (st > TASK_STATE_FAILED)
		return;
	/* The address goes into every proxy's table: it must be one this node can own, or the
	 * status is dropped whole (a state without its address would be a half-true report).
	 * A task that ended is served by no proxy: its end still counts, without the address,
	 * so a slot is never stuck on a task whose last word carried a bad one. */
	if (nodes_check_task_ip(&srv->nodes, n, t->svc->spec.network == MANIFEST_NETWORK_HOST, ip,
	                        &err) == -1) {
		refuse_status(n, t, &err);
		if (st != TASK_STATE_STOPPED && st != TASK_STATE_FAILED)
			return;
		ip = NULL;
	}
	old = t->state;
	task_set_state(t, st, ts->timestamp_ms ? ts->timestamp_ms : util_wall_ms());
	if (ts->message && ts->message[0])
		task_set_message(t, "%s", ts->message);
	else if (st == TASK_STATE_RUNNING && task_desired(t) == TASK_DESIRED_RUNNING)
		task_set_message(t, NULL);
	if (st != old) {
		if (task_terminal(t)) {
			t->exit_code = ts->exit_code;
			t->oom_killed = ts->oom_killed;
		}
		reconcile_task_emit_state(srv, t, st);
	}
	/* The verdict as a type; an agent of an older version sends only its text. */
	if (ts->health_state != SHOAL__HEALTH_STATE__HEALTH_STATE_UNSET &&
	    ts->health_state <= SHOAL__HEALTH_STATE__HEALTH_STATE_UNHEALTHY) {
		health = (enum task_health)ts->health_state;
		reason = ts->health_reason;
	} else {
		health = task_health_parse(ts->health, &reason);
	}
	if (task_set_health(t, health, reason)) {
		if (t->health_state == TASK_HEALTH_HEALTHY)
			reconcile_task_emit(srv, t, "healthy", NULL);
		else if (t->health_state == TASK_HEALTH_UNHEALTHY)
			reconcile_task_emit(srv, t, "unhealthy", "%s", t->health);
		/* An update waits for its new tasks to be healthy. */
		if (t->from_update)
			reconcile_mark(srv, t->svc);
	}
	if (ip && ip[0])
		snprintf(t->ip, sizeof(t->ip), "%s", ip);
	if (ts->image_digest && ts->image_digest[0])
		pin_version(srv, t, ts->image_digest);
	if (ts->started_at_ms)
		t->started_at = ts->started_at_ms;
	if (st == TASK_STATE_RUNNING && t->running_since == 0) {
		t->running_since = util_now_ms();
		logs_task_running(srv, t);
	}
	if (endpoints_viewed(srv, t->svc))
		endpoints_mark(srv);
	if (task_terminal(t)) {
		if (ts->last_output && ts->last_output[0]) {
			free(t->last_output);
			t->last_output = xstrdup(ts->last_output);
		}
		t->exit_code = ts->exit_code;
		t->oom_killed = ts->oom_killed;
		finished(srv, t);
		return;
	}
	if (task_healthy(t))
		reconcile_watch_soon(srv, t->svc);
	/* Only a replacement coming up changes a decision; a plain task going to running
	 * needs no pass (this keeps a million acknowledgements cheap). */
	sl = slot_of(t);
	if (sl && sl->next == t && task_healthy(t))
		reconcile_mark(srv, t->svc);
}

void
reconcile_node_down(struct sched_server *srv, struct node *n)
{
	size_t lost = 0;

	for (struct task *t = n->tasks; t; t = t->node_next) {
		if (!task_wanted(t) || task_terminal(t))
			continue;
		task_phase_set(t, TASK_PHASE_LOST);
		task_set_message(t, "node %s down", n->name);
		reconcile_task_emit(srv, t, "lost", "node %s down", n->name);
		reconcile_mark(srv, t->svc);
		lost++;
	}
	endpoints_mark(srv);
	events_emit(&srv->events, EVENTS_NODE, "down", NULL, n->name, NULL, NULL, 0, 0,
	            "no heartbeat; %zu task%s to replace elsewhere", lost, lost == 1 ? "" : "s");
	if (lost)
		shoal_log(LOG_INFO, "node %s down: replacing %zu task%s elsewhere", n->name, lost,
		          lost == 1 ? "" : "s");
}

void
reconcile_node_registered(struct sched_server *srv, struct node *n,
                          Shoal__TaskStatus *const *running, size_t nrunning)
{
	size_t adopted = 0;

	for (size_t i = 0; i < nrunning; i++) {
		struct task *t = task_map_get(&srv->tasks, running[i]->task_id);
		if (t == NULL || t->node != n || !t->bound)
			continue;
		if (task_wanted(t))
			adopted++;
		reconcile_task_status(srv, n, running[i]);
	}
	/* Tasks it ran before but no longer has died while nobody watched. */
	for (struct task *t = n->tasks, *next; t; t = next) {
		bool reported = false;
		next = t->node_next;
		/* Not yet started there: its Assignments will start it. Wanted stopped: it is. */
		if (task_terminal(t) ||
		    (t->state < TASK_STATE_STARTING && task_desired(t) == TASK_DESIRED_RUNNING))
			continue;
		for (size_t i = 0; i < nrunning && !reported; i++)
			reported = strcmp(running[i]->task_id, t->id) == 0;
		if (reported)
			continue;
		if (task_desired(t) == TASK_DESIRED_SHUTDOWN) {
			task_set_state(t, TASK_STATE_STOPPED, util_wall_ms());
		} else {
			task_set_state(t, TASK_STATE_FAILED, util_wall_ms());
			task_set_message(t, "container gone from %s while it was away", n->name);
		}
		reconcile_task_emit_state(srv, t, t->state);
		finished(srv, t);
	}
	if (adopted)
		shoal_log(LOG_INFO, "node %s: adopted %zu running task%s", n->name, adopted,
		          adopted == 1 ? "" : "s");
	reconcile_mark_node(srv, n);
	endpoints_mark(srv);
}

/* Clear t's pointer to a node that is being removed (history and pending tasks keep one). */
static void
forget_node(struct task *t, const struct node *n)
{
	if (t != NULL && t->node == n)
		t->node = NULL;
}

void
reconcile_node_removed(struct sched_server *srv, struct node *n)
{
	/* Every task bound there ends now: the node is gone for good, nothing will report. */
	while (n->tasks != NULL) {
		struct task *t = n->tasks;
		if (!task_terminal(t)) {
			task_set_state(t,
			               task_desired(t) == TASK_DESIRED_SHUTDOWN ? TASK_STATE_STOPPED
			                                                        : TASK_STATE_FAILED,
			               util_wall_ms());
			task_set_message(t, "node %s removed", n->name);
			reconcile_task_emit_state(srv, t, t->state);
		}
		finished(srv, t);
		if (n->tasks == t) /* finished() did not unbind it: never loop forever */
			reconcile_task_unbind(srv, t);
	}
	for (size_t i = 0; i < srv->services.n; i++) {
		struct service *svc = srv->services.v[i];
		for (size_t j = 0; j < svc->nslots; j++) {
			struct slot *sl = &svc->slots[j];
			forget_node(sl->cur, n);
			forget_node(sl->next, n);
			for (size_t k = 0; k < sl->nstopping; k++)
				forget_node(sl->stopping[k], n);
			for (size_t k = 0; k < SLOT_HISTORY; k++)
				forget_node(sl->history[k], n);
		}
	}
	for (size_t i = 0; i < srv->ndirty_nodes; i++) {
		if (srv->dirty_nodes[i] == n) {
			memmove(srv->dirty_nodes + i, srv->dirty_nodes + i + 1,
			        (srv->ndirty_nodes - i - 1) * sizeof(*srv->dirty_nodes));
			srv->ndirty_nodes--;
			break;
		}
	}
	n->dirty = false;
	reconcile_commits_forget(srv, n);
	endpoints_mark(srv);
}
