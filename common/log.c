#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

int log_level = LOG_INFO;
static char log_component[32] = "shoal";

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg",  [LOG_ALERT] = "alert",   [LOG_CRIT] = "crit", [LOG_ERR] = "error",
    [LOG_WARNING] = "warn", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static void
log_libevent(int severity, const char *msg)
{
	int level = LOG_DEBUG;

	switch (severity) {
	case EVENT_LOG_MSG:
		level = LOG_INFO;
		break;
	case EVENT_LOG_WARN:
		level = LOG_WARNING;
		break;
	case EVENT_LOG_ERR:
		level = LOG_ERR;
		break;
	default:
		break;
	}
	shoal_log(level, "libevent: %s", msg);
}

void
log_init(const char *component, int level)
{
	snprintf(log_component, sizeof(log_component), "%s", component);
	log_level = level;
	event_set_log_callback(log_libevent);
}

int
log_level_parse(const char *name)
{
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (strcmp(name, level_names[i]) == 0)
			return i;
	if (strcmp(name, "warning") == 0)
		return LOG_WARNING;
	return -1;
}

void
log_write(int level, const char *fmt, ...)
{
	char line[1024], stamp[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (level < 0 || level > LOG_DEBUG)
		level = LOG_INFO;
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: ", stamp, (long)(tv.tv_usec / 1000),
	             level_names[level], log_component);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One write per line, so lines from several processes do not interleave. */
	strcat(line, "\n");
	fputs(line, stderr);
	fflush(stderr);
}
