#include "reconcile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "endpoints.h"
#include "err.h"
#include "reconcile_pass.h"
#include "reconcile_slot.h"
#include "update.h"
#include "update_text.h"
#include "log.h"
#include "logs.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "place.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
#include "store.h"
#include "shoal.pb-c.h"
#include "util.h"

#define PASS_BUDGET_MS   50   /* a reconcile pass yields to the loop after this much work */
#define DISPATCH_WAIT_MS 1000 /* longest a node's Assignments wait for a burst to settle */
#define TX_MAX_MS        1000 /* longest a burst keeps its store transaction open */

static void
store_warn(struct shoal_err *err)
{
	shoal_log(LOG_ERR, "store: %s", err->msg);
}

/* One task event (scheduler/events.h): fmt, when not NULL, says why. */
static void __attribute__((format(printf, 4, 5)))
emit_task(struct sched_server *srv, const struct task *t, const char *action, const char *fmt, ...)
{
	char msg[256] = "";
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	events_emit(&srv->events, EVENTS_TASK, action, t->svc->name, t->node ? t->node->name : NULL,
	            t->id, t->name, t->slot, t->version, "%s", msg);
}

/* The event of a task that reached state st (reported by its node, or decided here). */
static void
emit_task_state(struct sched_server *srv, const struct task *t, enum task_state st)
{
	switch (st) {
	case TASK_STATE_PREPARING:
		emit_task(srv, t, "preparing", NULL);
		break;
	case TASK_STATE_STARTING:
		emit_task(srv, t, "starting", NULL);
		break;
	case TASK_STATE_RUNNING:
		emit_task(srv, t, "running", NULL);
		break;
	case TASK_STATE_STOPPING:
		emit_task(srv, t, "stopping", "%s", t->message ? t->message : "");
		break;
	case TASK_STATE_STOPPED:
		if (t->desired == TASK_DESIRED_SHUTDOWN)
			emit_task(srv, t, "stopped", "%s", t->message ? t->message : "");
		else
			emit_task(srv, t, "exited", "exited with code %d%s", t->exit_code,
			          t->oom_killed ? " (OOM killed)" : "");
		break;
	case TASK_STATE_FAILED:
		emit_task(srv, t, "failed", "%s", t->message ? t->message : "failed");
		break;
	default:
		break;
	}
}

/* ---- binding tasks to nodes ---- */

static void
bind_task(struct sched_server *srv, struct task *t, struct node *n)
{
	t->node = n;
	t->bound = true;
	t->cpu_millis = t->svc->spec.resources.cpu_millis;
	t->memory_bytes = t->svc->spec.resources.memory_bytes;
	n->reserved_cpu_millis += (int64_t)t->cpu_millis;
	n->reserved_memory_bytes += t->memory_bytes;
	n->ntasks++;
	t->node_prev = NULL;
	t->node_next = n->tasks;
	if (n->tasks)
		n->tasks->node_prev = t;
	n->tasks = t;
	reconcile_mark_node(srv, n);
}

static void
unbind_task(struct sched_server *srv, struct task *t)
{
	struct node *n = t->node;

	if (!t->bound)
		return;
	t->bound = false;
	n->reserved_cpu_millis -= (int64_t)t->cpu_millis;
	n->reserved_memory_bytes -= t->memory_bytes;
	n->ntasks--;
	if (t->node_prev)
		t->node_prev->node_next = t->node_next;
	else
		n->tasks = t->node_next;
	if (t->node_next)
		t->node_next->node_prev = t->node_prev;
	t->node_prev = t->node_next = NULL;
	reconcile_mark_node(srv, n);
}

/* Forget a task entirely (it left the slot's history or its slot went). */
static void
drop_task(struct sched_server *srv, struct task *t)
{
	if (t == NULL)
		return;
	endpoints_forget(srv, t);
	unbind_task(srv, t);
	reconcile_pass_forget_task(srv, t);
	task_map_del(&srv->tasks, t);
	task_free(t);
}

static void
to_history(struct sched_server *srv, struct slot *sl, struct task *t)
{
	/* History is memory only: after a restart a slot starts from its live tasks. */
	reconcile_pass_forget_task(srv, t);
	drop_task(srv, slot_push_history(sl, t));
}

static struct task *
new_task(struct sched_server *srv, struct service *svc, uint32_t slot, uint32_t restarts)
{
	struct task *t = task_new(svc, slot, svc->version, util_wall_ms());

	t->restarts = restarts;
	task_map_put(&srv->tasks, t);
	return t;
}

/* Ask for t to stop. A task never placed stops at once. */
static void
shutdown_task(struct sched_server *srv, struct task *t, const char *why)
{
	if (t->desired == TASK_DESIRED_SHUTDOWN)
		return;
	/* Out of every proxy's rotation first; the node stops it once they all confirmed. */
	endpoints_drain(srv, t);
	t->desired = TASK_DESIRED_SHUTDOWN;
	if (why)
		task_set_message(t, "%s", why);
	/* Scaled away or the service removed: the slot goes; anything else replaces the task.
	 * A task that ended already said so. */
	if (task_terminal(t))
		;
	else if (why && (strcmp(why, "scaled down") == 0 || strcmp(why, "service removed") == 0))
		emit_task(srv, t, "removed", "%s", why);
	else
		emit_task(srv, t, why ? "replaced" : "shutdown", "%s", why ? why : "");
	if (!t->bound && !task_terminal(t)) {
		task_set_state(t, TASK_STATE_STOPPED, util_wall_ms());
		t->finished_mono = util_now_ms();
	}
	if (t->bound)
		reconcile_mark_node(srv, t->node);
}

