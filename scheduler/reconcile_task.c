#include "reconcile_task.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoints.h"
#include "reconcile_pass.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
#include "util.h"

/* One task event (scheduler/events.h): fmt, when not NULL, says why. */
void
reconcile_task_emit(struct sched_server *srv, const struct task *t, const char *action,
                    const char *fmt, ...)
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
void
reconcile_task_emit_state(struct sched_server *srv, const struct task *t, enum task_state st)
{
	switch (st) {
	case TASK_STATE_PREPARING:
		reconcile_task_emit(srv, t, "preparing", NULL);
		break;
	case TASK_STATE_STARTING:
		reconcile_task_emit(srv, t, "starting", NULL);
		break;
	case TASK_STATE_RUNNING:
		reconcile_task_emit(srv, t, "running", NULL);
		break;
	case TASK_STATE_STOPPING:
		reconcile_task_emit(srv, t, "stopping", "%s", t->message ? t->message : "");
		break;
	case TASK_STATE_STOPPED:
		if (task_desired(t) == TASK_DESIRED_SHUTDOWN)
			reconcile_task_emit(srv, t, "stopped", "%s", t->message ? t->message : "");
		else
			reconcile_task_emit(srv, t, "exited", "exited with code %d%s", t->exit_code,
			                    t->oom_killed ? " (OOM killed)" : "");
		break;
	case TASK_STATE_FAILED:
		reconcile_task_emit(srv, t, "failed", "%s", t->message ? t->message : "failed");
		break;
	default:
		break;
	}
}

void
reconcile_task_bind(struct sched_server *srv, struct task *t, struct node *n)
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

void
reconcile_task_unbind(struct sched_server *srv, struct task *t)
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
void
reconcile_task_drop(struct sched_server *srv, struct task *t)
{
	if (t == NULL)
		return;
	endpoints_forget(srv, t);
	reconcile_task_unbind(srv, t);
	reconcile_pass_forget_task(srv, t);
	task_map_del(&srv->tasks, t);
	task_free(t);
}

void
reconcile_task_to_history(struct sched_server *srv, struct slot *sl, struct task *t)
{
	/* History is memory only: after a restart a slot starts from its live tasks. */
	reconcile_pass_forget_task(srv, t);
	reconcile_task_drop(srv, slot_push_history(sl, t));
}

struct task *
reconcile_task_new(struct sched_server *srv, struct service *svc, uint32_t slot, uint32_t restarts)
{
	struct task *t = task_new(svc, slot, svc->version, util_wall_ms());

	t->restarts = restarts;
	task_map_put(&srv->tasks, t);
	return t;
}

/* Ask for t to stop. A task never placed stops at once. */
void
reconcile_task_shutdown(struct sched_server *srv, struct task *t, const char *why)
{
	if (task_desired(t) == TASK_DESIRED_SHUTDOWN)
		return;
	/* Out of every proxy's rotation first (draining); the node stops it once they all
	 * confirmed. A task no proxy sends to stops now. */
	if (!endpoints_drain(srv, t))
		task_phase_set(t, TASK_PHASE_SHUTDOWN);
	if (why)
		task_set_message(t, "%s", why);
	/* Scaled away or the service removed: the slot goes; anything else replaces the task.
	 * A task that ended already said so. */
	if (task_terminal(t))
		;
	else if (why && (strcmp(why, "scaled down") == 0 || strcmp(why, "service removed") == 0))
		reconcile_task_emit(srv, t, "removed", "%s", why);
	else
		reconcile_task_emit(srv, t, why ? "replaced" : "shutdown", "%s", why ? why : "");
	if (!t->bound && !task_terminal(t)) {
		task_set_state(t, TASK_STATE_STOPPED, util_wall_ms());
		t->finished_mono = util_now_ms();
	}
	if (t->bound)
		reconcile_mark_node(srv, t->node);
}

/* Replace slot's current task by a new one; the old one stops (or is history already). */
struct task *
reconcile_task_replace_cur(struct sched_server *srv, struct slot *sl, struct task *fresh,
                           const char *why)
{
	struct task *old = sl->cur;

	sl->cur = fresh;
	if (old) {
		reconcile_task_shutdown(srv, old, why);
		if (task_terminal(old)) {
			reconcile_task_to_history(srv, sl, old);
		} else {
			slot_add_stopping(sl, old);
			reconcile_persist_task(srv, old);
		}
	}
	reconcile_persist_task(srv, fresh);
	return fresh;
}
