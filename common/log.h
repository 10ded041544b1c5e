#ifndef SHOAL_COMMON_LOG_H
#define SHOAL_COMMON_LOG_H

#include <syslog.h>

/*
 * One line per event on stderr:
 *   2026-11-28T10:00:00.123Z info sched: node node2 down (no heartbeat for 3.0s)
 * shoal_log() tests the level before its arguments are evaluated (redis
 * serverLog), so a debug line costs nothing when debug is off.
 */
extern int log_level; /* lines above this syslog level are dropped */

#define shoal_log(level, ...)                                                                      \
	do {                                                                                       \
		if ((level) <= log_level)                                                          \
			log_write((level), __VA_ARGS__);                                           \
	} while (0)

/* Name the component ("sched", "agent", ...) that prefixes every line; routes libevent's own
 * messages into the same log. */
void log_init(const char *component, int level);

/* Parse "debug", "info", "notice", "warning", "error"; -1 when unknown. */
int log_level_parse(const char *name);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
