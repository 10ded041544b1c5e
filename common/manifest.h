#ifndef SHOAL_COMMON_MANIFEST_H
#define SHOAL_COMMON_MANIFEST_H

/*
 * Service manifests: the YAML reader, YAML → struct service_spec (manifest_spec.h).
 *
 * A manifest file holds one YAML document per service. Parsing is all or
 * nothing and collects every mistake as "FILE:LINE:COLUMN: message" (1-based,
 * pointing at the offending key or value), so a user fixes a file in one go.
 * manifests/README.md is the reference of every key, its type and default.
 */

#include <stddef.h>

#include "manifest-t.h"
#include "manifest_spec.h"

/* The largest manifest read: a hundred services fit in a few KiB, and libyaml's cost grows
 * faster than the input on hostile nesting, so a bound keeps a parse well under a second. */
#define MANIFEST_MAX_BYTES (1024 * 1024)

/*
 * Parse buf (len bytes, need not be NUL-terminated) named name in messages.
 * On success fills *out (free with manifest_free) and returns 0. On any error
 * appends every error to *errs, leaves *out empty and returns -1.
 */
int manifest_parse_buffer(const char *name, const char *buf, size_t len, struct manifest *out,
                          struct manifest_errors *errs);

/* Read path and parse it as manifest_parse_buffer does, path naming it in messages. */
int manifest_parse_file(const char *path, struct manifest *out, struct manifest_errors *errs);

void manifest_free(struct manifest *m);

#endif
