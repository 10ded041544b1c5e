#include "service_apply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_check.h"
#include "manifest_spec.h"
#include "reconcile.h"
#include "reconcile_pass.h"
#include "service.h"
#include "server-t.h"
#include "store.h"
#include "task.h"
#include "update.h"
#include "update_text.h"
#include "util.h"

/* ---- desired-state changes from clients: checked, stored, then applied ---- */

void
service_changes_free(struct service_changes *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].name);
	free(c->v);
	c->v = NULL;
	c->n = 0;
}

/* Two specs that differ only in their replica count: scaling, not an update. */
static bool
same_but_replicas(const struct service_spec *a, const struct service_spec *b)
{
	struct service_spec tmp;
	bool eq;

	manifest_spec_copy(&tmp, b);
	tmp.replicas = a->replicas;
	eq = manifest_spec_equal(a, &tmp);
	manifest_spec_free(&tmp);
	return eq;
}

/*
 * A service's store row as reconcile_persist_service writes it, from a (shallow) service
 * describing the state to come: the row is committed before the service itself changes.
 * *ustate is the row's update text, the caller's to free.
 */
static struct store_service
row_of(const struct service *next, char **ustate)
{
	*ustate = update_text(next);
	return (struct store_service){
	    .name = next->name,
	    .spec_json = next->spec_json,
	    .prev_spec_json = next->prev_spec_json,
	    .version = next->version,
	    .prev_version = next->prev_version,
	    .created_ms = next->created_ms,
	    .updated_ms = next->updated_ms,
	    .removed = next->removed,
	    .update_state = *ustate,
	    .update_typed = true,
	    .update_kind = (int)next->update.state,
	    .update_message = next->update.message,
	};
}

/* One spec of an Apply on its way in. */
struct apply_plan {
	struct service_spec spec; /* parsed: handed to the service when applied */
	bool parsed;
	struct service *svc; /* the existing service, NULL when created */
	const char *action;
	struct service next; /* shallow: the stored fields as they will be */
	char *spec_json;     /* owned: next.spec_json */
	char *ustate;        /* owned: the row's update text */
};

static int
name_index_cmp(const void *a, const void *b)
{
	const struct apply_plan *const *x = a, *const *y = b;
	int r = strcmp((*x)->spec.name, (*y)->spec.name);

	return r != 0 ? r : (*x < *y ? -1 : *x > *y);
}

/* The checks against each other and the cluster: a name twice, a published port held twice. */
static void
check_against_cluster(struct sched_server *srv, struct apply_plan *p, size_t n,
                      struct manifest_errors *errs)
{
	cleanup_free struct apply_plan **byname = xcalloc(n + 1, sizeof(*byname));
	cleanup_free const char **owner = NULL; /* port -> existing service publishing it */
	cleanup_free const char **claim = NULL; /* port -> service of this request */
	size_t nb = 0, nports = 0;

	for (size_t i = 0; i < n; i++)
		if (p[i].parsed)
			byname[nb++] = &p[i];
	qsort(byname, nb, sizeof(*byname), name_index_cmp);
	for (size_t i = 1; i < nb; i++)
		if (strcmp(byname[i]->spec.name, byname[i - 1]->spec.name) == 0)
			manifest_errors_add(errs, "service %s: given twice", byname[i]->spec.name);

	/* A published port belongs to one service cluster-wide: every node listens on it. */
	for (size_t i = 0; i < n; i++)
		nports += p[i].parsed ? p[i].spec.n_ports : 0;
	if (nports == 0)
		return;
	owner = xcalloc(65536, sizeof(*owner));
	claim = xcalloc(65536, sizeof(*claim));
	for (size_t k = 0; k < srv->services.n; k++) {
		const struct service *o = srv->services.v[k];
		if (o->removed)
			continue;
		for (size_t q = 0; q < o->spec.n_ports; q++)
			if (o->spec.ports[q].published != 0)
				owner[o->spec.ports[q].published] = o->name;
	}
	for (size_t i = 0; i < n; i++) {
		const struct service_spec *s = &p[i].spec;
		if (!p[i].parsed)
			continue;
		for (size_t q = 0; q < s->n_ports; q++) {
			uint16_t port = s->ports[q].published;
			if (port == 0)
				continue;
			if (owner[port] != NULL && strcmp(owner[port], s->name) != 0)
				manifest_errors_add(
				    errs,
				    "service %s: published port %u is already used by "
				    "service %s",
				    s->name, port, owner[port]);
			else if (claim[port] == s->name)
				manifest_errors_add(errs, "service %s: port %u is published twice",
				                    s->name, port);
			else if (claim[port] != NULL)
				manifest_errors_add(errs, "services %s and %s both publish port %u",
				                    claim[port], s->name, port);
			claim[port] = s->name;
		}
	}
}

