#include "api_service.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "update.h"
#include "update_text.h"
#include "reply.h"
#include "server-t.h"
#include "service.h"
#include "service_apply.h"
#include "task.h"
#include "shoal.pb-c.h"
#include "util.h"

void
api_service_apply(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__Apply *ap = env->apply;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ApplyReply ar = SHOAL__APPLY_REPLY__INIT;
	struct manifest_errors errs = {0};
	Shoal__ServiceChange *changes, **cp;
	struct service_changes ch;
	struct shoal_err err;
	uint64_t seq = sc->srv->events.last_seq;

	/* Checked, stored and committed there; only then answered here. */
	if ((ap->dry_run ? service_apply_dry_run : service_apply)(
	        sc->srv, ap->specs_json, ap->n_specs_json, &ch, &errs, &err) == -1) {
		reply_error_lines(sc, env->id, (unsigned)err.code, err.msg, &errs);
		manifest_errors_free(&errs);
		return;
	}
	changes = xcalloc(ch.n + 1, sizeof(*changes));
	cp = xcalloc(ch.n + 1, sizeof(*cp));
	for (size_t i = 0; i < ch.n; i++) {
		shoal__service_change__init(&changes[i]);
		changes[i].name = ch.v[i].name;
		changes[i].action = (char *)ch.v[i].action;
		cp[i] = &changes[i];
	}
	ar.changes = cp;
	ar.n_changes = ch.n;
	ar.events_seq = seq;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_APPLY_REPLY;
	reply.apply_reply = &ar;
	reply_send(sc, &reply);
	free(changes);
	free(cp);
	service_changes_free(&ch);
}

/* Sum every node's counters for svc: the total first, then one line per backend task. */
static Shoal__ServiceStats **
service_stats(struct sched_server *srv, const char *svc, size_t *count)
{
	Shoal__ServiceStats **v = NULL;
	size_t n = 0;

	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *nd = srv->nodes.v[i];
		for (size_t k = 0; k < nd->npstats; k++) {
			const struct node_stat *st = &nd->pstats[k];
			Shoal__ServiceStats *o = NULL;
			if (strcmp(st->service, svc) != 0)
				continue;
			for (size_t j = 0; j < n && o == NULL; j++)
				if (strcmp(v[j]->task_id, st->task_id) == 0 &&
				    strcmp(v[j]->backend, st->backend) == 0)
					o = v[j];
			if (o == NULL) {
				o = xmalloc(sizeof(*o));
				shoal__service_stats__init(o);
				o->service = (char *)svc;
				o->backend = st->backend;
				o->task_id = st->task_id;
				v = xrealloc(v, (n + 1) * sizeof(*v));
				/* The total stays first. */
				if (st->task_id[0] == '\0' && n) {
					memmove(v + 1, v, n * sizeof(*v));
					v[0] = o;
				} else {
					v[n] = o;
				}
				n++;
			}
			o->connections += st->connections;
			o->active += st->active;
			o->bytes_in += st->bytes_in;
			o->bytes_out += st->bytes_out;
			o->connect_failures += st->connect_failures;
			o->retries += st->retries;
			o->queue_len += st->queue_len;
			o->queued += st->queued;
			o->queue_wait_ms += st->queue_wait_ms;
			o->queue_timeouts += st->queue_timeouts;
			o->busy_timeouts += st->busy_timeouts;
		}
	}
	*count = n;
	return v;
}

