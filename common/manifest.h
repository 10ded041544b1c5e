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

#include "manifest_spec.h"

/* Where a service came from, for errors that compare services (duplicates). */
struct manifest_pos {
	unsigned line, column; /* 1-based */
};
struct manifest_origin {
	struct manifest_pos service; /* the service name's value */
	struct manifest_pos *ports;  /* one per spec port: its published value */
};

/* The services of one file, in document order. */
struct manifest {
	char *file; /* the name given to the parser, used in messages */
	struct service_spec *services;
	struct manifest_origin *origins; /* parallel to services */
	size_t n_services;
};

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

/*
 * Check that the services of several parsed manifests can coexist: no
 * service name twice, no published port twice. Appends an error per clash at
 * the later occurrence; returns -1 if any. manifest_parse_buffer already
 * runs this on its own file.
 */
int manifest_check_set(const struct manifest *set, size_t n, struct manifest_errors *errs);

void manifest_free(struct manifest *m);

#endif
