#include "vip.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint32_t
fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 16777619u;
	}
	return h;
}

static const struct vip_input *sort_in;

static int
by_age(const void *a, const void *b)
{
	const struct vip_input *x = &sort_in[*(const size_t *)a], *y = &sort_in[*(const size_t *)b];

	if (x->created_ms != y->created_ms)
		return x->created_ms < y->created_ms ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Not the range's first or last address, nor one ending in .0 or .255 (tools take those for a
 * network or broadcast address). */
static bool
usable(uint32_t host)
{
	uint8_t last = (uint8_t)host;

	return host != 0 && host != (1u << (32 - VIP_PREFIX)) - 1 && last != 0 && last != 255;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
vip_assign(const struct vip_input *in, size_t n, uint32_t *out)
{
	const uint32_t size = 1u << (32 - VIP_PREFIX);
	size_t *order = xcalloc(n ? n : 1, sizeof(*order));
	uint32_t *taken = xcalloc(n ? n : 1, sizeof(*taken));
	size_t ntaken = 0;

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	sort_in = in;
	qsort(order, n, sizeof(*order), by_age);
	sort_in = NULL;
	for (size_t k = 0; k < n; k++) {
		uint32_t host = fnv1a(in[order[k]].name) % size;
		/* n is far below the range's million addresses: the probe ends. */
		for (;;) {
			if (usable(host) &&
			    bsearch(&host, taken, ntaken, sizeof(*taken), cmp_u32) == NULL)
				break;
			host = (host + 1) % size;
		}
		out[order[k]] = VIP_NET | host;
		/* Kept sorted for the lookups: insertion, as n is small. */
		size_t j = ntaken++;
		while (j > 0 && taken[j - 1] > host) {
			taken[j] = taken[j - 1];
			j--;
		}
		taken[j] = host;
	}
	free(order);
	free(taken);
}
