#include "timer.h"

#include <sys/time.h>

#include <event2/event.h>

void
timer_add_ms(struct event *ev, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	event_add(ev, &tv);
}
