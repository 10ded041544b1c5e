#ifndef SHOAL_COMMON_WHEN_H
#define SHOAL_COMMON_WHEN_H

#include <stddef.h>
#include <stdint.h>

/* s (n bytes) as an RFC 3339 time ("2026-12-04T10:24:24Z", fractions and +hh:mm offsets
 * accepted) in wall ms; -1 if it is not one. */
int when_parse_rfc3339(const char *s, size_t n, int64_t *ms);

/* A --since argument: "10s", "5m", "2h", "1d" ago (from now_ms) or an RFC 3339 time, in wall
 * ms; -1 if it is neither. */
int when_parse(const char *s, int64_t now_ms, int64_t *ms);

#endif
