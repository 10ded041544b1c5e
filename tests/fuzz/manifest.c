/* libFuzzer target for the manifest parser: any bytes must parse or fail cleanly, with
 * everything freed, and whatever parses must survive the JSON round trip unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "manifest_check.h"
#include "manifest_json.h"
#include "err.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest_errors errs = {0};
	struct manifest m;

	if (manifest_parse_buffer("fuzz.yaml", (const char *)data, size, &m, &errs) == 0) {
		for (size_t i = 0; i < m.n_services; i++) {
			struct service_spec back, copy;
			struct shoal_err err;
			char *json = manifest_spec_to_json(&m.services[i]);

			/* What the CLI accepts, the scheduler's check accepts. */
			SHOAL_ASSERT(manifest_spec_check(&m.services[i], NULL, &errs) == 0);
			SHOAL_ASSERT(manifest_spec_from_json(json, &back, &err) == 0);
			SHOAL_ASSERT(manifest_spec_equal(&m.services[i], &back));
			manifest_spec_copy(&copy, &back);
			SHOAL_ASSERT(manifest_spec_equal(&copy, &back));
			manifest_spec_free(&copy);
			manifest_spec_free(&back);
			free(json);
		}
		SHOAL_ASSERT(errs.n == 0);
	} else {
		SHOAL_ASSERT(errs.n > 0 && m.n_services == 0);
	}
	manifest_free(&m);
	manifest_errors_free(&errs);
	return 0;
}
