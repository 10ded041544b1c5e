#ifndef SHOAL_SCHEDULER_SERVICE_H
#define SHOAL_SCHEDULER_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest_spec.h"
#include "update.h"

struct task;

/*
 * A replica slot: its current task, the replacement being started for it (drain, update),
 * and the last few finished tasks for `shoal ps -a`.
 */
#define SLOT_HISTORY 3

struct slot {
	uint32_t num;
	bool removed;      /* scaled away: goes once its tasks have stopped */
	struct task *cur;  /* NULL only transiently */
	struct task *next; /* replacement being started; becomes cur once running */
	struct task *history[SLOT_HISTORY]; /* newest first; owned */
	struct task **stopping;             /* replaced tasks still shutting down; owned */
	size_t nstopping;
};

struct service {
	char *name;
	struct service_spec spec; /* desired state */
	char *spec_json;          /* canonical JSON of spec (store and wire) */
	char *prev_spec_json;     /* the spec before the last update, NULL if none */
	uint64_t version;         /* bumped by every changing apply */
	uint64_t prev_version;    /* version of prev_spec_json (a rollback returns to it) */
	struct update update;     /* the rolling update, if any */
	int64_t created_ms, updated_ms;
	bool removed;       /* `shoal rm`: goes once every task has stopped */
	bool dirty;         /* needs a reconcile pass */
	bool waiting;       /* something waits on time (back-off, pending): tick it */
	struct slot *slots; /* sorted by num */
	size_t nslots, capslots;
	char *pending_reason; /* why tasks are pending, NULL when none are */
	/* Manifest digests pinned to versions (the current and the previous one; version 0:
	 * free): the first digest a task of a version reports, so every replica of one version
	 * runs the same bits even if the tag moves (service_pin_set). */
	struct service_pin {
		uint64_t version;
		char digest[80];
	} pins[2];
	/* Evening the spread (reconcile.c): the task of the move in flight, and when a move
	 * may start after failed ones (memory only). */
	char rebalance_task[13];
	uint32_t rebalance_fails;
	int64_t rebalance_after; /* monotonic ms */
	/* Watching the rollout (memory only; reconcile.c): every slot runs healthy at the
	 * current version (the `converged` event went out); the slots that do, plus those of
	 * them already stable (the progress score); when that score last grew (monotonic ms);
	 * whether update.timeout already fired for this rollout. */
	bool converged;
	bool watch_due; /* a task of it became healthy: check at the next tick */
	uint32_t steady;
	int64_t progress_at;
	bool stuck;
};

struct service *service_new(const char *name, int64_t now_wall);
void service_free(struct service *s);

/* Set spec (takes its contents) and spec_json from it. */
void service_set_spec(struct service *s, struct service_spec *spec);

/* The digest version is pinned to, or NULL. */
const char *service_pin_get(const struct service *s, uint64_t version);
/* Pin version to digest unless it has a pin: true if it was pinned now. A pin of a version
 * that is neither the current nor the previous one makes room. */
bool service_pin_set(struct service *s, uint64_t version, const char *digest);

/* Find or add slot num (kept sorted). */
struct slot *service_slot(struct service *s, uint32_t num);
struct slot *service_slot_find(struct service *s, uint32_t num);
void service_slot_remove(struct service *s, struct slot *sl);
/* The lowest slot number >= 1 that no slot uses. */
uint32_t service_free_slot(const struct service *s);
/* The same, given that every number below from is in use: scaling up by n costs O(n log n),
 * not O(n^2). */
uint32_t service_free_slot_from(const struct service *s, uint32_t from);

/* Move t into sl's history (newest first), freeing the oldest; returns the evicted task (caller
 * drops it from maps) or NULL. */
struct task *slot_push_history(struct slot *sl, struct task *t);

/* Keep a replaced task until its node reports it stopped. */
void slot_add_stopping(struct slot *sl, struct task *t);
/* Forget t from the stopping list (not freed). */
void slot_del_stopping(struct slot *sl, struct task *t);

/* A change that starts a rollout (apply, scale, rollback): the service is watched anew, its
 * update.timeout counts from now. */
void service_rollout_begin(struct service *s);

/* Tasks of s that count as replicas (live). */
uint32_t service_running(const struct service *s);

/* The registry of services, sorted by name. */
struct services {
	struct service **v;
	size_t n, cap;
};

struct service *services_find(struct services *ss, const char *name);
void services_add(struct services *ss, struct service *s);
void services_del(struct services *ss, struct service *s);
void services_free(struct services *ss);

struct sched_server;
struct shoal_err;
struct manifest_errors;

/* What an Apply did to one service. */
struct service_change {
	char *name;         /* owned */
	const char *action; /* "created", "updated", "scaled" or "unchanged" (static) */
};

struct service_changes {
	struct service_change *v; /* in request order */
	size_t n;
};

void service_changes_free(struct service_changes *c);

/*
 * Apply the specs of one request (canonical JSON, as the CLI sends them), all or nothing:
 * every spec through manifest_spec_check, the CLI's own check, then the checks against the
 * cluster (a name twice, a published port another service holds); then every changed service's
 * row written and committed to the store; only then memory changed and the services marked for
 * reconcile. Returns 0 and what happened in *out, or -1 having changed nothing: err->code
 * EINVAL with one line per problem in *errs (every problem, not the first), or EIO when the
 * store could not write (err says why).
 */
int service_apply(struct sched_server *srv, char *const *specs_json, size_t n,
                  struct service_changes *out, struct manifest_errors *errs, struct shoal_err *err);
/* The same check and plan, stored and applied nowhere: what an apply would do (--dry-run). */
int service_apply_dry_run(struct sched_server *srv, char *const *specs_json, size_t n,
                          struct service_changes *out, struct manifest_errors *errs,
                          struct shoal_err *err);

/* One replica count to set. */
struct service_scale {
	const char *name;
	uint32_t replicas;
};

/*
 * Set the replica counts, all or nothing, through the same check as Apply, stored and
 * committed before memory changes. -1: err->code ENOENT (no such service), EINVAL (lines in
 * *errs) or EIO (store).
 */
int service_scale(struct sched_server *srv, const struct service_scale *scales, size_t n,
                  struct manifest_errors *errs, struct shoal_err *err);

/* `shoal rm`: mark the service removed, stored and committed before memory changes.
 * -1: err->code ENOENT or EIO. */
int service_remove(struct sched_server *srv, const char *name, struct shoal_err *err);

#endif
