#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
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

/*
 * Repeated lines are rate-limited per call site, keyed by the format string: whoever can make
 * one line repeat (a refused connection, a failed handshake, an accept error on a full fd
 * table) must not fill the disk with it or spend the loop's time writing it. A call site
 * writes at most log_burst lines per log_window_ms; past that its lines are only counted, and
 * the site's first line after the window (or log_tick() once the window is over) says how
 * many were suppressed and repeats the last of them. Debug lines are never limited: debug is
 * asked for, and a test may count them.
 */
#define LOG_RL_SLOTS 128

struct log_rl {
	const char *fmt;      /* the call site; NULL for a free slot */
	int level;            /* of the suppressed lines */
	int64_t window_start; /* monotonic ms */
	unsigned lines;       /* written in this window */
	unsigned suppressed;  /* not written in this window */
	char last[256];       /* the last suppressed line, without its prefix */
};

/* Threads log too (the proxy's workers): the table and the line buffer are under this. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_rl log_rl[LOG_RL_SLOTS];
static unsigned log_burst = 20;
static int64_t log_window_ms = 10000;

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

/* Weak: a program without libevent (shoalrt, linked statically) has no messages of its to
 * route, and this reference alone must not pull libevent in. */
extern __typeof__(event_set_log_callback) event_set_log_callback __attribute__((weak));

void
log_init(const char *component, int level)
{
	snprintf(log_component, sizeof(log_component), "%s", component);
	log_level = level;
	if (event_set_log_callback != NULL)
		event_set_log_callback(log_libevent);
}

void
log_set_rate_limit(unsigned burst, int64_t window_ms)
{
	pthread_mutex_lock(&log_lock);
	log_burst = burst;
	log_window_ms = window_ms;
	memset(log_rl, 0, sizeof(log_rl));
	pthread_mutex_unlock(&log_lock);
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

static int64_t
log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Write one line: stamp, level, component, msg. Called with log_lock held. */
static void
log_emit(int level, const char *msg)
{
	char line[1024], stamp[32];
	struct timeval tv;
	struct tm tm;
	int n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One write per line, so lines from several processes do not interleave. */
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s: %s\n", stamp, (long)(tv.tv_usec / 1000),
	             level_names[level], log_component, msg);
	if (n >= (int)sizeof(line)) /* cut short: keep the newline */
		line[sizeof(line) - 2] = '\n';
	fputs(line, stderr);
	fflush(stderr);
}

/* The window of r is over: say what it held back, and start a new one. Lock held. */
static void
log_rl_close(struct log_rl *r, int64_t now)
{
	if (r->suppressed > 0) {
		char msg[400];

		snprintf(msg, sizeof(msg), "%u similar line%s suppressed in %llds, the last: %s",
		         r->suppressed, r->suppressed == 1 ? "" : "s",
		         (long long)((now - r->window_start) / 1000), r->last);
		log_emit(r->level, msg);
	}
	r->window_start = now;
	r->lines = 0;
	r->suppressed = 0;
}

/* The slot of the call site fmt, or NULL when the table is full (then nothing is limited). */
static struct log_rl *
log_rl_slot(const char *fmt)
{
	size_t h = ((uintptr_t)fmt >> 3) % LOG_RL_SLOTS;

	for (size_t i = 0; i < LOG_RL_SLOTS; i++) {
		struct log_rl *r = &log_rl[(h + i) % LOG_RL_SLOTS];

		if (r->fmt == fmt)
			return r;
		if (r->fmt == NULL) {
			r->fmt = fmt;
			return r;
		}
	}
	return NULL;
}

void
log_tick(void)
{
	int64_t now = log_now_ms();

	pthread_mutex_lock(&log_lock);
	for (size_t i = 0; i < LOG_RL_SLOTS; i++)
		if (log_rl[i].fmt != NULL && log_rl[i].suppressed > 0 &&
		    now - log_rl[i].window_start >= log_window_ms)
			log_rl_close(&log_rl[i], now);
	pthread_mutex_unlock(&log_lock);
}

void
log_write(int level, const char *fmt, ...)
{
	struct log_rl *r = NULL;
	char msg[900];
	va_list ap;

	if (level < 0 || level > LOG_DEBUG)
		level = LOG_INFO;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	/* Only warnings and worse are what a peer can make repeat (refused connections, failed
	 * handshakes, bad frames); info and notice lines record changes the cluster itself made,
	 * such as an admin removing sixty nodes in a loop, and each of them matters. */
	if (level <= LOG_WARNING && log_burst > 0)
		r = log_rl_slot(fmt);
	if (r != NULL) {
		int64_t now = log_now_ms();

		if (now - r->window_start >= log_window_ms)
			log_rl_close(r, now);
		if (++r->lines > log_burst) {
			r->suppressed++;
			r->level = level;
			size_t k = strnlen(msg, sizeof(r->last) - 1);

			memcpy(r->last, msg, k);
			r->last[k] = '\0';
			pthread_mutex_unlock(&log_lock);
			return;
		}
	}
	log_emit(level, msg);
	pthread_mutex_unlock(&log_lock);
}
