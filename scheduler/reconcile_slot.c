#include "reconcile_slot.h"

#include <stdio.h>
#include <string.h>

#include "manifest_json.h"
#include "manifest_spec.h"
#include "nodes.h"
#include "service-t.h"
#include "task.h"
#include "update.h"

static const struct reconcile_slot_action none = {.act = RS_NONE};

static struct reconcile_slot_action
act(enum reconcile_slot_act a, bool wait)
{
	return (struct reconcile_slot_action){.act = a, .wait = wait};
}

static bool
update_active(const struct service *svc)
{
	return svc->update.state == UPDATE_UPDATING || svc->update.state == UPDATE_ROLLING_BACK;
}

int64_t
reconcile_slot_backoff_ms(const struct service *svc, uint32_t restarts)
{
	int64_t d = svc->spec.restart.delay_ms;

	for (uint32_t i = 1; i < restarts && d < RECONCILE_BACKOFF_MAX_MS; i++)
		d *= 2;
	return d > RECONCILE_BACKOFF_MAX_MS ? RECONCILE_BACKOFF_MAX_MS : d;
}

/* monitor counts from when the task ran; one that never got to run gets a further 30 s
 * (placement, image import). */
bool
reconcile_slot_monitor_expired(const struct service *svc, const struct task *t, int64_t now,
                               int64_t now_wall)
{
	int64_t monitor = svc->spec.update.monitor_ms;

	if (t->running_since)
		return now - t->running_since > monitor;
	return now_wall - t->created_ms > monitor + 30000;
}

void
reconcile_slot_failure_text(const struct task *t, char *buf, size_t len)
{
	if (t->health_state == TASK_HEALTH_UNHEALTHY)
		snprintf(buf, len, "%s", t->health);
	else if (t->message)
		snprintf(buf, len, "failed: %s", t->message);
	else
		snprintf(buf, len, "exited with code %d", t->exit_code);
}

bool
reconcile_slot_stopping(const struct slot *sl)
{
	for (size_t i = 0; i < sl->nstopping; i++)
		if (!task_terminal(sl->stopping[i]) && sl->stopping[i]->bound &&
		    sl->stopping[i]->node->status != NODE_DOWN)
			return true;
	return false;
}

struct reconcile_slot_action
reconcile_slot_next(const struct service *svc, const struct slot *sl, int64_t now, int64_t now_wall)
{
	const struct task *n = sl->next;

	if (n == NULL)
		return none;
	if (task_terminal(n))
		return act(RS_NEXT_ENDED, false);
	if (n->phase == TASK_PHASE_LOST)
		return act(RS_NEXT_LOST, false);
	if (task_healthy(n))
		return act(RS_NEXT_TAKEOVER, false);
	if (n->from_update && reconcile_slot_monitor_expired(svc, n, now, now_wall))
		return act(RS_NEXT_MONITOR, false);
	return none;
}

/* The current task ended: restart it (after its back-off), or not (policy, max_attempts). */
static struct reconcile_slot_action
ended(const struct service *svc, const struct task *t, int64_t now)
{
	const struct service_spec *sp = &svc->spec;
	bool failed = t->state == TASK_STATE_FAILED || t->exit_code != 0 || t->oom_killed;
	bool ran_long;
	struct reconcile_slot_action a;

	if (sp->restart.policy == MANIFEST_RESTART_NEVER)
		return none;
	if (sp->restart.policy == MANIFEST_RESTART_ON_FAILURE && !failed)
		return none;
	ran_long =
	    t->running_since && t->finished_mono - t->running_since >= RECONCILE_BACKOFF_RESET_MS;
	a = act(RS_RESTART, false);
	a.restarts = ran_long ? 1 : t->restarts + 1;
	if (sp->restart.max_attempts && a.restarts > sp->restart.max_attempts)
		return act(RS_GIVE_UP, false);
	if (now < t->finished_mono + reconcile_slot_backoff_ms(svc, a.restarts))
		return act(RS_WAIT, true);
	return a;
}

struct reconcile_slot_action
reconcile_slot_cur(const struct service *svc, const struct slot *sl, int64_t now, int64_t now_wall)
{
	const struct task *t = sl->cur;
	struct reconcile_slot_action a;

	if (t == NULL)
		return act(RS_START, false);
	if (t->phase == TASK_PHASE_LOST) {
		a = act(RS_REPLACE_LOST, false);
		a.restarts = t->restarts;
		return a;
	}
	/* Stop-first: the new task waits, unplaced, until the old one has stopped. */
	if (t->phase == TASK_PHASE_HELD && !reconcile_slot_stopping(sl))
		return act(RS_UNHOLD, false);
	if (t->from_update) {
		if (task_terminal(t))
			return act(RS_UPDATE_ENDED, false);
		if (task_healthy(t))
			return act(RS_UPDATE_DONE, false);
		if (reconcile_slot_monitor_expired(svc, t, now, now_wall))
			return act(RS_UPDATE_MONITOR, false);
		return act(RS_WAIT, true); /* look again when the monitor runs out */
	}
	if (task_terminal(t))
		return ended(svc, t, now);
	if (sl->next)
		return act(RS_NONE, sl->next->from_update); /* its monitor needs the tick */
	if (t->version != svc->version) {
		if (!update_can_start(svc))
			return act(RS_NONE, update_active(svc));
		a = act(svc->spec.update.order == MANIFEST_ORDER_START_FIRST ? RS_UPDATE_START_FIRST
		                                                             : RS_UPDATE_STOP_FIRST,
		        update_active(svc));
		a.from_update = update_active(svc);
		return a;
	}
	if (t->node && t->node->drain)
		return act(RS_DRAIN, false);
	return none;
}

bool
reconcile_slot_again(enum reconcile_slot_act a)
{
	return a == RS_UNHOLD || a == RS_UPDATE_ENDED || a == RS_UPDATE_DONE ||
	       a == RS_UPDATE_MONITOR;
}

const char *
reconcile_slot_act_name(enum reconcile_slot_act a)
{
	static const char *const names[] = {
	    [RS_NONE] = "none",
	    [RS_NEXT_ENDED] = "next-ended",
	    [RS_NEXT_LOST] = "next-lost",
	    [RS_NEXT_TAKEOVER] = "next-takeover",
	    [RS_NEXT_MONITOR] = "next-monitor",
	    [RS_START] = "start",
	    [RS_REPLACE_LOST] = "replace-lost",
	    [RS_UNHOLD] = "unhold",
	    [RS_UPDATE_ENDED] = "update-ended",
	    [RS_UPDATE_DONE] = "update-done",
	    [RS_UPDATE_MONITOR] = "update-monitor",
	    [RS_WAIT] = "wait",
	    [RS_GIVE_UP] = "give-up",
	    [RS_RESTART] = "restart",
	    [RS_UPDATE_START_FIRST] = "update-start-first",
	    [RS_UPDATE_STOP_FIRST] = "update-stop-first",
	    [RS_DRAIN] = "drain",
	};

	return (unsigned)a < sizeof(names) / sizeof(names[0]) && names[a] ? names[a] : "?";
}
