#ifndef SHOAL_COMMON_MANIFEST_CHECK_H
#define SHOAL_COMMON_MANIFEST_CHECK_H

#include "manifest_spec-t.h"

/*
 * The one check of a finished spec, run by the YAML reader on every service it returns and by
 * the scheduler on every spec it is sent (Apply, Scale), against one table of field limits:
 * what the CLI accepts the scheduler accepts, and nothing else. Appends one line per problem,
 * each "PREFIX" followed by "FIELD: message", to *errs; returns -1 if there were any.
 */
int manifest_spec_check(const struct service_spec *spec, const char *prefix,
                        struct manifest_errors *errs);

#endif
