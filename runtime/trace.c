#include "trace.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* -2: not looked at yet; -1: off; else the trace file. */
static int trace_fd = -2;

void
trace_init(void)
{
	const char *path;

	if (trace_fd != -2)
		return;
	path = getenv("SHOALRT_TRACE");
	trace_fd =
	    path && path[0] ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
}

void
trace_mark(const char *phase)
{
	struct timespec mono, real;
	char line[160];
	int n;

	if (trace_fd == -1)
		return;
	trace_init();
	if (trace_fd < 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	n = snprintf(line, sizeof(line), "%s %d %lld %lld\n", phase, (int)getpid(),
	             (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec,
	             (long long)real.tv_sec * 1000000LL + real.tv_nsec / 1000);
	/* One write of one line with O_APPEND: lines of concurrent processes never interleave. */
	if (n > 0 && (size_t)n < sizeof(line))
		(void)!write(trace_fd, line, (size_t)n);
}

void
trace_reopen(void)
{
	if (trace_fd >= 0)
		trace_fd = -2;
}
