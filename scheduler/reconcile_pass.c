#include "reconcile_pass.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "server-t.h"
#include "service.h"
#include "store.h"
#include "task.h"
#include "update_text.h"
#include "util.h"

void
reconcile_pass_warn(const struct shoal_err *err)
{
	shoal_log(LOG_ERR, "store: %s", err->msg);
}

static void
schedule_pass(struct sched_server *srv)
{
	if (srv->pass && !event_pending(srv->pass, EV_TIMEOUT, NULL))
		event_active(srv->pass, EV_TIMEOUT, 0);
}

void
reconcile_schedule(struct sched_server *srv)
{
	schedule_pass(srv);
}

void
reconcile_pass_tx(struct sched_server *srv)
{
	struct shoal_err err;

	if (!srv->store.in_tx) {
		if (store_tx_begin(&srv->store, &err) == -1)
			reconcile_pass_warn(&err);
		srv->tx_since = util_now_ms();
	}
	schedule_pass(srv);
}

void
reconcile_mark(struct sched_server *srv, struct service *svc)
{
	if (svc->dirty)
		return;
	svc->dirty = true;
	if (srv->ndirty_svcs == srv->capdirty_svcs) {
		srv->capdirty_svcs = srv->capdirty_svcs ? srv->capdirty_svcs * 2 : 16;
		srv->dirty_svcs =
		    xrealloc(srv->dirty_svcs, srv->capdirty_svcs * sizeof(*srv->dirty_svcs));
	}
	srv->dirty_svcs[srv->ndirty_svcs++] = svc;
	schedule_pass(srv);
}

void
reconcile_mark_node(struct sched_server *srv, struct node *n)
{
	if (n->dirty)
		return;
	n->dirty = true;
	if (srv->ndirty_nodes == 0)
		srv->dirty_nodes_since = util_now_ms();
	if (srv->ndirty_nodes == srv->capdirty_nodes) {
		srv->capdirty_nodes = srv->capdirty_nodes ? srv->capdirty_nodes * 2 : 16;
		srv->dirty_nodes =
		    xrealloc(srv->dirty_nodes, srv->capdirty_nodes * sizeof(*srv->dirty_nodes));
	}
	srv->dirty_nodes[srv->ndirty_nodes++] = n;
	schedule_pass(srv);
}

static int
task_role(const struct slot *sl, const struct task *t)
{
	if (task_terminal(t))
		return ROLE_FINISHED;
	if (sl && sl->cur == t)
		return ROLE_CUR;
	if (sl && sl->next == t)
		return ROLE_NEXT;
	return ROLE_STOPPING;
}

/*
 * Record t's durable fields. The row is written once, at the end of the pass, however many
 * times the pass changes the task (a new task is created, then placed: one write, not two).
 */
void
reconcile_persist_task(struct sched_server *srv, struct task *t)
{
	schedule_pass(srv);
	if (t->row.queued)
		return;
	if (srv->ndirty_tasks == srv->capdirty_tasks) {
		srv->capdirty_tasks = srv->capdirty_tasks ? srv->capdirty_tasks * 2 : 64;
		srv->dirty_tasks =
		    xrealloc(srv->dirty_tasks, srv->capdirty_tasks * sizeof(*srv->dirty_tasks));
	}
	t->row.queued = true;
	t->row.queue_idx = (uint32_t)srv->ndirty_tasks;
	srv->dirty_tasks[srv->ndirty_tasks++] = t;
}

static void
dequeue_task(struct sched_server *srv, struct task *t)
{
	struct task *last = srv->dirty_tasks[--srv->ndirty_tasks];

	SHOAL_ASSERT(t->row.queued && srv->dirty_tasks[t->row.queue_idx] == t);
	srv->dirty_tasks[t->row.queue_idx] = last;
	last->row.queue_idx = t->row.queue_idx;
	t->row.queued = false;
}

static int
task_id_cmp(const void *a, const void *b)
{
	const struct task *x = *(struct task *const *)a, *y = *(struct task *const *)b;

	return strcmp(x->id, y->id);
}

/*
 * Write the rows the pass queued, in its transaction. In id order: ids are random, and
 * sorted inserts walk the id index's pages once, in order (20% faster for 10,000 rows).
 */
void
reconcile_pass_write_tasks(struct sched_server *srv)
{
	struct shoal_err err;

	if (srv->ndirty_tasks)
		reconcile_pass_tx(srv);
	if (srv->ndirty_tasks > 1)
		qsort(srv->dirty_tasks, srv->ndirty_tasks, sizeof(*srv->dirty_tasks), task_id_cmp);
	for (size_t i = 0; i < srv->ndirty_tasks; i++) {
		struct task *t = srv->dirty_tasks[i];
		struct store_task st = {
		    .id = t->id,
		    .name = t->name,
		    .service = t->svc->name,
		    .slot = t->slot,
		    .version = t->version,
		    .node_id = t->node ? t->node->id : "",
		    .desired = task_desired(t),
		    .role = task_role(service_slot_find(t->svc, t->slot), t),
		    .restarts = t->restarts,
		    .created_ms = t->created_ms,
		};
		t->row.queued = false;
		t->row.written = true;
		if (store_task_put(&srv->store, &st, &err) == -1)
			reconcile_pass_warn(&err);
	}
	srv->ndirty_tasks = 0;
}

void
reconcile_pass_forget_task(struct sched_server *srv, struct task *t)
{
	struct shoal_err err;

	if (!task_row_kept(t))
		return;
	if (t->row.queued)
		dequeue_task(srv, t);
	if (!t->row.written)
		return; /* queued in this pass, never written: nothing to delete */
	t->row.written = false;
	reconcile_pass_tx(srv);
	if (store_task_delete(&srv->store, t->id, &err) == -1)
		reconcile_pass_warn(&err);
}

void
reconcile_persist_service(struct sched_server *srv, struct service *svc)
{
	struct store_service sv = {
	    .name = svc->name,
	    .spec_json = svc->spec_json,
	    .prev_spec_json = svc->prev_spec_json,
	    .version = svc->version,
	    .created_ms = svc->created_ms,
	    .updated_ms = svc->updated_ms,
	    .removed = svc->removed,
	    .prev_version = svc->prev_version,
	};
	struct shoal_err err;
	cleanup_free char *ustate = update_text(svc);

	sv.update_state = ustate;
	sv.update_typed = true;
	sv.update_kind = (int)svc->update.state;
	sv.update_message = svc->update.message;
	reconcile_pass_tx(srv);
	if (store_service_put(&srv->store, &sv, &err) == -1)
		reconcile_pass_warn(&err);
}
