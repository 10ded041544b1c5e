#ifndef SHOAL_COMMON_MANIFEST_SPEC_H
#define SHOAL_COMMON_MANIFEST_SPEC_H

/*
 * A service's desired state (struct service_spec) and its one check, against one table of field
 * limits. The YAML reader (manifest.h) and the JSON form (manifest_json.h) both produce it; the
 * agent and the scheduler need only this header and manifest_json.h.
 * manifests/README.md is the reference of every key, its type and default.
 */

#include "manifest_spec-t.h"

/* True when name is a valid service name (a DNS label); NULL is not. */
bool manifest_service_name_ok(const char *name);

/* Append one printf-formatted line to *errs, within MANIFEST_MAX_ERRORS. */
void manifest_errors_add(struct manifest_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Check an image reference against Docker's reference grammar (common/reference.h, the same
 * parser the image store and the registry client use): [HOST[:PORT]/]NAME[:TAG][@DIGEST],
 * NAME lowercase components. Every reader of a spec's image goes through this function.
 */
int manifest_check_image(const char *ref, struct shoal_err *err);

void manifest_errors_free(struct manifest_errors *errs);

/* Fill *spec with the defaults (README) and no strings. */
void manifest_spec_init(struct service_spec *spec);
/* Free what *spec owns and leave it zeroed; the struct itself is the caller's. */
void manifest_spec_free(struct service_spec *spec);
/* Deep copy src into *dst (uninitialised on entry). */
void manifest_spec_copy(struct service_spec *dst, const struct service_spec *src);
/* True when a and b describe the same desired state: applying b over a changes nothing. */
bool manifest_spec_equal(const struct service_spec *a, const struct service_spec *b);

/* The constraint as written canonically: "node.labels.zone == a". Caller frees. */
char *manifest_constraint_format(const struct manifest_constraint *c);
/* Parse "node.name|node.id|node.labels.KEY ==|!= VALUE" into *out (caller frees with
 * manifest_constraint_free). */
int manifest_constraint_parse(const char *s, struct manifest_constraint *out,
                              struct shoal_err *err);
void manifest_constraint_free(struct manifest_constraint *c);

#endif
