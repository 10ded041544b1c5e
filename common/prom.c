#include "prom.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

void
prom_hist_init(struct prom_hist *h, const double *bounds, size_t nbounds)
{
	memset(h, 0, sizeof(*h));
	h->nbounds = nbounds < PROM_MAX_BUCKETS ? nbounds : PROM_MAX_BUCKETS;
	memcpy(h->bounds, bounds, h->nbounds * sizeof(*bounds));
}

void
prom_hist_observe(struct prom_hist *h, double v)
{
	size_t i = 0;

	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

void
prom_family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
put_value(struct evbuffer *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '"')
			evbuffer_add(out, "\\\"", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* name{k="v",...,extra_k="extra_v"} with a space after it. */
static void
put_name(struct evbuffer *out, const char *name, const char *suffix, const char *const *labels,
         const char *extra_k, const char *extra_v)
{
	bool first = true;

	evbuffer_add_printf(out, "%s%s", name, suffix);
	if ((labels == NULL || labels[0] == NULL) && extra_k == NULL) {
		evbuffer_add(out, " ", 1);
		return;
	}
	evbuffer_add(out, "{", 1);
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		evbuffer_add_printf(out, "%s%s=\"", first ? "" : ",", labels[i]);
		put_value(out, labels[i + 1]);
		evbuffer_add(out, "\"", 1);
		first = false;
	}
	if (extra_k) {
		evbuffer_add_printf(out, "%s%s=\"", first ? "" : ",", extra_k);
		put_value(out, extra_v);
		evbuffer_add(out, "\"", 1);
	}
	evbuffer_add(out, "} ", 2);
}

static void
put_double(struct evbuffer *out, double v)
{
	if (isnan(v))
		evbuffer_add_printf(out, "NaN\n");
	else if (isinf(v))
		evbuffer_add_printf(out, "%s\n", v > 0 ? "+Inf" : "-Inf");
	else
		evbuffer_add_printf(out, "%.17g\n", v);
}

void
prom_sample(struct evbuffer *out, const char *name, const char *const *labels, double v)
{
	put_name(out, name, "", labels, NULL, NULL);
	put_double(out, v);
}

void
prom_sample_u64(struct evbuffer *out, const char *name, const char *const *labels, uint64_t v)
{
	put_name(out, name, "", labels, NULL, NULL);
	evbuffer_add_printf(out, "%llu\n", (unsigned long long)v);
}

void
prom_hist_write(struct evbuffer *out, const char *name, const char *const *labels,
                const struct prom_hist *h)
{
	uint64_t cum = 0;
	char le[32];

	for (size_t i = 0; i < h->nbounds; i++) {
		cum += h->counts[i];
		snprintf(le, sizeof(le), "%g", h->bounds[i]);
		put_name(out, name, "_bucket", labels, "le", le);
		evbuffer_add_printf(out, "%llu\n", (unsigned long long)cum);
	}
	put_name(out, name, "_bucket", labels, "le", "+Inf");
	evbuffer_add_printf(out, "%llu\n", (unsigned long long)h->count);
	put_name(out, name, "_sum", labels, NULL, NULL);
	put_double(out, h->sum);
	put_name(out, name, "_count", labels, NULL, NULL);
	evbuffer_add_printf(out, "%llu\n", (unsigned long long)h->count);
}