/* Decide what applying p->spec does and describe the service as it will be stored. */
static void
plan_one(struct sched_server *srv, struct apply_plan *p, int64_t now)
{
	struct service *svc = services_find(&srv->services, p->spec.name);

	p->svc = svc;
	if (svc == NULL) {
		p->action = "created";
		p->next.name = p->spec.name;
		p->next.created_ms = p->next.updated_ms = now;
		p->next.version = 1;
	} else if (svc->removed) {
		/* Applied again while its old tasks stop: a new service as far as anyone can
		 * tell (created now, no previous spec, no update, slots from 1). Versions only
		 * grow: the old incarnation's tasks keep theirs. */
		uint64_t top = svc->version > svc->prev_version ? svc->version : svc->prev_version;
		p->action = "created";
		p->next = *svc;
		p->next.prev_spec_json = NULL;
		p->next.prev_version = 0;
		p->next.version = top + 1;
		p->next.removed = false;
		p->next.created_ms = p->next.updated_ms = now;
		memset(&p->next.update, 0, sizeof(p->next.update));
	} else if (manifest_spec_equal(&svc->spec, &p->spec)) {
		p->action = "unchanged";
		return;
	} else if (same_but_replicas(&svc->spec, &p->spec)) {
		p->action = "scaled";
		p->next = *svc;
		p->next.updated_ms = now;
	} else {
		/* Versions only grow (a rollback reuses an older number, so the next one must
		 * clear both). */
		uint64_t top = svc->version > svc->prev_version ? svc->version : svc->prev_version;
		p->action = "updated";
		p->next = *svc;
		p->next.prev_spec_json = svc->spec_json;
		p->next.prev_version = svc->version;
		p->next.version = top + 1;
		p->next.updated_ms = now;
		/* what update_begin will set */
		p->next.update.state = UPDATE_UPDATING;
		p->next.update.message = NULL;
	}
	p->spec_json = manifest_spec_to_json(&p->spec);
	p->next.spec_json = p->spec_json;
}

/* Change memory as planned; the row is already stored. */
static void
apply_one(struct sched_server *srv, struct apply_plan *p)
{
	struct service *svc = p->svc;

	if (strcmp(p->action, "unchanged") == 0)
		return;
	if (svc == NULL) {
		svc = service_new(p->spec.name, p->next.created_ms);
		svc->version = 1;
		service_set_spec(svc, &p->spec);
		services_add(&srv->services, svc);
	} else if (svc->removed) {
		free(svc->prev_spec_json);
		svc->prev_spec_json = NULL;
		svc->prev_version = 0;
		svc->version = p->next.version;
		free(svc->update.message);
		memset(&svc->update, 0, sizeof(svc->update));
		svc->removed = false;
		service_set_spec(svc, &p->spec);
		svc->created_ms = p->next.created_ms;
		svc->updated_ms = p->next.updated_ms;
		reconcile_service_recreated(srv, svc);
	} else if (strcmp(p->action, "scaled") == 0) {
		svc->spec.replicas = p->spec.replicas;
		free(svc->spec_json);
		svc->spec_json = steal_ptr(&p->spec_json);
		svc->updated_ms = p->next.updated_ms;
	} else {
		free(svc->prev_spec_json);
		svc->prev_spec_json = xstrdup(svc->spec_json);
		svc->prev_version = p->next.prev_version;
		svc->version = p->next.version;
		update_begin(srv, svc);
		service_set_spec(svc, &p->spec);
		svc->updated_ms = p->next.updated_ms;
	}
	p->svc = svc;
	shoal_log(LOG_INFO, "service %s %s: version=%llu replicas=%u image=%s", svc->name,
	          p->action, (unsigned long long)svc->version, svc->spec.replicas, svc->spec.image);
	service_rollout_begin(svc);
	events_emit(&srv->events, EVENTS_SERVICE, p->action, svc->name, NULL, NULL, NULL, 0,
	            svc->version, "replicas=%u image=%s", svc->spec.replicas, svc->spec.image);
	reconcile_mark(srv, svc);
}

