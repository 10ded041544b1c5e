#include "retired.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "runtime/container.h"
#include "util.h"

void
retired_slot_of(const char *name, char *out, size_t outlen)
{
	const char *dot = strrchr(name, '.');
	size_t n = dot && dot != name ? (size_t)(dot - name) : strlen(name);

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, name, n);
	out[n] = '\0';
}

/* Newest finished first. */
static int
by_finished_desc(const void *a, const void *b)
{
	const struct container *x = *(struct container *const *)a,
	                       *y = *(struct container *const *)b;

	return (x->finished_ms < y->finished_ms) - (x->finished_ms > y->finished_ms);
}

size_t
retired_prune(const char *root, const char *gone_service, struct shoal_err *err)
{
	struct container **v, **ended;
	size_t n = 0, ne = 0, kept = 0, removed = 0;

	err->msg[0] = '\0';
	v = container_list(root, &n, err);
	if (v == NULL)
		return 0;
	ended = xcalloc(n ? n : 1, sizeof(*ended));
	for (size_t i = 0; i < n; i++)
		if (v[i]->status == CONTAINER_EXITED && !container_alive(v[i]) && v[i]->spec.name)
			ended[ne++] = v[i];
	qsort(ended, ne, sizeof(*ended), by_finished_desc);
	for (size_t i = 0; i < ne; i++) {
		char slot[256], other[256];
		size_t same = 0;
		struct shoal_err e2;

		retired_slot_of(ended[i]->spec.name, slot, sizeof(slot));
		for (size_t k = 0; k < i; k++) {
			if (ended[k] == NULL)
				continue;
			retired_slot_of(ended[k]->spec.name, other, sizeof(other));
			same += strcmp(slot, other) == 0;
		}
		bool gone = gone_service &&
		            strncmp(ended[i]->spec.name, gone_service, strlen(gone_service)) == 0 &&
		            ended[i]->spec.name[strlen(gone_service)] == '.';
		if (!gone && same < RETIRED_PER_SLOT && kept < RETIRED_MAX) {
			kept++;
			continue;
		}
		if (container_remove(ended[i], true, &e2) == -1)
			shoal_log(LOG_WARNING, "retired %s: %s", ended[i]->spec.name, e2.msg);
		else
			removed++;
		ended[i] = NULL;
	}
	free(ended);
	container_list_free(v, n);
	return removed;
}
