#include "reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "endpoints.h"
#include "err.h"
#include "events.h"
#include "reconcile_pass.h"
#include "reconcile_dispatch.h"
#include "reconcile_slot.h"
#include "reconcile_task.h"
#include "update.h"
#include "log.h"
#include "place.h"
#include "server-t.h"
#include "service.h"
#include "store.h"
#include "task.h"
#include "util.h"

#define PASS_BUDGET_MS   50   /* a reconcile pass yields to the loop after this much work */
#define DISPATCH_WAIT_MS 1000 /* longest a node's Assignments wait for a burst to settle */
#define TX_MAX_MS        1000 /* longest a burst keeps its store transaction open */

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
				reconcile_task_to_history(srv, sl, old[k]);
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

/*
 * Bring the service to its replica count. A scale-up creates at most RECONCILE_SCALE_SLICE
 * new slots per pass and returns true when more are to come: the service is then marked
 * again, so a 10,000-replica service is reconciled, placed and written in slices and the
 * loop reads heartbeats in between (the pass budget is checked between services; a whole
 * 10,000 took 0.5-1 s on a loaded 2-core machine, long enough for nodes to be declared down).
 */
static bool
scale(struct sched_server *srv, struct service *svc)
{
	uint32_t want = svc->removed ? 0 : svc->spec.replicas, have = 0, from = 1, made = 0;
	struct victim *v;
	size_t nv = 0;

	for (size_t i = 0; i < svc->nslots; i++)
		have += !svc->slots[i].removed;
	if (have < want)
		service_slots_reserve(svc, svc->nslots + (want - have));
	while (have < want && made < RECONCILE_SCALE_SLICE) {
		struct slot *sl = service_slot(svc, service_free_slot_from(svc, from));
		from = sl->num + 1;
		sl->cur = reconcile_task_new(srv, svc, sl->num, 0);
		reconcile_persist_task(srv, sl->cur);
		have++;
		made++;
	}
	if (have <= want)
		return have < want;
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
			reconcile_task_shutdown(srv, sl->cur, why);
			reconcile_persist_task(srv, sl->cur);
		}
		if (sl->next) {
			reconcile_task_shutdown(srv, sl->next, why);
			reconcile_persist_task(srv, sl->next);
		}
		/* Recount loads as victims go, so one node is not emptied while others keep two. */
		if (sl->cur && sl->cur->node && sl->cur->node->scratch)
			sl->cur->node->scratch--;
	}
	free(v);
	return false;
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
	reconcile_task_drop(srv, sl->cur);
	reconcile_task_drop(srv, sl->next);
	for (size_t i = 0; i < SLOT_HISTORY; i++)
		reconcile_task_drop(srv, sl->history[i]);
	/* Stopping tasks left on a down node: out of the map, the node's list and the store too,
	 * before slot_clear() frees them. */
	for (size_t i = 0; i < sl->nstopping; i++)
		reconcile_task_drop(srv, sl->stopping[i]);
	sl->cur = sl->next = NULL;
	memset(sl->history, 0, sizeof(sl->history));
	sl->nstopping = 0;
}