/* Replace slot's current task by a new one; the old one stops (or is history already). */
static struct task *
replace_cur(struct sched_server *srv, struct slot *sl, struct task *fresh, const char *why)
{
	struct task *old = sl->cur;

	sl->cur = fresh;
	if (old) {
		shutdown_task(srv, old, why);
		if (task_terminal(old)) {
			to_history(srv, sl, old);
		} else {
			slot_add_stopping(sl, old);
			reconcile_persist_task(srv, old);
		}
	}
	reconcile_persist_task(srv, fresh);
	return fresh;
}

/* A removed service applied again (README "shoal rm"): its slots come back, each task of the
 * old incarnation keeps stopping (or is history), and every slot starts a new task, as a
 * created service would; slots freed already are numbered again by scale(). */
void
reconcile_service_recreated(struct sched_server *srv, struct service *svc)
{
	for (size_t i = 0; i < svc->nslots; i++) {
		struct slot *sl = &svc->slots[i];
		struct task *old[] = {sl->next, sl->cur};
		sl->removed = false;
		sl->cur = sl->next = NULL;
		for (size_t k = 0; k < ARRAY_SIZE(old); k++) {
			if (old[k] == NULL)
				continue;
			if (task_terminal(old[k])) {
				to_history(srv, sl, old[k]);
			} else {
				slot_add_stopping(sl, old[k]);
				reconcile_persist_task(srv, old[k]);
			}
		}
	}
	reconcile_mark(srv, svc);
}

/* ---- the per-service pass ---- */

/* Pick which slots a scale-down removes: those on the most loaded nodes first (keeps the
 * spread even), then the highest slot numbers. */
struct victim {
	struct slot *sl;
	uint32_t load;
};

static int
victim_cmp(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;

	if (x->load != y->load)
		return x->load > y->load ? -1 : 1;
	return x->sl->num > y->sl->num ? -1 : x->sl->num < y->sl->num;
}

static void
scale(struct sched_server *srv, struct service *svc)
{
	uint32_t want = svc->removed ? 0 : svc->spec.replicas, have = 0, from = 1;
	struct victim *v;
	size_t nv = 0;

	for (size_t i = 0; i < svc->nslots; i++)
		have += !svc->slots[i].removed;
	while (have < want) {
		struct slot *sl = service_slot(svc, service_free_slot_from(svc, from));
		from = sl->num + 1;
		sl->cur = new_task(srv, svc, sl->num, 0);
		reconcile_persist_task(srv, sl->cur);
		have++;
	}
	if (have <= want)
		return;
	/* Load per node = this service's tasks there. */
	for (size_t i = 0; i < svc->nslots; i++)
		if (svc->slots[i].cur && svc->slots[i].cur->node)
			svc->slots[i].cur->node->scratch = 0;
	for (size_t i = 0; i < svc->nslots; i++)
		if (!svc->slots[i].removed && svc->slots[i].cur && svc->slots[i].cur->node &&
		    task_live(svc->slots[i].cur))
			svc->slots[i].cur->node->scratch++;
	v = xcalloc(have, sizeof(*v));
	for (size_t i = 0; i < svc->nslots; i++) {
		struct slot *sl = &svc->slots[i];
		if (sl->removed)
			continue;
		v[nv].sl = sl;
		/* Pending and dead tasks go first: removing them costs nothing. */
		v[nv].load = !sl->cur || !sl->cur->node || !task_live(sl->cur)
		                 ? UINT32_MAX
		                 : sl->cur->node->scratch;
		nv++;
	}
	qsort(v, nv, sizeof(*v), victim_cmp);
	for (size_t i = 0; i < have - want; i++) {
		struct slot *sl = v[i].sl;
		const char *why = svc->removed ? "service removed" : "scaled down";
		sl->removed = true;
		if (sl->cur && !task_terminal(sl->cur)) {
			shutdown_task(srv, sl->cur, why);
			reconcile_persist_task(srv, sl->cur);
		}
		if (sl->next) {
			shutdown_task(srv, sl->next, why);
			reconcile_persist_task(srv, sl->next);
		}
		/* Recount loads as victims go, so one node is not emptied while others keep two. */
		if (sl->cur && sl->cur->node && sl->cur->node->scratch)
			sl->cur->node->scratch--;
	}
	free(v);
}

/* A removed slot goes once none of its tasks is still running somewhere. */
/* Is t still running somewhere we can hear from? A task on a down node does not hold up
 * its slot's removal: if the node returns, it stops what it is no longer assigned. */
static bool
still_running(const struct task *t)
{
	return t && !task_terminal(t) && t->bound && t->node && t->node->status != NODE_DOWN;
}

/* A removed slot goes once none of its tasks is still running somewhere. */
static bool
slot_quiet(const struct slot *sl)
{
	for (size_t i = 0; i < sl->nstopping; i++)
		if (still_running(sl->stopping[i]))
			return false;
	return !still_running(sl->cur) && !still_running(sl->next);
}

