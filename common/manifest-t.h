#ifndef SHOAL_COMMON_MANIFEST_T_H
#define SHOAL_COMMON_MANIFEST_T_H

/* The types of a parsed manifest (manifest.h has the reader). */

#include <stddef.h>

#include "manifest_spec-t.h"

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

#endif
