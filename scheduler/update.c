#include "update.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "reconcile_pass.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
#include "update_text.h"
#include "util.h"

static void
set_message(struct update *u, const char *msg)
{
	free(u->message);
	u->message = msg ? xstrdup(msg) : NULL;
}

/* One update event: action, and the update's message as its reason. */
static void
emit(struct sched_server *srv, const struct service *svc, const char *action)
{
	const struct update *u = &svc->update;

	events_emit(&srv->events, EVENTS_UPDATE, action, svc->name, NULL, NULL, NULL, 0,
	            svc->version, "%s", u->message ? u->message : "");
}

void
update_begin(struct sched_server *srv, struct service *svc)
{
	svc->update.state = UPDATE_UPDATING;
	set_message(&svc->update, NULL);
	svc->update.next_start = 0;
	svc->update.reported = 0;
	emit(srv, svc, "started");
}

int
update_rollback(struct sched_server *srv, struct service *svc, const char *why)
{
	struct service_spec prev;
	struct shoal_err err;
	char *cur_json;

	if (svc->prev_spec_json == NULL)
		return -1;
	if (manifest_spec_from_json(svc->prev_spec_json, &prev, &err) == -1) {
		shoal_log(LOG_ERR, "service %s: previous spec unreadable: %s", svc->name, err.msg);
		return -1;
	}
	/* Rolling back keeps the replica count: scaling is not part of what failed. */
	prev.replicas = svc->spec.replicas;
	cur_json = xstrdup(svc->spec_json);
	service_set_spec(svc, &prev);
	free(svc->prev_spec_json);
	svc->prev_spec_json = cur_json;
	/* Back to the previous version number too: tasks that never left it stay untouched. */
	{
		uint64_t v = svc->version;
		svc->version = svc->prev_version ? svc->prev_version : v + 1;
		svc->prev_version = v;
	}
	svc->updated_ms = util_wall_ms();
	svc->update.state = UPDATE_ROLLING_BACK;
	set_message(&svc->update, why);
	svc->update.next_start = 0;
	svc->update.reported = 0;
	service_rollout_begin(svc);
	emit(srv, svc, "rollback");
	shoal_log(LOG_WARNING, "service %s: rolling back to the previous spec%s%s", svc->name,
	          why ? ": " : "", why ? why : "");
	reconcile_persist_service(srv, svc);
	reconcile_mark(srv, svc);
	return 0;
}

static bool
active(const struct update *u)
{
	return u->state == UPDATE_UPDATING || u->state == UPDATE_ROLLING_BACK;
}

void
update_pass_begin(struct service *svc, int64_t now)
{
	struct update *u = &svc->update;
	uint32_t inflight = 0, par = svc->spec.update.parallelism;

	u->done = u->total = 0;
	for (size_t i = 0; i < svc->nslots; i++) {
		const struct slot *sl = &svc->slots[i];
		if (sl->removed)
			continue;
		u->total++;
		if ((sl->next && sl->next->from_update) || (sl->cur && sl->cur->from_update))
			inflight++;
		else if (sl->cur && sl->cur->version == svc->version && !sl->next)
			u->done++;
	}
	if (!active(u) || now < u->next_start) {
		u->budget = 0;
		return;
	}
	if (par == 0)
		u->budget = UINT32_MAX;
	else
		u->budget = inflight >= par ? 0 : par - inflight;
}

bool
update_can_start(const struct service *svc)
{
	const struct update *u = &svc->update;

	/* A service that never updated (first deploy, restarts) is not throttled. */
	return u->state == UPDATE_NONE || u->state == UPDATE_COMPLETED ||
	       u->state == UPDATE_ROLLED_BACK || u->budget > 0;
}

bool
update_may_start(struct service *svc)
{
	struct update *u = &svc->update;

	if (!update_can_start(svc))
		return false;
	if (u->state == UPDATE_NONE || u->state == UPDATE_COMPLETED ||
	    u->state == UPDATE_ROLLED_BACK)
		return true;
	u->budget--;
	return true;
}

void
update_task_done(struct service *svc, struct task *t, int64_t now)
{
	t->from_update = false;
	if (active(&svc->update))
		svc->update.next_start = now + svc->spec.update.delay_ms;
}

void
update_task_failed(struct sched_server *srv, struct service *svc, struct task *t, const char *why)
{
	struct update *u = &svc->update;
	char msg[320];

	t->from_update = false;
	/* A task of a version already abandoned (its batch-mate failed first and a rollback
	 * began) says nothing about the version being rolled out now. */
	if (!active(u) || t->version != svc->version)
		return;
	snprintf(msg, sizeof(msg), "task %s %s", t->name, why);
	shoal_log(LOG_WARNING, "service %s: update failure: %s", svc->name, msg);
	if (u->state == UPDATE_ROLLING_BACK) {
		/* Nothing older to go back to: stop where we are and say so. */
		u->state = UPDATE_PAUSED;
		snprintf(msg, sizeof(msg), "rollback paused: task %s %s", t->name, why);
		set_message(u, msg);
		reconcile_persist_service(srv, svc);
		emit(srv, svc, "paused");
		return;
	}
	update_fail(srv, svc, msg);
}

void
update_fail(struct sched_server *srv, struct service *svc, const char *msg)
{
	struct update *u = &svc->update;

	switch (svc->spec.update.failure_action) {
	case MANIFEST_FAILURE_CONTINUE:
		events_emit(&srv->events, EVENTS_UPDATE, "failure", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "%s (failure_action continue)", msg);
		break;
	case MANIFEST_FAILURE_PAUSE:
		u->state = UPDATE_PAUSED;
		set_message(u, msg);
		reconcile_persist_service(srv, svc);
		emit(srv, svc, "paused");
		break;
	case MANIFEST_FAILURE_ROLLBACK:
		if (update_rollback(srv, svc, msg) == -1) {
			u->state = UPDATE_PAUSED;
			set_message(u, msg);
			reconcile_persist_service(srv, svc);
			emit(srv, svc, "paused");
		}
		break;
	}
}

bool
update_pass_end(struct sched_server *srv, struct service *svc, int64_t now)
{
	struct update *u = &svc->update;
	bool all = true;

	if (!active(u))
		return false;
	if (u->done != u->reported) {
		u->reported = u->done;
		events_emit(&srv->events, EVENTS_UPDATE, "progress", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "%s %u/%u",
		            u->state == UPDATE_ROLLING_BACK ? "rolling back" : "updating", u->done,
		            u->total);
	}
	for (size_t i = 0; i < svc->nslots && all; i++) {
		const struct slot *sl = &svc->slots[i];
		if (sl->removed)
			continue;
		all = sl->cur && sl->cur->version == svc->version && !sl->cur->from_update &&
		      !sl->next && task_healthy(sl->cur);
	}
	if (all) {
		if (u->state == UPDATE_ROLLING_BACK) {
			u->state = UPDATE_ROLLED_BACK;
			shoal_log(LOG_INFO, "service %s: rolled back", svc->name);
			emit(srv, svc, "rolled back");
		} else {
			u->state = UPDATE_COMPLETED;
			set_message(u, NULL);
			shoal_log(LOG_INFO, "service %s: update completed", svc->name);
			emit(srv, svc, "completed");
		}
		reconcile_persist_service(srv, svc);
		return false;
	}
	return now < u->next_start;
}
