#ifndef SHOAL_COMMON_LABELS_H
#define SHOAL_COMMON_LABELS_H

#include <stddef.h>

struct shoal_err;

/*
 * Node labels (KEY=VALUE, from `shoal-agent --label`): the one table of their limits, used by
 * the agent when it starts and by the scheduler on every Register. The caps keep one node's
 * labels under ~9 KB, so a ListNodes reply for a /16 cluster (255 nodes) stays well inside
 * the 4 MiB frame, and the stored "k=v,k=v" text parses back unambiguously.
 */
#define LABELS_MAX      64 /* labels per node */
#define LABEL_KEY_MAX   63 /* bytes: [A-Za-z0-9] then [A-Za-z0-9._/-] */
#define LABEL_VALUE_MAX 63 /* bytes of printable ASCII without ',' or space; may be empty */

/* Check one label against the limits: 0, or -1 with a message naming the key. */
int labels_check(const char *key, const char *value, struct shoal_err *err);

/* Check a count of labels: 0, or -1 with "N labels: at most 64". */
int labels_check_count(size_t n, struct shoal_err *err);

/* Check joined "k=v,k=v" text (as stored) against every limit: 0 or -1. "" is valid. */
int labels_check_joined(const char *s, struct shoal_err *err);

#endif
