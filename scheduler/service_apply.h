#ifndef SHOAL_SCHEDULER_SERVICE_APPLY_H
#define SHOAL_SCHEDULER_SERVICE_APPLY_H

#include <stddef.h>

#include "service-t.h"

struct sched_server;
struct shoal_err;
struct manifest_errors;

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
