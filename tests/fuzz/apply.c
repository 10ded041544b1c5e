/* libFuzzer target for the scheduler's Apply: any request body (one spec JSON per line) is
 * applied or refused whole, with everything freed; a refused one changes nothing, and every
 * service an accepted one leaves in memory passes manifest_spec_check, the CLI's own check. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "err.h"
#include "log.h"
#include "manifest_check.h"
#include "manifest_spec.h"
#include "scheduler/server.h"
#include "scheduler/service.h"
#include "scheduler/service_apply.h"
#include "scheduler/store.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store store;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sched_server srv;
	struct manifest_errors errs = {0};
	struct service_changes ch;
	struct shoal_err err;
	char *text = xmalloc(size + 1), *line, *save = NULL;
	char **specs = NULL;
	size_t n = 0;

	memcpy(text, data, size);
	text[size] = '\0';
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		specs = xrealloc(specs, (n + 1) * sizeof(*specs));
		specs[n++] = line;
	}
	/* One in-memory store for the run, emptied per input: opening one costs more than most
	 * inputs do. Quiet: an accepted spec logs a line. */
	if (store.db == NULL) {
		SHOAL_ASSERT(store_open(&store, ":memory:", &err) == 0);
		log_level = LOG_ERR;
	}
	memset(&srv, 0, sizeof(srv));
	srv.store = store;
	/* Twice: the second pass meets the first's services (unchanged, scaled, updated). */
	for (int round = 0; round < 2; round++) {
		size_t before = srv.services.n;
		if (service_apply(&srv, specs, n, &ch, &errs, &err) == -1) {
			SHOAL_ASSERT(srv.services.n == before);
			SHOAL_ASSERT(errs.n > 0 || err.code == EIO);
		} else {
			SHOAL_ASSERT(ch.n == n);
			for (size_t i = 0; i < srv.services.n; i++) {
				struct manifest_errors e = {0};
				SHOAL_ASSERT(
				    manifest_spec_check(&srv.services.v[i]->spec, NULL, &e) == 0);
			}
			service_changes_free(&ch);
		}
		manifest_errors_free(&errs);
	}
	services_free(&srv.services);
	free(srv.dirty_svcs);
	store = srv.store;
	SHOAL_ASSERT(sqlite3_exec(store.db, "DELETE FROM services", NULL, NULL, NULL) == SQLITE_OK);
	free(specs);
	free(text);
	return 0;
}
