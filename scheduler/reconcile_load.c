#include "reconcile_load.h"

#include <stdio.h>
#include <stdlib.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "reconcile_pass.h"
#include "reconcile_task.h"
#include "server-t.h"
#include "service.h"
#include "store.h"
#include "task.h"
#include "update_text.h"
#include "util.h"

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
	/* The state as a type; a row with only the text (or a kind this version does not know)
	 * is read from the text. */
	if (sv->update_typed && sv->update_kind >= UPDATE_NONE &&
	    sv->update_kind <= UPDATE_COMPLETED) {
		svc->update.state = (enum update_state)sv->update_kind;
		svc->update.message = sv->update_message ? xstrdup(sv->update_message) : NULL;
	} else {
		update_restore(svc, sv->update_state);
	}
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
	if (st->desired == TASK_DESIRED_SHUTDOWN)
		task_phase_set(t, TASK_PHASE_SHUTDOWN);
	t->restarts = st->restarts;
	t->created_ms = st->created_ms;
	t->state_since = util_wall_ms();
	t->exit_code = -1;
	t->row.written = true;
	/* Observed state comes back with the agents' registrations: until then a placed task is
	 * "assigned" (its agent will start it if it is not running). */
	t->state = n ? TASK_STATE_ASSIGNED : TASK_STATE_PENDING;
	task_map_put(&srv->tasks, t);
	if (n)
		reconcile_task_bind(srv, t, n);
	switch (st->role) {
	case ROLE_CUR:
	case ROLE_FINISHED:
		if (sl->cur)
			reconcile_task_to_history(srv, sl, sl->cur);
		sl->cur = t;
		if (st->role == ROLE_FINISHED) {
			reconcile_task_unbind(srv, t);
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
	if (task_desired(t) == TASK_DESIRED_SHUTDOWN && sl->cur == t && svc->removed)
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