void
api_service_list(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const char *only = env->list_services->name;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ListServicesReply lr = SHOAL__LIST_SERVICES_REPLY__INIT;
	size_t n = srv->services.n, k = 0;
	Shoal__ServiceInfo *infos = xcalloc(n ? n : 1, sizeof(*infos));
	char **ustates = xcalloc(n ? n : 1, sizeof(*ustates));

	lr.services = xcalloc(n ? n : 1, sizeof(*lr.services));
	for (size_t i = 0; i < n; i++) {
		const struct service *svc = srv->services.v[i];
		Shoal__ServiceInfo *si = &infos[k];
		if (only && only[0] && strcmp(only, svc->name) != 0)
			continue;
		shoal__service_info__init(si);
		si->name = svc->name;
		si->spec_json = svc->spec_json;
		si->version = svc->version;
		si->replicas_desired = svc->removed ? 0 : svc->spec.replicas;
		si->replicas_running = service_running(svc);
		si->created_ms = svc->created_ms;
		si->updated_ms = svc->updated_ms;
		ustates[k] = svc->removed ? xstrdup("removing") : update_status(svc);
		si->update_state = ustates[k];
		si->prev_spec_json = svc->prev_spec_json ? svc->prev_spec_json : "";
		si->image_digest = (char *)service_pin_get(svc, svc->version);
		if (si->image_digest == NULL)
			si->image_digest = "";
		if (env->list_services->stats)
			si->stats = service_stats(srv, svc->name, &si->n_stats);
		si->port_errors = nodes_port_errors(&srv->nodes, svc->name, &si->n_port_errors);
		lr.services[k++] = si;
	}
	if (only && only[0] && k == 0) {
		reply_error(sc, env->id, ENOENT, "no such service: %s", only);
		goto out;
	}
	lr.n_services = k;
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_SERVICES_REPLY;
	reply.list_services_reply = &lr;
	reply_send(sc, &reply);
out:
	for (size_t i = 0; i < k; i++) {
		free(ustates[i]);
		for (size_t j = 0; j < infos[i].n_stats; j++)
			free(infos[i].stats[j]);
		free(infos[i].stats);
		nodes_port_errors_free(infos[i].port_errors, infos[i].n_port_errors);
	}
	free(ustates);
	free(lr.services);
	free(infos);
}

struct task_list {
	Shoal__TaskInfo *infos;
	Shoal__TaskInfo **ptrs;
	size_t n, cap;
};

static void
add_task_info(struct task_list *l, const struct task *t)
{
	Shoal__TaskInfo *ti;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->infos = xrealloc(l->infos, l->cap * sizeof(*l->infos));
	}
	ti = &l->infos[l->n++];
	shoal__task_info__init(ti);
	ti->id = (char *)t->id;
	ti->name = t->name;
	ti->service = t->svc->name;
	ti->slot = t->slot;
	ti->node = t->node ? t->node->name : "";
	ti->desired = (char *)task_desired_name(task_desired(t));
	ti->state = (Shoal__TaskState)t->state;
	ti->state_since_ms = t->state_since;
	ti->ip = (char *)t->ip;
	ti->message = t->message ? t->message : "";
	ti->exit_code = t->exit_code;
	ti->version = t->version;
	ti->started_at_ms = t->started_at;
	ti->health = (char *)(t->health ? t->health : "");
	ti->last_output = t->last_output ? t->last_output : "";
}