static int apply_specs(struct sched_server *srv, char *const *specs_json, size_t n,
                       struct service_changes *out, struct manifest_errors *errs,
                       struct shoal_err *err, bool dry_run);

int
service_apply(struct sched_server *srv, char *const *specs_json, size_t n,
              struct service_changes *out, struct manifest_errors *errs, struct shoal_err *err)
{
	return apply_specs(srv, specs_json, n, out, errs, err, false);
}

int
service_apply_dry_run(struct sched_server *srv, char *const *specs_json, size_t n,
                      struct service_changes *out, struct manifest_errors *errs,
                      struct shoal_err *err)
{
	return apply_specs(srv, specs_json, n, out, errs, err, true);
}

static int
apply_specs(struct sched_server *srv, char *const *specs_json, size_t n,
            struct service_changes *out, struct manifest_errors *errs, struct shoal_err *err,
            bool dry_run)
{
	struct apply_plan *p = xcalloc(n + 1, sizeof(*p));
	cleanup_free struct store_service *rows = xcalloc(n + 1, sizeof(*rows));
	size_t nrows = 0, errs_before = errs->n;
	int64_t now = util_wall_ms();
	int rc = -1;

	memset(out, 0, sizeof(*out));
	/* Every spec through the CLI's own check: the scheduler takes nothing the CLI refuses,
	 * whoever holds the admin token and writes the request. */
	for (size_t i = 0; i < n; i++) {
		struct shoal_err perr;
		char prefix[96];

		if (manifest_spec_from_json(specs_json[i], &p[i].spec, &perr) == -1) {
			manifest_errors_add(errs, "spec %zu: %s", i + 1, perr.msg);
			continue;
		}
		p[i].parsed = true;
		if (manifest_service_name_ok(p[i].spec.name))
			snprintf(prefix, sizeof(prefix), "service %s: ", p[i].spec.name);
		else
			snprintf(prefix, sizeof(prefix), "spec %zu: ", i + 1);
		if (manifest_spec_check(&p[i].spec, prefix, errs) == -1)
			p[i].parsed = false; /* kept out of the set checks: its name may be bad */
	}
	check_against_cluster(srv, p, n, errs);
	if (errs->n != errs_before) {
		err_set(err, 0, "apply refused, nothing changed: %zu problem%s",
		        errs->n - errs_before, errs->n - errs_before == 1 ? "" : "s");
		err->code = EINVAL;
		goto out;
	}

	for (size_t i = 0; i < n; i++) {
		plan_one(srv, &p[i], now);
		if (strcmp(p[i].action, "unchanged") != 0 && !dry_run)
			rows[nrows++] = row_of(&p[i].next, &p[i].ustate);
	}
	/* Stored and committed before anything changes or anyone is told: a client that reads
	 * "created" finds the service after a crash, a restart or a power loss. */
	if (nrows > 0 && store_service_put_now(&srv->store, rows, nrows, err) == -1) {
		shoal_log(LOG_ERR, "apply failed: %s", err->msg);
		err_prefix(err, "apply failed, nothing changed");
		err->code = EIO;
		goto out;
	}

	out->v = xcalloc(n + 1, sizeof(*out->v));
	for (size_t i = 0; i < n; i++) {
		out->v[i].name = xstrdup(p[i].spec.name);
		out->v[i].action = p[i].action;
		if (!dry_run)
			apply_one(srv, &p[i]);
	}
	out->n = n;
	rc = 0;
out:
	for (size_t i = 0; i < n; i++) {
		manifest_spec_free(&p[i].spec);
		free(p[i].spec_json);
		free(p[i].ustate);
	}
	free(p);
	return rc;
}

