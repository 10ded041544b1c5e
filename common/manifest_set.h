#ifndef SHOAL_COMMON_MANIFEST_SET_H
#define SHOAL_COMMON_MANIFEST_SET_H

#include <stddef.h>

#include "manifest-t.h"

struct vctx;

/*
 * Several parsed manifests applied together (`shoal apply -f a.yaml -f b.yaml`): no service
 * name twice, no published port twice. Sorted, not compared pairwise: a 1 MiB file of 40,000
 * documents took 3 s pairwise.
 */

/* Appends an error per clash at the later occurrence, pointing at the first one; returns -1
 * if any. manifest_parse_buffer already checks its own file. */
int manifest_set_check(const struct manifest *set, size_t n, struct manifest_errors *errs);

/* The same work, reported into the YAML reader's context c (its file switched per manifest). */
void manifest_set_report(struct vctx *c, const struct manifest *set, size_t n);

#endif