void
api_service_list_tasks(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct sched_server *srv = sc->srv;
	const Shoal__ListTasks *lt = env->list_tasks;
	Shoal__Envelope reply = SHOAL__ENVELOPE__INIT;
	Shoal__ListTasksReply lr = SHOAL__LIST_TASKS_REPLY__INIT;
	struct task_list l = {0};
	bool found = false;

	for (size_t i = 0; i < srv->services.n; i++) {
		const struct service *svc = srv->services.v[i];
		if (lt->service && lt->service[0] && strcmp(lt->service, svc->name) != 0)
			continue;
		found = true;
		for (size_t j = 0; j < svc->nslots; j++) {
			const struct slot *sl = &svc->slots[j];
			if (sl->cur)
				add_task_info(&l, sl->cur);
			if (sl->next)
				add_task_info(&l, sl->next);
			for (size_t k = 0; k < sl->nstopping; k++)
				add_task_info(&l, sl->stopping[k]);
			for (size_t k = 0; lt->all && k < SLOT_HISTORY; k++)
				if (sl->history[k])
					add_task_info(&l, sl->history[k]);
		}
	}
	if (lt->service && lt->service[0] && !found) {
		reply_error(sc, env->id, ENOENT, "no such service: %s", lt->service);
		free(l.infos);
		return;
	}
	l.ptrs = xcalloc(l.n ? l.n : 1, sizeof(*l.ptrs));
	for (size_t i = 0; i < l.n; i++)
		l.ptrs[i] = &l.infos[i];
	lr.tasks = l.ptrs;
	lr.n_tasks = l.n;
	lr.port_errors = nodes_port_errors(
	    &srv->nodes, lt->service && lt->service[0] ? lt->service : NULL, &lr.n_port_errors);
	reply.id = env->id;
	reply.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY;
	reply.list_tasks_reply = &lr;
	reply_send(sc, &reply);
	nodes_port_errors_free(lr.port_errors, lr.n_port_errors);
	free(l.infos);
	free(l.ptrs);
}

void
api_service_scale(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__ScaleRequest *sr = env->scale;
	struct service_scale *scales = xcalloc(sr->n_scales + 1, sizeof(*scales));
	struct manifest_errors errs = {0};
	struct shoal_err err;

	uint64_t seq = sc->srv->events.last_seq;

	for (size_t i = 0; i < sr->n_scales; i++)
		scales[i] = (struct service_scale){sr->scales[i]->service, sr->scales[i]->replicas};
	if (service_scale(sc->srv, scales, sr->n_scales, &errs, &err) == -1)
		reply_error_lines(sc, env->id, (unsigned)err.code, err.msg, &errs);
	else
		reply_ok_since(sc, env->id, seq, "scaled");
	manifest_errors_free(&errs);
	free(scales);
}

void
api_service_remove(struct sched_conn *sc, const Shoal__Envelope *env)
{
	const Shoal__RemoveService *rs = env->remove_service;
	struct shoal_err err;

	/* Several at once: all or nothing, like scale. Every unknown name is named. */
	if (rs->n_names > 0) {
		char missing[512] = "";
		size_t nmiss = 0;
		for (size_t i = 0; i < rs->n_names; i++) {
			struct service *svc = services_find(&sc->srv->services, rs->names[i]);
			if (svc && !svc->removed)
				continue;
			snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
			         "%s%s", nmiss++ ? ", " : "", rs->names[i]);
		}
		if (nmiss) {
			reply_error(sc, env->id, ENOENT, "no such service%s: %s; nothing removed",
			            nmiss == 1 ? "" : "s", missing);
			return;
		}
		for (size_t i = 0; i < rs->n_names; i++) {
			if (service_remove(sc->srv, rs->names[i], &err) == -1) {
				reply_error(sc, env->id, (unsigned)err.code, "%s", err.msg);
				return;
			}
		}
		reply_ok(sc, env->id, "removed");
		return;
	}
	if (service_remove(sc->srv, env->remove_service->name, &err) == -1) {
		reply_error(sc, env->id, (unsigned)err.code, "%s", err.msg);
		return;
	}
	reply_ok(sc, env->id, "%s", env->remove_service->name);
}

void
api_service_rollback(struct sched_conn *sc, const Shoal__Envelope *env)
{
	struct service *svc = services_find(&sc->srv->services, env->rollback->name);
	uint64_t seq = sc->srv->events.last_seq;

	if (svc == NULL || svc->removed) {
		reply_error(sc, env->id, ENOENT, "no such service: %s", env->rollback->name);
		return;
	}
	if (update_rollback(sc->srv, svc, "rollback requested") == -1) {
		reply_error(sc, env->id, EINVAL, "service %s has no previous spec to roll back to",
		            svc->name);
		return;
	}
	reply_ok_since(sc, env->id, seq, "%s rolling back", svc->name);
}