static void
free_slot_tasks(struct sched_server *srv, struct slot *sl)
{
	drop_task(srv, sl->cur);
	drop_task(srv, sl->next);
	for (size_t i = 0; i < SLOT_HISTORY; i++)
		drop_task(srv, sl->history[i]);
	/* Stopping tasks left on a down node: out of the map, the node's list and the store too,
	 * before slot_clear() frees them. */
	for (size_t i = 0; i < sl->nstopping; i++)
		drop_task(srv, sl->stopping[i]);
	sl->cur = sl->next = NULL;
	memset(sl->history, 0, sizeof(sl->history));
	sl->nstopping = 0;
}

/* An update's task (or a replacement) fails its update and stops: history once ended. */
static void
stop_into_slot(struct sched_server *srv, struct slot *sl, struct task *t, const char *why)
{
	shutdown_task(srv, t, why);
	if (task_terminal(t)) {
		to_history(srv, sl, t);
	} else {
		slot_add_stopping(sl, t);
		reconcile_persist_task(srv, t);
	}
}

static void
monitor_text(const struct service *svc, char *buf, size_t len)
{
	snprintf(buf, len, "not healthy within monitor (%lldms)",
	         (long long)svc->spec.update.monitor_ms);
}

/* Apply a's action about sl->next (reconcile_slot.h). */
static void
apply_next(struct sched_server *srv, struct service *svc, struct slot *sl,
           struct reconcile_slot_action a, int64_t now)
{
	struct task *n = sl->next;
	char why[200];

	switch (a.act) {
	case RS_NEXT_ENDED:
		if (n->from_update) {
			reconcile_slot_failure_text(n, why, sizeof(why));
			update_task_failed(srv, svc, n, why);
		}
		to_history(srv, sl, n);
		sl->next = NULL;
		break;
	case RS_NEXT_LOST:
		shutdown_task(srv, n, NULL);
		slot_add_stopping(sl, n);
		reconcile_persist_task(srv, n);
		sl->next = NULL;
		break;
	case RS_NEXT_TAKEOVER:
		sl->next = NULL;
		if (n->from_update)
			update_task_done(svc, n, now);
		replace_cur(srv, sl, n,
		            sl->cur && sl->cur->node && sl->cur->node->drain ? "node drained"
		                                                             : "replaced");
		break;
	case RS_NEXT_MONITOR:
		monitor_text(svc, why, sizeof(why));
		sl->next = NULL;
		update_task_failed(srv, svc, n, why);
		stop_into_slot(srv, sl, n, why);
		break;
	default:
		break;
	}
}

/* Apply a's action about sl->cur; returns whether the slot waits on time. */
static bool
apply_cur(struct sched_server *srv, struct service *svc, struct slot *sl,
          struct reconcile_slot_action a, int64_t now)
{
	struct task *t = sl->cur, *fresh;
	char why[200];

	switch (a.act) {
	case RS_START:
		sl->cur = new_task(srv, svc, sl->num, 0);
		reconcile_persist_task(srv, sl->cur);
		break;
	case RS_REPLACE_LOST:
	case RS_RESTART:
		replace_cur(srv, sl, new_task(srv, svc, sl->num, a.restarts), NULL);
		break;
	case RS_UNHOLD:
		t->hold = false;
		break;
	case RS_UPDATE_ENDED:
		reconcile_slot_failure_text(t, why, sizeof(why));
		update_task_failed(srv, svc, t, why);
		break;
	case RS_UPDATE_DONE:
		update_task_done(svc, t, now);
		break;
	case RS_UPDATE_MONITOR:
		monitor_text(svc, why, sizeof(why));
		update_task_failed(srv, svc, t, why);
		break;
	case RS_GIVE_UP:
		if (t->message == NULL || strstr(t->message, "restart") == NULL)
			task_set_message(t, "%s; not restarted: max_attempts=%u reached",
			                 t->message ? t->message : "exited",
			                 svc->spec.restart.max_attempts);
		break;
	case RS_UPDATE_START_FIRST:
	case RS_UPDATE_STOP_FIRST:
		update_may_start(svc); /* consumes the budget reconcile_slot_cur saw */
		fresh = new_task(srv, svc, sl->num, 0);
		fresh->from_update = a.from_update;
		if (a.act == RS_UPDATE_START_FIRST) {
			sl->next = fresh;
			reconcile_persist_task(srv, fresh);
		} else {
			fresh->hold = true;
			replace_cur(srv, sl, fresh, "updated");
			if (!reconcile_slot_stopping(sl))
				fresh->hold = false;
		}
		break;
	case RS_DRAIN:
		sl->next = new_task(srv, svc, sl->num, 0);
		task_set_message(sl->next, "moving off drained node %s", t->node->name);
		reconcile_persist_task(srv, sl->next);
		break;
	default:
		break;
	}
	return a.wait;
}

/* One slot's turn in the pass: the rules decide (reconcile_slot.c), this applies. Returns
 * whether the slot waits on time. */
static bool
reconcile_slot(struct sched_server *srv, struct service *svc, struct slot *sl, int64_t now)
{
	int64_t wall = util_wall_ms();
	struct reconcile_slot_action a = reconcile_slot_next(svc, sl, now, wall);

	apply_next(srv, svc, sl, a, now);
	for (;;) {
		a = reconcile_slot_cur(svc, sl, now, wall);
		if (!reconcile_slot_again(a.act))
			return apply_cur(srv, svc, sl, a, now);
		apply_cur(srv, svc, sl, a, now);
	}
}

