#include "service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "reconcile.h"
#include "server.h"
#include "store.h"
#include "task.h"
#include "update.h"
#include "util.h"

struct service *
service_new(const char *name, int64_t now_wall)
{
	struct service *s = xcalloc(1, sizeof(*s));

	s->name = xstrdup(name);
	s->created_ms = s->updated_ms = now_wall;
	s->progress_at = util_now_ms();
	manifest_spec_init(&s->spec);
	return s;
}

const char *
service_pin_get(const struct service *s, uint64_t version)
{
	for (size_t i = 0; i < ARRAY_SIZE(s->pins); i++)
		if (version && s->pins[i].version == version)
			return s->pins[i].digest;
	return NULL;
}

bool
service_pin_set(struct service *s, uint64_t version, const char *digest)
{
	struct service_pin *free_pin = NULL;

	if (version == 0 || service_pin_get(s, version))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(s->pins) && free_pin == NULL; i++)
		if (s->pins[i].version == 0 ||
		    (s->pins[i].version != s->version && s->pins[i].version != s->prev_version))
			free_pin = &s->pins[i];
	if (free_pin == NULL)
		return false; /* both hold the current and the previous version */
	free_pin->version = version;
	snprintf(free_pin->digest, sizeof(free_pin->digest), "%s", digest);
	return true;
}

static void
slot_clear(struct slot *sl)
{
	task_free(sl->cur);
	task_free(sl->next);
	for (size_t i = 0; i < SLOT_HISTORY; i++)
		task_free(sl->history[i]);
	for (size_t i = 0; i < sl->nstopping; i++)
		task_free(sl->stopping[i]);
	free(sl->stopping);
	memset(sl, 0, sizeof(*sl));
}

void
service_free(struct service *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nslots; i++)
		slot_clear(&s->slots[i]);
	free(s->slots);
	manifest_spec_free(&s->spec);
	free(s->spec_json);
	free(s->prev_spec_json);
	free(s->pending_reason);
	free(s->update.message);
	free(s->name);
	free(s);
}

void
service_set_spec(struct service *s, struct service_spec *spec)
{
	manifest_spec_free(&s->spec);
	s->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	free(s->spec_json);
	s->spec_json = manifest_spec_to_json(&s->spec);
}

/* Index of the first slot whose number is >= num (slots are sorted by number). */
static size_t
slot_lower(const struct service *s, uint32_t num)
{
	size_t lo = 0, hi = s->nslots;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->slots[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct slot *
service_slot_find(struct service *s, uint32_t num)
{
	size_t i = slot_lower(s, num);

	return i < s->nslots && s->slots[i].num == num ? &s->slots[i] : NULL;
}

struct slot *
service_slot(struct service *s, uint32_t num)
{
	size_t i = slot_lower(s, num);

	if (i < s->nslots && s->slots[i].num == num)
		return &s->slots[i];
	if (s->nslots == s->capslots) {
		s->capslots = s->capslots ? s->capslots * 2 : 4;
		s->slots = xrealloc(s->slots, s->capslots * sizeof(*s->slots));
	}
	memmove(&s->slots[i + 1], &s->slots[i], (s->nslots - i) * sizeof(*s->slots));
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
	s->slots[i].num = num;
	s->nslots++;
	return &s->slots[i];
}

void
service_slot_remove(struct service *s, struct slot *sl)
{
	size_t i = (size_t)(sl - s->slots);

	slot_clear(sl);
	memmove(&s->slots[i], &s->slots[i + 1], (s->nslots - i - 1) * sizeof(*s->slots));
	s->nslots--;
}

uint32_t
service_free_slot_from(const struct service *s, uint32_t from)
{
	uint32_t want = from ? from : 1;

	/* Slots are sorted and distinct: the first gap in from, from+1, ... is the answer. */
	for (size_t i = slot_lower(s, want); i < s->nslots && s->slots[i].num == want; i++)
		want++;
	return want;
}

uint32_t
service_free_slot(const struct service *s)
{
	return service_free_slot_from(s, 1);
}

struct task *
slot_push_history(struct slot *sl, struct task *t)
{
	struct task *evicted = sl->history[SLOT_HISTORY - 1];

	memmove(&sl->history[1], &sl->history[0], (SLOT_HISTORY - 1) * sizeof(sl->history[0]));
	sl->history[0] = t;
	return evicted;
}

void
slot_add_stopping(struct slot *sl, struct task *t)
{
	sl->stopping = xrealloc(sl->stopping, (sl->nstopping + 1) * sizeof(*sl->stopping));
	sl->stopping[sl->nstopping++] = t;
}

void
slot_del_stopping(struct slot *sl, struct task *t)
{
	for (size_t i = 0; i < sl->nstopping; i++) {
		if (sl->stopping[i] == t) {
			sl->stopping[i] = sl->stopping[--sl->nstopping];
			return;
		}
	}
}

void
service_rollout_begin(struct service *s)
{
	s->converged = false;
	s->stuck = false;
	s->steady = 0;
	s->progress_at = util_now_ms();
}

uint32_t
service_running(const struct service *s)
{
	uint32_t n = 0;

	for (size_t i = 0; i < s->nslots; i++) {
		const struct slot *sl = &s->slots[i];
		if (sl->removed)
			continue;
		if ((sl->cur && sl->cur->state == TASK_STATE_RUNNING && task_live(sl->cur)) ||
		    (sl->next && sl->next->state == TASK_STATE_RUNNING && task_live(sl->next)))
			n++;
	}
	return n;
}

static size_t
services_lower(const struct services *ss, const char *name)
{
	size_t lo = 0, hi = ss->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(ss->v[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct service *
services_find(struct services *ss, const char *name)
{
	size_t i = services_lower(ss, name);

	return i < ss->n && strcmp(ss->v[i]->name, name) == 0 ? ss->v[i] : NULL;
}

void
services_add(struct services *ss, struct service *s)
{
	size_t i = services_lower(ss, s->name);

	if (ss->n == ss->cap) {
		ss->cap = ss->cap ? ss->cap * 2 : 8;
		ss->v = xrealloc(ss->v, ss->cap * sizeof(*ss->v));
	}
	memmove(&ss->v[i + 1], &ss->v[i], (ss->n - i) * sizeof(*ss->v));
	ss->v[i] = s;
	ss->n++;
}

void
services_del(struct services *ss, struct service *s)
{
	size_t i = services_lower(ss, s->name);

	if (i < ss->n && ss->v[i] == s) {
		memmove(&ss->v[i], &ss->v[i + 1], (ss->n - i - 1) * sizeof(*ss->v));
		ss->n--;
	}
}

void
services_free(struct services *ss)
{
	for (size_t i = 0; i < ss->n; i++)
		service_free(ss->v[i]);
	free(ss->v);
	memset(ss, 0, sizeof(*ss));
}

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
