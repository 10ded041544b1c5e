#ifndef SHOAL_COMMON_LOG_H
#define SHOAL_COMMON_LOG_H

#include <stdint.h>
#include <syslog.h>

/*
 * One line per event on stderr:
 *   2026-11-28T10:00:00.123Z info sched: node node2 down (no heartbeat for 3.0s)
 * shoal_log() tests the level before its arguments are evaluated (redis
 * serverLog), so a debug line costs nothing when debug is off.
 *
 * Warnings and worse are rate-limited per call site (its format string): at most 20 per 10 s,
 * then one "N similar lines suppressed ..., the last: ..." line when the window is over. So a
 * peer that makes a line repeat (refused connections, failed handshakes) costs a bounded
 * number of lines. Info and notice lines, the cluster's own changes, are never limited.
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

/* Write the "suppressed" line of every call site whose window is over: a daemon calls it from
 * its periodic timer so that the count comes out even when the flood has stopped. */
void log_tick(void);

/* Lines per call site and window (burst 0: no limit); resets the counts. For tests. */
void log_set_rate_limit(unsigned burst, int64_t window_ms);

#endif