#define REBALANCE_RETRY_MS     5000
#define REBALANCE_RETRY_MAX_MS 300000

/*
 * Even the spread when it drifted (a node came back after its tasks were replaced elsewhere):
 * one start-first move at a time, as a drain moves a task, only while the service is steady
 * (place_rebalance). A move whose task did not take over (the node could not run it) makes
 * the next wait, 5 s doubling to 5 min, so a node that cannot run the service is not tried
 * in a loop. Returns true when it waits on time.
 */
static bool
rebalance(struct sched_server *srv, struct service *svc, int64_t now)
{
	struct slot *sl;
	struct task *t;

	if (svc->removed || svc->update.state == UPDATE_UPDATING ||
	    svc->update.state == UPDATE_ROLLING_BACK || svc->update.state == UPDATE_PAUSED)
		return false;
	if (svc->rebalance_task[0]) {
		t = task_map_get(&srv->tasks, svc->rebalance_task);
		sl = t ? service_slot_find(svc, t->slot) : NULL;
		if (sl && sl->next == t && !task_terminal(t))
			return false; /* still starting */
		if (sl && sl->cur == t && task_live(t)) {
			svc->rebalance_fails = 0;
		} else {
			int64_t wait = REBALANCE_RETRY_MS;
			for (uint32_t i = 0;
			     i < svc->rebalance_fails && wait < REBALANCE_RETRY_MAX_MS; i++)
				wait *= 2;
			svc->rebalance_fails++;
			svc->rebalance_after =
			    now + (wait < REBALANCE_RETRY_MAX_MS ? wait : REBALANCE_RETRY_MAX_MS);
		}
		svc->rebalance_task[0] = '\0';
	}
	if (now < svc->rebalance_after)
		return true;
	sl = place_rebalance(&srv->nodes, svc);
	if (sl == NULL)
		return false;
	t = sl->next = new_task(srv, svc, sl->num, 0);
	task_set_message(t, "moving off node %s to even the spread", sl->cur->node->name);
	reconcile_persist_task(srv, t);
	snprintf(svc->rebalance_task, sizeof(svc->rebalance_task), "%s", t->id);
	shoal_log(LOG_INFO, "service %s: moving slot %u off node %s to even the spread", svc->name,
	          sl->num, sl->cur->node->name);
	return false;
}

static void
place_pending(struct sched_server *srv, struct service *svc)
{
	struct place_batch *b = NULL;
	const char *reason = NULL;
	size_t pending = 0;

	for (size_t i = 0; i < svc->nslots; i++) {
		struct slot *sl = &svc->slots[i];
		struct task *ts[] = {sl->cur, sl->next};
		if (sl->removed)
			continue;
		for (size_t k = 0; k < ARRAY_SIZE(ts); k++) {
			struct task *t = ts[k];
			struct node *n;
			if (t == NULL || t->node || t->desired != TASK_DESIRED_RUNNING || t->hold ||
			    task_terminal(t))
				continue;
			if (b == NULL)
				b = place_begin(&srv->nodes, svc);
			n = reason ? NULL : place_next(b);
			if (n == NULL) {
				if (reason == NULL)
					reason = place_reason(b);
				task_set_message(t, "%s", reason);
				pending++;
				continue;
			}
			bind_task(srv, t, n);
			place_commit(b, n);
			task_set_state(t, TASK_STATE_ASSIGNED, util_wall_ms());
			if (t->message && k == 0)
				task_set_message(t, NULL);
			reconcile_persist_task(srv, t);
		}
	}
	/* Said once per reason, not once per pass. */
	if (pending && (svc->pending_reason == NULL || strcmp(svc->pending_reason, reason) != 0))
		events_emit(&srv->events, EVENTS_SERVICE, "waiting", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "%zu task%s pending: %s", pending,
		            pending == 1 ? "" : "s", reason);
	free(svc->pending_reason);
	svc->pending_reason = pending ? xstrdup(reason) : NULL;
	if (pending && svc->waiting == false)
		shoal_log(LOG_INFO, "service %s: %zu task%s pending: %s", svc->name, pending,
		          pending == 1 ? "" : "s", reason);
	if (pending)
		svc->waiting = true;
	place_end(b);
}

static bool
update_active(const struct service *svc)
{
	return svc->update.state == UPDATE_UPDATING || svc->update.state == UPDATE_ROLLING_BACK;
}

/* Why the service is not converged, for the timeout's message. */
static void
stuck_reason(const struct service *svc, uint32_t up, char *buf, size_t len)
{
	if (svc->pending_reason) {
		snprintf(buf, len, "waiting: %s", svc->pending_reason);
		return;
	}
	for (size_t i = 0; i < svc->nslots; i++) {
		const struct slot *sl = &svc->slots[i];
		const struct task *t = sl->next ? sl->next : sl->cur;
		const struct task *prev = sl->history[0];
		if (sl->removed || t == NULL || task_healthy(t))
			continue;
		/* A slot that keeps restarting: what its last task died of says more than the
		 * new one's "assigned". */
		if (t->restarts && prev && task_terminal(prev))
			snprintf(buf, len, "task %s %s (restarting)", prev->name,
			         prev->message ? prev->message : "exited");
		else if (t->health && strncmp(t->health, "unhealthy", 9) == 0)
			snprintf(buf, len, "task %s %s", t->name, t->health);
		else if (t->message)
			snprintf(buf, len, "task %s %s: %s", t->name, task_state_name(t->state),
			         t->message);
		else
			snprintf(buf, len, "task %s %s", t->name, task_state_name(t->state));
		return;
	}
	snprintf(buf, len, "%u of %u replicas running", up, svc->spec.replicas);
}

