#ifndef SHOAL_COMMON_BACKOFF_H
#define SHOAL_COMMON_BACKOFF_H

#include <stdint.h>

/*
 * Exponential back-off between retries: a base delay doubled at each step up to a cap, with
 * an optional random spread so that many clients failing together do not retry together.
 * Each caller keeps its own numbers in one const struct beside the code that retries.
 */
struct backoff {
	int64_t base_ms; /* the delay before the first retry (step 0) */
	int64_t cap_ms;  /* no delay above this, however many steps */
	int jitter_pct;  /* backoff_delay_ms spreads the delay by +/- this percentage; 0: none */
};

/* The delay at step (0 for the first retry, negative counts as 0): base_ms * 2^step, at most
 * cap_ms, before jitter. */
int64_t backoff_ms(const struct backoff *b, int step);

/* backoff_ms with b's jitter applied: what to arm the retry timer with. */
int64_t backoff_delay_ms(const struct backoff *b, int step);

#endif
