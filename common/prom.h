#ifndef SHOAL_COMMON_PROM_H
#define SHOAL_COMMON_PROM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/*
 * Prometheus text exposition, format 0.0.4 (what /metrics of the scheduler and the agents
 * serve): a family is a HELP line, a TYPE line, then its samples; label values are escaped
 * (backslash, double quote, newline). Histograms are cumulative buckets with fixed upper
 * bounds, an le="+Inf" bucket equal to _count, and _sum.
 */

#define PROM_MAX_BUCKETS 16

struct prom_hist {
	size_t nbounds;                        /* finite upper bounds in bounds[] */
	double bounds[PROM_MAX_BUCKETS];       /* ascending, in the metric's unit (seconds) */
	uint64_t counts[PROM_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
	double sum;
	uint64_t count;
};

/* Set up h with nbounds ascending bounds (at most PROM_MAX_BUCKETS; more are dropped). */
void prom_hist_init(struct prom_hist *h, const double *bounds, size_t nbounds);
void prom_hist_observe(struct prom_hist *h, double v);

/* "# HELP name help\n# TYPE name type\n"; type is counter, gauge or histogram. */
void prom_family(struct evbuffer *out, const char *name, const char *type, const char *help);

/*
 * One sample: name{labels} value. labels is NULL or "k", "v", "k", "v", ... NULL (values
 * escaped here, keys are the caller's constants).
 */
void prom_sample(struct evbuffer *out, const char *name, const char *const *labels, double v);
/* The same for an integer (exact past 2^53, as a counter of bytes may be). */
void prom_sample_u64(struct evbuffer *out, const char *name, const char *const *labels, uint64_t v);

/* The samples of a histogram family (after prom_family): _bucket..., _sum, _count. */
void prom_hist_write(struct evbuffer *out, const char *name, const char *const *labels,
                     const struct prom_hist *h);

#endif