/*
 * Watch the rollout: `converged` once every slot runs healthy at the current version and no
 * update is under way (what `shoal apply` waits for); progress is another slot getting
 * there. No progress for update.timeout ends an update with its failure_action (Kubernetes'
 * progressDeadlineSeconds, with Swarm's failure actions); a deploy or a scale that stalls is
 * reported `stuck`, once.
 */
static void
watch_progress(struct sched_server *srv, struct service *svc, int64_t now)
{
	uint32_t steady = 0, up = 0, want = 0;
	bool quiet = true;
	char why[320], msg[400];
	int64_t timeout = svc->spec.update.timeout_ms;

	if (svc->removed)
		return;
	for (size_t i = 0; i < svc->nslots; i++) {
		const struct slot *sl = &svc->slots[i];
		const struct task *t = sl->cur;
		if (sl->removed) {
			quiet = false; /* a scale-down not done yet */
			continue;
		}
		want++;
		if (t == NULL || sl->next || !task_live(t) || !task_healthy(t) ||
		    t->version != svc->version)
			continue;
		up++;
		/* Without a health check, running is only a start: a task counts once it has run
		 * for update.monitor (Docker's "verify: tasks are stable"); look again then. */
		if (svc->spec.health.kind == MANIFEST_HEALTH_NONE &&
		    now - t->running_since < svc->spec.update.monitor_ms) {
			svc->watch_due = true;
			continue;
		}
		steady++;
	}
	/* Progress: a slot running at the version, or one more of them stable. */
	if (up + steady > svc->steady)
		svc->progress_at = now;
	svc->steady = up + steady;
	if (quiet && steady == want && want == svc->spec.replicas && !update_active(svc) &&
	    svc->update.state != UPDATE_PAUSED) {
		if (!svc->converged)
			events_emit(&srv->events, EVENTS_SERVICE, "converged", svc->name, NULL,
			            NULL, NULL, 0, svc->version, "%u/%u running", steady,
			            svc->spec.replicas);
		svc->converged = true;
		svc->stuck = false;
		return;
	}
	if (svc->converged) {
		/* It was steady and lost a replica: a new window for the timeout. */
		svc->converged = false;
		svc->progress_at = now;
	}
	/* A task proving itself stable is progress too (its window ends by itself). */
	if (timeout == 0 || svc->stuck || svc->update.state == UPDATE_PAUSED || up > steady)
		return;
	if (now - svc->progress_at < timeout)
		return;
	svc->stuck = true;
	stuck_reason(svc, up, why, sizeof(why));
	snprintf(msg, sizeof(msg), "no progress for %llds: %s", (long long)(timeout / 1000), why);
	shoal_log(LOG_WARNING, "service %s: %s", svc->name, msg);
	if (update_active(svc) && svc->update.state == UPDATE_UPDATING) {
		update_fail(srv, svc, msg);
	} else if (update_active(svc)) {
		/* A rollback that stalls has nothing older to go to: it pauses. */
		svc->update.state = UPDATE_PAUSED;
		free(svc->update.message);
		svc->update.message = xasprintf("rollback paused: %s", msg);
		reconcile_persist_service(srv, svc);
		events_emit(&srv->events, EVENTS_UPDATE, "paused", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "%s", svc->update.message);
	} else {
		events_emit(&srv->events, EVENTS_SERVICE, "stuck", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "%s", msg);
	}
}

static void
delete_service(struct sched_server *srv, struct service *svc)
{
	struct shoal_err err;

	for (size_t i = 0; i < svc->nslots; i++)
		free_slot_tasks(srv, &svc->slots[i]);
	reconcile_pass_tx(srv);
	if (store_service_delete(&srv->store, svc->name, &err) == -1)
		store_warn(&err);
	shoal_log(LOG_INFO, "service %s removed", svc->name);
	services_del(&srv->services, svc);
	service_free(svc);
	/* Every node learns the service is gone (Assignments list the services): the ended
	 * containers it kept for their logs go. */
	for (size_t i = 0; i < srv->nodes.n; i++)
		reconcile_mark_node(srv, srv->nodes.v[i]);
}

