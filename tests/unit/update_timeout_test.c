/* Unit tests for the manifest's update.timeout (common/manifest): parsed with the other update
 * fields, refused at FILE:LINE:COL when it is no duration, by the shared check past the CLI,
 * and kept out of the stored JSON while it has its default (old rows keep their exact text). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "manifest.h"
#include "manifest_check.h"
#include "manifest_json.h"
#include "util.h"

static int
parse(const char *text, struct manifest *m, struct manifest_errors *errs)
{
	memset(errs, 0, sizeof(*errs));
	return manifest_parse_buffer("m.yaml", text, strlen(text), m, errs);
}

static void
test_parsed_and_stored(void **state)
{
	struct manifest m;
	struct manifest_errors errs;
	struct service_spec back;
	struct shoal_err err;
	char *json;

	(void)state;
	assert_int_equal(parse("service: web\nimage: x\nupdate: {timeout: 10m}\n", &m, &errs), 0);
	assert_int_equal(m.services[0].update.timeout_ms, 600000);
	json = manifest_spec_to_json(&m.services[0]);
	assert_non_null(strstr(json, "\"timeout_ms\":600000"));
	assert_int_equal(manifest_spec_from_json(json, &back, &err), 0);
	assert_int_equal(back.update.timeout_ms, 600000);
	assert_true(manifest_spec_equal(&back, &m.services[0]));
	back.update.timeout_ms = 0; /* 0 waits for ever: a change */
	assert_false(manifest_spec_equal(&back, &m.services[0]));
	manifest_spec_free(&back);
	free(json);
	manifest_free(&m);

	/* The default: 5 minutes, and not written (a spec stored before the field reads the
	 * same). */
	assert_int_equal(parse("service: web\nimage: x\n", &m, &errs), 0);
	assert_int_equal(m.services[0].update.timeout_ms, MANIFEST_UPDATE_TIMEOUT_MS);
	json = manifest_spec_to_json(&m.services[0]);
	assert_null(strstr(json, "timeout_ms\":300000"));
	assert_int_equal(manifest_spec_from_json(json, &back, &err), 0);
	assert_int_equal(back.update.timeout_ms, MANIFEST_UPDATE_TIMEOUT_MS);
	manifest_spec_free(&back);
	free(json);
	manifest_free(&m);
}

static void
test_refused_where_it_stands(void **state)
{
	struct manifest m;
	struct manifest_errors errs;
	struct service_spec spec;

	(void)state;
	assert_int_equal(parse("service: web\nimage: x\nupdate:\n  timeout: soon\n", &m, &errs),
	                 -1);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.lines[0], "m.yaml:4:12: update.timeout"));
	manifest_errors_free(&errs);
	manifest_free(&m);

	/* Past the CLI (a crafted JSON spec), the shared check says the same. */
	manifest_spec_init(&spec);
	spec.name = xstrdup("web");
	spec.image = xstrdup("x");
	spec.update.timeout_ms = -1;
	memset(&errs, 0, sizeof(errs));
	assert_int_equal(manifest_spec_check(&spec, "service web: ", &errs), -1);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.lines[0], "service web: update.timeout: must be between 0"));
	manifest_errors_free(&errs);
	manifest_spec_free(&spec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parsed_and_stored),
	    cmocka_unit_test(test_refused_where_it_stands),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