int
service_scale(struct sched_server *srv, const struct service_scale *scales, size_t n,
              struct manifest_errors *errs, struct shoal_err *err)
{
	struct service_spec *specs = xcalloc(n + 1, sizeof(*specs));
	char **jsons = xcalloc(n + 1, sizeof(*jsons));
	char **ustates = xcalloc(n + 1, sizeof(*ustates));
	struct store_service *rows = xcalloc(n + 1, sizeof(*rows));
	size_t nspecs = 0, nrows = 0, errs_before = errs->n;
	int64_t now = util_wall_ms();
	int rc = -1;

	for (size_t i = 0; i < n; i++) {
		struct service *svc = services_find(&srv->services, scales[i].name);
		char prefix[96];

		if (svc == NULL || svc->removed) {
			err_set(err, 0, "no such service: %s (nothing scaled)", scales[i].name);
			err->code = ENOENT;
			goto out;
		}
		manifest_spec_copy(&specs[i], &svc->spec);
		nspecs++;
		specs[i].replicas = scales[i].replicas;
		snprintf(prefix, sizeof(prefix), "service %s: ", svc->name);
		manifest_spec_check(&specs[i], prefix, errs);
	}
	if (errs->n != errs_before) {
		err_set(err, 0, "scale refused, nothing scaled");
		err->code = EINVAL;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct service *svc = services_find(&srv->services, scales[i].name);
		struct service next = *svc;
		if (svc->spec.replicas == scales[i].replicas)
			continue;
		jsons[i] = manifest_spec_to_json(&specs[i]);
		next.spec_json = jsons[i];
		next.updated_ms = now;
		rows[nrows++] = row_of(&next, &ustates[i]);
	}
	if (nrows > 0 && store_service_put_now(&srv->store, rows, nrows, err) == -1) {
		shoal_log(LOG_ERR, "scale failed: %s", err->msg);
		err_prefix(err, "scale failed, nothing scaled");
		err->code = EIO;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct service *svc = services_find(&srv->services, scales[i].name);
		/* Watched anew even when unchanged: a waiting CLI hears `converged` again. */
		service_rollout_begin(svc);
		reconcile_mark(srv, svc);
		if (jsons[i] == NULL || svc->spec.replicas == scales[i].replicas)
			continue;
		shoal_log(LOG_INFO, "service %s scaled from %u to %u", svc->name,
		          svc->spec.replicas, scales[i].replicas);
		events_emit(&srv->events, EVENTS_SERVICE, "scaled", svc->name, NULL, NULL, NULL, 0,
		            svc->version, "replicas %u -> %u", svc->spec.replicas,
		            scales[i].replicas);
		svc->spec.replicas = scales[i].replicas;
		free(svc->spec_json);
		svc->spec_json = steal_ptr(&jsons[i]);
		svc->updated_ms = now;
		reconcile_mark(srv, svc);
	}
	rc = 0;
out:
	for (size_t i = 0; i < nspecs; i++)
		manifest_spec_free(&specs[i]);
	for (size_t i = 0; i < n; i++) {
		free(jsons[i]);
		free(ustates[i]);
	}
	free(specs);
	free(jsons);
	free(ustates);
	free(rows);
	return rc;
}

int
service_remove(struct sched_server *srv, const char *name, struct shoal_err *err)
{
	struct service *svc = services_find(&srv->services, name);
	struct service next;
	struct store_service row;
	cleanup_free char *ustate = NULL;
	int64_t now = util_wall_ms();

	if (svc == NULL || svc->removed) {
		err_set(err, 0, "no such service: %s", name);
		err->code = ENOENT;
		return -1;
	}
	next = *svc;
	next.removed = true;
	next.updated_ms = now;
	row = row_of(&next, &ustate);
	if (store_service_put_now(&srv->store, &row, 1, err) == -1) {
		shoal_log(LOG_ERR, "remove %s failed: %s", name, err->msg);
		err_prefix(err, "remove failed, nothing changed");
		err->code = EIO;
		return -1;
	}
	svc->removed = true;
	svc->updated_ms = now;
	shoal_log(LOG_INFO, "service %s: removing", svc->name);
	events_emit(&srv->events, EVENTS_SERVICE, "removed", svc->name, NULL, NULL, NULL, 0,
	            svc->version, NULL);
	reconcile_mark(srv, svc);
	return 0;
}