/* Returns false when the service was deleted. */
static bool
reconcile_service(struct sched_server *srv, struct service *svc, int64_t now)
{
	bool waiting = false;

	svc->dirty = false;
	if (svc->spec.n_ports)
		endpoints_mark(srv);
	scale(srv, svc);
	update_pass_begin(svc, now);
	for (size_t i = 0; i < svc->nslots;) {
		struct slot *sl = &svc->slots[i];
		if (sl->removed) {
			if (slot_quiet(sl)) {
				free_slot_tasks(srv, sl);
				service_slot_remove(svc, sl);
				continue;
			}
			i++;
			continue;
		}
		waiting |= reconcile_slot(srv, svc, sl, now);
		i++;
	}
	if (svc->removed && svc->nslots == 0) {
		delete_service(srv, svc);
		return false;
	}
	waiting |= update_pass_end(srv, svc, now);
	waiting |= rebalance(srv, svc, now);
	svc->waiting = waiting;
	place_pending(srv, svc);
	/* After placing: a pending reason is part of why it is stuck. The timer it may wait on
	 * is reconcile_tick's (it needs no pass per second). */
	watch_progress(srv, svc, now);
	return true;
}

/* ---- dispatch: a node's whole task set (level-triggered, like swarmkit's dispatcher) ---- */

void
reconcile_dispatch(struct sched_server *srv, struct node *n)
{
	cleanup_free char **live = NULL;
	size_t nlive = 0;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Assignments as = SHOAL__ASSIGNMENTS__INIT;
	Shoal__TaskSpec *specs, **sp;
	Shoal__ServiceVersion *vers, **vp;
	size_t nt = 0, nv = 0;
	struct shoal_err err;

	if (n->conn == NULL || n->status != NODE_READY)
		return;
	specs = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*specs));
	sp = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*sp));
	vers = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*vers));
	vp = xcalloc(n->ntasks ? n->ntasks : 1, sizeof(*vp));
	for (struct task *t = n->tasks; t; t = t->node_next) {
		Shoal__TaskSpec *ts;
		size_t k;
		if ((t->desired != TASK_DESIRED_RUNNING && !t->draining) || task_terminal(t))
			continue;
		ts = &specs[nt];
		shoal__task_spec__init(ts);
		ts->task_id = t->id;
		ts->name = t->name;
		ts->service = t->svc->name;
		ts->slot = t->slot;
		ts->version = t->version;
		sp[nt++] = ts;
		/* One spec per (service, version). A service's name string is its own: comparing
		 * the pointers compares the services. */
		for (k = 0; k < nv; k++)
			if (vers[k].version == t->version && vers[k].service == t->svc->name)
				break;
		if (k == nv) {
			shoal__service_version__init(&vers[nv]);
			vers[nv].service = t->svc->name;
			vers[nv].version = t->version;
			/* A task of an older version runs the previous spec. */
			vers[nv].spec_json =
			    t->version == t->svc->version || !t->svc->prev_spec_json
			        ? t->svc->spec_json
			        : t->svc->prev_spec_json;
			/* Pinned: the agent runs name@digest, whatever the tag says now. */
			vers[nv].image_digest = (char *)service_pin_get(t->svc, t->version);
			if (vers[nv].image_digest == NULL)
				vers[nv].image_digest = "";
			vp[nv] = &vers[nv];
			nv++;
		}
	}
	/* The agent keeps ended tasks' containers for their logs, of these services only. */
	live = xcalloc(srv->services.n + 1, sizeof(*live));
	for (size_t i = 0; i < srv->services.n; i++)
		if (!srv->services.v[i]->removed)
			live[nlive++] = srv->services.v[i]->name;
	as.services = live;
	as.n_services = nlive;
	as.generation = ++n->assign_gen;
	as.tasks = sp;
	as.n_tasks = nt;
	as.specs = vp;
	as.n_specs = nv;
	env.body_case = SHOAL__ENVELOPE__BODY_ASSIGNMENTS;
	env.assignments = &as;
	if (rpc_send(n->conn, &env, &err) == -1)
		shoal_log(LOG_WARNING, "assignments to %s: %s", n->name, err.msg);
	else
		shoal_log(LOG_DEBUG, "assignments gen=%llu to %s: %zu tasks",
		          (unsigned long long)as.generation, n->name, nt);
	free(specs);
	free(sp);
	free(vers);
	free(vp);
}

/* Drop the first n entries of a dirty list, keeping the rest in order. */
static size_t
list_consume(void *v, size_t len, size_t n, size_t size)
{
	if (n > 0)
		memmove(v, (char *)v + n * size, (len - n) * size);
	return len - n;
}

