#include "backoff.h"

#include "util.h"

int64_t
backoff_ms(const struct backoff *b, int step)
{
	int64_t ms = b->base_ms;

	/* Stop at the cap: a large step never overflows. */
	for (int i = 0; i < step && ms < b->cap_ms; i++)
		ms *= 2;
	return ms > b->cap_ms ? b->cap_ms : ms;
}

int64_t
backoff_delay_ms(const struct backoff *b, int step)
{
	return util_jitter(backoff_ms(b, step), b->jitter_pct);
}
