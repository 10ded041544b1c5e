#ifndef SHOAL_COMMON_TIMER_H
#define SHOAL_COMMON_TIMER_H

#include <stdint.h>

struct event;

/* event_add with a timeout of ms milliseconds (the timers the daemons arm in ms). */
void timer_add_ms(struct event *ev, int64_t ms);

#endif