void
reconcile_flush(struct sched_server *srv)
{
	int64_t start = util_now_ms(), deadline = start + PASS_BUDGET_MS;
	size_t i = 0, nsvcs = 0, nnodes = 0;
	struct shoal_err err;
	struct timespec t0; /* the pass's duration for /metrics, finer than ms */

	clock_gettime(CLOCK_MONOTONIC, &t0);

	/* Whole services until the budget is spent: a burst (a million new tasks) is spread
	 * over loop iterations, and heartbeats are still read in between. What is left stays
	 * dirty, in order, for the next iteration. */
	while (i < srv->ndirty_svcs) {
		struct service *svc = srv->dirty_svcs[i++];
		if (svc->dirty) {
			reconcile_service(srv, svc, start);
			nsvcs++;
		}
		if (util_now_ms() >= deadline)
			break;
	}
	endpoints_flush(srv);
	endpoints_check_drains(srv);
	srv->ndirty_svcs =
	    list_consume(srv->dirty_svcs, srv->ndirty_svcs, i, sizeof(struct service *));
	/* Assignments carry a node's whole set: send them once the services are reconciled
	 * (or a node has waited long enough), not after every slice of a burst. */
	if (srv->ndirty_svcs == 0 || start - srv->dirty_nodes_since >= DISPATCH_WAIT_MS) {
		while (nnodes < srv->ndirty_nodes) {
			struct node *n = srv->dirty_nodes[nnodes++];
			n->dirty = false;
			reconcile_dispatch(srv, n);
			if (util_now_ms() >= deadline)
				break;
		}
		srv->ndirty_nodes = list_consume(srv->dirty_nodes, srv->ndirty_nodes, nnodes,
		                                 sizeof(struct node *));
		srv->dirty_nodes_since = start;
	}
	reconcile_pass_write_tasks(srv);
	/* A burst's slices share one transaction (a commit rewrites every index page the slice
	 * touched: committing 1,000,000 rows 10,000 at a time costs 3 times as much as 100,000
	 * at a time). Commit when the burst is done, before any Assignments leave, and at
	 * least every second. */
	if (srv->ndirty_svcs == 0 || nnodes > 0 || start - srv->tx_since >= TX_MAX_MS) {
		if (store_tx_commit(&srv->store, &err) == -1)
			store_warn(&err);
	}
	if (srv->ndirty_svcs || srv->ndirty_nodes) {
		/* More to do: after the I/O that waits (a timer, where event_active would run the
		 * pass again before polling). */
		struct timeval now = {0, 0};
		evtimer_add(srv->pass, &now);
	}
	{
		struct timespec t1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		prom_hist_observe(&srv->pass_seconds, (double)(t1.tv_sec - t0.tv_sec) +
		                                          (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	/* The loop waits while a pass runs: say when one took long enough to notice. */
	if (util_now_ms() - start >= 500)
		shoal_log(LOG_INFO, "slow reconcile pass: %lld ms, %zu services, %zu nodes",
		          (long long)(util_now_ms() - start), nsvcs, nnodes);
}

void
reconcile_tick(struct sched_server *srv)
{
	int64_t now = util_now_ms();

	for (size_t i = 0; i < srv->services.n; i++) {
		struct service *svc = srv->services.v[i];
		/* A rollout's update.timeout runs out. */
		bool due = !svc->converged && !svc->stuck && svc->spec.update.timeout_ms &&
		           svc->update.state != UPDATE_PAUSED &&
		           now - svc->progress_at >= svc->spec.update.timeout_ms;
		bool watch = svc->watch_due;
		svc->watch_due = false;
		if (svc->waiting || svc->removed || due)
			reconcile_mark(srv, svc);
		else if (watch)
			watch_progress(srv, svc, now);
	}
}

/* Services up to this many slots are checked for convergence on each report of one of their
 * tasks (O(slots)); bigger ones at the next second's tick, so a million acknowledgements do
 * not cost a million scans. */
#define WATCH_INLINE_SLOTS 1024

static void
watch_soon(struct sched_server *srv, struct service *svc)
{
	if (svc->converged || svc->removed)
		return;
	if (svc->nslots <= WATCH_INLINE_SLOTS)
		watch_progress(srv, svc, util_now_ms());
	else
		svc->watch_due = true;
}

/* ---- reports from agents ---- */

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
	unbind_task(srv, t);
	if (sl) {
		for (size_t i = 0; i < sl->nstopping; i++) {
			if (sl->stopping[i] == t) {
				slot_del_stopping(sl, t);
				to_history(srv, sl, t);
				reconcile_mark(srv, t->svc);
				return;
			}
		}
	}
	if (t->persisted)
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
		store_warn(&err);
}

void
reconcile_task_status(struct sched_server *srv, struct node *n, const Shoal__TaskStatus *ts)
{
	struct task *t = task_map_get(&srv->tasks, ts->task_id);
	enum task_state st = (enum task_state)ts->state, old;
	const char *ip = ts->container_ip;
	struct shoal_err err;
	struct slot *sl;

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
	else if (st == TASK_STATE_RUNNING && t->desired == TASK_DESIRED_RUNNING)
		task_set_message(t, NULL);
	if (st != old) {
		if (task_terminal(t)) {
			t->exit_code = ts->exit_code;
			t->oom_killed = ts->oom_killed;
		}
		emit_task_state(srv, t, st);
	}
	if (ts->health && (t->health == NULL || strcmp(ts->health, t->health) != 0)) {
		free(t->health);
		t->health = xstrdup(ts->health);
		if (strncmp(t->health, "healthy", 7) == 0)
			emit_task(srv, t, "healthy", NULL);
		else if (strncmp(t->health, "unhealthy", 9) == 0)
			emit_task(srv, t, "unhealthy", "%s", t->health);
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
	if (t->svc->spec.n_ports)
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
		watch_soon(srv, t->svc);
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
		if (t->desired != TASK_DESIRED_RUNNING || task_terminal(t) || t->lost)
			continue;
		t->lost = true;
		task_set_message(t, "node %s down", n->name);
		emit_task(srv, t, "lost", "node %s down", n->name);
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
		if (!t->lost && t->desired == TASK_DESIRED_RUNNING)
			adopted++;
		reconcile_task_status(srv, n, running[i]);
	}
	/* Tasks it ran before but no longer has died while nobody watched. */
	for (struct task *t = n->tasks, *next; t; t = next) {
		bool reported = false;
		next = t->node_next;
		/* Not yet started there: its Assignments will start it. Wanted stopped: it is. */
		if (task_terminal(t) ||
		    (t->state < TASK_STATE_STARTING && t->desired == TASK_DESIRED_RUNNING))
			continue;
		for (size_t i = 0; i < nrunning && !reported; i++)
			reported = strcmp(running[i]->task_id, t->id) == 0;
		if (reported)
			continue;
		if (t->desired == TASK_DESIRED_SHUTDOWN) {
			task_set_state(t, TASK_STATE_STOPPED, util_wall_ms());
		} else {
			task_set_state(t, TASK_STATE_FAILED, util_wall_ms());
			task_set_message(t, "container gone from %s while it was away", n->name);
		}
		emit_task_state(srv, t, t->state);
		finished(srv, t);
	}
	if (adopted)
		shoal_log(LOG_INFO, "node %s: adopted %zu running task%s", n->name, adopted,
		          adopted == 1 ? "" : "s");
	reconcile_mark_node(srv, n);
	endpoints_mark(srv);
}

/* ---- load after a restart ---- */

static void
load_service(const struct store_service *sv, void *arg)
{
	struct sched_server *srv = arg;
	struct service_spec spec;
	struct service *svc;
	struct shoal_err err;

	if (manifest_spec_from_json(sv->spec_json, &spec, &err) == -1) {
		shoal_log(LOG_ERR, "store: service %s: %s (skipped)", sv->name, err.msg);
		return;
	}
	svc = service_new(sv->name, sv->created_ms);
	service_set_spec(svc, &spec);
	svc->prev_spec_json = sv->prev_spec_json ? xstrdup(sv->prev_spec_json) : NULL;
	svc->version = sv->version;
	svc->prev_version = sv->prev_version;
	svc->updated_ms = sv->updated_ms;
	update_restore(svc, sv->update_state);
	svc->removed = sv->removed != 0;
	services_add(&srv->services, svc);
}

static void
load_pin(const char *service, uint64_t version, const char *digest, void *arg)
{
	struct sched_server *srv = arg;
	struct service *svc = services_find(&srv->services, service);

	if (svc)
		service_pin_set(svc, version, digest);
}

static void
load_task(const struct store_task *st, void *arg)
{
	struct sched_server *srv = arg;
	struct service *svc = services_find(&srv->services, st->service);
	struct node *n = st->node_id[0] ? nodes_find_id(&srv->nodes, st->node_id) : NULL;
	struct slot *sl;
	struct task *t;

	if (svc == NULL)
		return;
	sl = service_slot(svc, st->slot);
	t = xcalloc(1, sizeof(*t));
	snprintf(t->id, sizeof(t->id), "%s", st->id);
	t->name = xstrdup(st->name);
	t->svc = svc;
	t->slot = st->slot;
	t->version = st->version;
	t->desired = (enum task_desired)st->desired;
	t->restarts = st->restarts;
	t->created_ms = st->created_ms;
	t->state_since = util_wall_ms();
	t->exit_code = -1;
	t->persisted = t->stored = true;
	/* Observed state comes back with the agents' registrations: until then a placed task is
	 * "assigned" (its agent will start it if it is not running). */
	t->state = n ? TASK_STATE_ASSIGNED : TASK_STATE_PENDING;
	task_map_put(&srv->tasks, t);
	if (n)
		bind_task(srv, t, n);
	switch (st->role) {
	case ROLE_CUR:
	case ROLE_FINISHED:
		if (sl->cur)
			to_history(srv, sl, sl->cur);
		sl->cur = t;
		if (st->role == ROLE_FINISHED) {
			unbind_task(srv, t);
			task_set_state(t, TASK_STATE_STOPPED, t->state_since);
			task_set_message(t, "finished before the scheduler restarted");
		}
		break;
	case ROLE_NEXT:
		sl->next = t;
		break;
	default:
		slot_add_stopping(sl, t);
		break;
	}
	if (t->desired == TASK_DESIRED_SHUTDOWN && sl->cur == t && svc->removed)
		sl->removed = true;
}

int
reconcile_load(struct sched_server *srv, struct shoal_err *err)
{
	size_t ntasks;

	if (store_service_each(&srv->store, load_service, srv, err) == -1)
		return -1;
	if (store_pin_each(&srv->store, load_pin, srv, err) == -1)
		return -1;
	if (store_task_each(&srv->store, load_task, srv, err) == -1)
		return -1;
	ntasks = srv->tasks.n;
	for (size_t i = 0; i < srv->services.n; i++)
		reconcile_mark(srv, srv->services.v[i]);
	if (srv->services.n)
		shoal_log(LOG_INFO, "loaded %zu service%s and %zu task%s", srv->services.n,
		          srv->services.n == 1 ? "" : "s", ntasks, ntasks == 1 ? "" : "s");
	return 0;
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
			               t->desired == TASK_DESIRED_SHUTDOWN ? TASK_STATE_STOPPED
			                                                   : TASK_STATE_FAILED,
			               util_wall_ms());
			task_set_message(t, "node %s removed", n->name);
			emit_task_state(srv, t, t->state);
		}
		finished(srv, t);
		if (n->tasks == t) /* finished() did not unbind it: never loop forever */
			unbind_task(srv, t);
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
	endpoints_mark(srv);
}