/* An update's task (or a replacement) fails its update and stops: history once ended. */
static void
stop_into_slot(struct sched_server *srv, struct slot *sl, struct task *t, const char *why)
{
	reconcile_task_shutdown(srv, t, why);
	if (task_terminal(t)) {
		reconcile_task_to_history(srv, sl, t);
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
		reconcile_task_to_history(srv, sl, n);
		sl->next = NULL;
		break;
	case RS_NEXT_LOST:
		reconcile_task_shutdown(srv, n, NULL);
		slot_add_stopping(sl, n);
		reconcile_persist_task(srv, n);
		sl->next = NULL;
		break;
	case RS_NEXT_TAKEOVER:
		sl->next = NULL;
		if (n->from_update)
			update_task_done(svc, n, now);
		reconcile_task_replace_cur(
		    srv, sl, n,
		    sl->cur && sl->cur->node && sl->cur->node->drain ? "node drained" : "replaced");
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
		sl->cur = reconcile_task_new(srv, svc, sl->num, 0);
		reconcile_persist_task(srv, sl->cur);
		break;
	case RS_REPLACE_LOST:
	case RS_RESTART:
		reconcile_task_replace_cur(srv, sl,
		                           reconcile_task_new(srv, svc, sl->num, a.restarts), NULL);
		break;
	case RS_UNHOLD:
		task_phase_set(t, TASK_PHASE_RUN);
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
		fresh = reconcile_task_new(srv, svc, sl->num, 0);
		fresh->from_update = a.from_update;
		if (a.act == RS_UPDATE_START_FIRST) {
			sl->next = fresh;
			reconcile_persist_task(srv, fresh);
		} else {
			/* Held (unplaced) while the old task stops somewhere we hear from. */
			reconcile_task_replace_cur(srv, sl, fresh, "updated");
			if (reconcile_slot_stopping(sl))
				task_phase_set(fresh, TASK_PHASE_HELD);
		}
		break;
	case RS_DRAIN:
		sl->next = reconcile_task_new(srv, svc, sl->num, 0);
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
	t = sl->next = reconcile_task_new(srv, svc, sl->num, 0);
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
			if (t == NULL || t->node || t->phase != TASK_PHASE_RUN || task_terminal(t))
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
			reconcile_task_bind(srv, t, n);
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
		else if (t->health_state == TASK_HEALTH_UNHEALTHY)
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
		reconcile_pass_warn(&err);
	shoal_log(LOG_INFO, "service %s removed", svc->name);
	services_del(&srv->services, svc);
	service_free(svc);
	/* Every node learns the service is gone (Assignments list the services): the ended
	 * containers it kept for their logs go. */
	for (size_t i = 0; i < srv->nodes.n; i++)
		reconcile_mark_node(srv, srv->nodes.v[i]);
}

bool
reconcile_service(struct sched_server *srv, struct service *svc, int64_t now)
{
	bool waiting = false, more;

	svc->dirty = false;
	/* Its name and VIP are in every node's Endpoints (its tasks only where viewed): a
	 * rebuild without a million unpublished tasks is cheap, and compared before it goes. */
	endpoints_mark(srv);
	more = scale(srv, svc);
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
	if (more)
		reconcile_mark(srv, svc); /* the next slice: after the services already waiting */
	return true;
}

/* Drop the first n entries of a dirty list, keeping the rest in order. */
static size_t
list_consume(void *v, size_t len, size_t n, size_t size)
{
	if (n > 0)
		memmove(v, (char *)v + n * size, (len - n) * size);
	return len - n;
}

/* The nodes a pass sends Assignments to, once its store commit is durable. */
struct pass_commit {
	struct sched_server *srv;
	struct pass_commit *next; /* srv->commits, in the order made */
	uint64_t seq;
	int64_t deadline; /* the pass's budget, for a commit that completes within it */
	size_t n;
	struct node *nodes[]; /* NULL where a node was removed meanwhile */
};

void
reconcile_commits_forget(struct sched_server *srv, const struct node *n)
{
	/* Every one: an older commit still holds n too, and reads its commit_seq when done (a
	 * removal is an admin's act, and few commits are in flight: the walk is fine). */
	for (struct pass_commit *c = srv->commits; c != NULL; c = c->next) {
		for (size_t i = 0; i < c->n; i++)
			if (c->nodes[i] == n)
				c->nodes[i] = NULL;
	}
}

/* Whether c may act for n: n is still there, no later pass took it (commit_seq) and none
 * marked it again (dirty); those changes are in a commit not yet done (or not yet made),
 * and that one acts. */
static bool
commit_holds(const struct pass_commit *c, const struct node *n)
{
	return n != NULL && n->commit_seq == c->seq && !n->dirty;
}

static void
commit_unlink(struct pass_commit *c)
{
	struct pass_commit **p = &c->srv->commits;

	while (*p != NULL && *p != c)
		p = &(*p)->next;
	if (*p == c)
		*p = c->next;
}

/*
 * A pass's commit completed: send its nodes their Assignments, but only what is durable
 * (commit_holds). Lost (err): nothing goes out; the store has made the scheduler step down.
 */
static void
pass_committed(const struct shoal_err *err, void *arg)
{
	struct pass_commit *c = arg;
	struct sched_server *srv = c->srv;
	size_t i = 0;

	commit_unlink(c);
	if (err == NULL && c->n > 0 && !srv->committing) /* from the loop, later: own budget */
		c->deadline = util_now_ms() + PASS_BUDGET_MS;
	/* As many as the budget allows, one at least. */
	while (err == NULL && i < c->n && (i == 0 || util_now_ms() < c->deadline)) {
		struct node *n = c->nodes[i++];

		if (commit_holds(c, n))
			reconcile_dispatch(srv, n);
	}
	/* Out of budget: the rest waits for the next pass, as dirty nodes, after the I/O that
	 * waits (the timer first: marking then does not make the pass active at once). */
	if (err == NULL && i < c->n && srv->pass) {
		struct timeval now = {0, 0};
		evtimer_add(srv->pass, &now);
	}
	for (; err == NULL && i < c->n; i++) {
		struct node *n = c->nodes[i];

		if (commit_holds(c, n))
			reconcile_mark_node(srv, n);
	}
	free(c);
}

/* c joins the commits not completed yet, at the end: they complete in order. */
static void
commit_enqueue(struct sched_server *srv, struct pass_commit *c)
{
	struct pass_commit **p = &srv->commits;

	while (*p != NULL)
		p = &(*p)->next;
	*p = c;
}

void
reconcile_flush(struct sched_server *srv)
{
	int64_t start = util_now_ms(), deadline = start + PASS_BUDGET_MS;
	size_t i = 0, nsvcs = 0, nnodes = 0;
	struct pass_commit *c = NULL;
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
	 * (or a node has waited long enough), not after every slice of a burst, and only once
	 * the store holds what they say (pass_committed): an agent never runs a task whose
	 * record a successor would not find. */
	if (srv->ndirty_svcs == 0 || start - srv->dirty_nodes_since >= DISPATCH_WAIT_MS) {
		nnodes = srv->ndirty_nodes;
		c = xmalloc(sizeof(*c) + nnodes * sizeof(c->nodes[0]));
		*c = (struct pass_commit){
		    .srv = srv, .seq = ++srv->commits_made, .deadline = deadline, .n = nnodes};
		for (size_t k = 0; k < nnodes; k++) {
			struct node *n = srv->dirty_nodes[k];
			n->dirty = false;
			n->commit_seq = c->seq;
			c->nodes[k] = n;
		}
		srv->ndirty_nodes = 0;
		srv->dirty_nodes_since = start;
	}
	reconcile_pass_write_tasks(srv);
	/* A burst's slices share one transaction (a commit rewrites every index page the slice
	 * touched: committing 1,000,000 rows 10,000 at a time costs 3 times as much as 100,000
	 * at a time). Commit when the burst is done, before any Assignments leave, and at
	 * least every second. SQLite commits here and now; etcd sends the commit and the loop
	 * goes on (a next pass's commit queues behind it). */
	if (srv->ndirty_svcs == 0 || nnodes > 0 || start - srv->tx_since >= TX_MAX_MS) {
		if (c == NULL) {
			c = xmalloc(sizeof(*c));
			*c = (struct pass_commit){
			    .srv = srv, .seq = ++srv->commits_made, .deadline = deadline};
		}
		commit_enqueue(srv, c);
		srv->committing = true;
		if (store_tx_commit_then(&srv->store, pass_committed, c, &err) == -1)
			reconcile_pass_warn(&err);
		srv->committing = false;
	} else {
		free(c); /* no nodes taken (nnodes 0) */
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

void
reconcile_watch_soon(struct sched_server *srv, struct service *svc)
{
	if (svc->converged || svc->removed)
		return;
	if (svc->nslots <= WATCH_INLINE_SLOTS)
		watch_progress(srv, svc, util_now_ms());
	else
		svc->watch_due = true;
}
