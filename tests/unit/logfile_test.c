/* Unit tests for runtime/logfile: the shim's timestamped records and what readers make of
 * them (tail, since, timestamps, fragments, older raw logs); common/when's --since. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "err.h"
#include "runtime/logfile.h"
#include "util.h"
#include "when.h"

#define T0 1764843864000000000LL /* 2025-12-04T10:24:24Z in ns */

static char dir[] = "/tmp/logfile-test.XXXXXX";

static void
append(int stream, int64_t ns, const char *data)
{
	cleanup_free char *p = xasprintf("%s/log", dir);
	char *rec = malloc(strlen(data) + LOGFILE_HEADER_MAX * (strlen(data) + 1));
	size_t n = logfile_encode(rec, stream, ns, data, strlen(data));
	FILE *f = fopen(p, "a");

	assert_non_null(f);
	fwrite(rec, 1, n, f);
	fclose(f);
	free(rec);
}

static char *
read_all(const struct logfile_opts *o)
{
	struct logfile lf;
	struct shoal_err err;
	char *head;
	size_t len;

	assert_int_equal(logfile_open(&lf, dir, o, &head, &len, &err), 0);
	logfile_close(&lf);
	return head;
}

static int
setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	cleanup_free char *cmd = xasprintf("rm -rf %s", dir);
	(void)state;
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void
test_records(void **state)
{
	struct logfile_opts all = {.tail = -1};
	char rec[256];
	size_t n = logfile_encode(rec, 2, T0 + 5, "FATAL\npart", 10);
	char *out;

	(void)state;
	rec[n] = '\0';
	assert_string_equal(rec, "2025-12-04T10:24:24.000000005Z stderr F FATAL\n"
	                         "2025-12-04T10:24:24.000000005Z stderr P part\n");
	append(1, T0, "one\ntw");
	append(2, T0 + 1000000000LL, "ERR\n");
	append(1, T0 + 2000000000LL, "o\nthree\n");
	out = read_all(&all);
	/* A fragment joins its stream's next record (the other stream's line comes between). */
	assert_string_equal(out, "one\ntwERR\no\nthree\n");
	free(out);
	out = read_all(&(struct logfile_opts){.tail = 2});
	assert_string_equal(out, "o\nthree\n");
	free(out);
	/* Since: the line "two" began before it and is skipped whole. */
	out = read_all(&(struct logfile_opts){.tail = -1, .since_ms = T0 / 1000000 + 500});
	assert_string_equal(out, "ERR\nthree\n");
	free(out);
	out = read_all(&(struct logfile_opts){.tail = 1, .timestamps = true});
	assert_string_equal(out, "2025-12-04T10:24:26.000000000Z three\n");
	free(out);
	out = logfile_last(dir, 2, 1024);
	assert_string_equal(out, "o\nthree");
	free(out);
	out = logfile_last(dir, 5, 6);
	assert_string_equal(out, "three");
	free(out);
}

static void
test_raw_log(void **state)
{
	cleanup_free char *p = xasprintf("%s/log.1", dir);
	FILE *f = fopen(p, "w");
	char *out;

	(void)state;
	/* A log written before records: its lines come out as they are, before log's. */
	fputs("old raw line\nanother\n", f);
	fclose(f);
	out = read_all(&(struct logfile_opts){.tail = 5});
	assert_string_equal(out, "another\none\ntwERR\no\nthree\n");
	free(out);
}

static void
test_when(void **state)
{
	int64_t ms;

	(void)state;
	assert_int_equal(when_parse("2025-12-04T10:24:24Z", 0, &ms), 0);
	assert_int_equal(ms, T0 / 1000000);
	assert_int_equal(when_parse("2025-12-04T11:24:24.250+01:00", 0, &ms), 0);
	assert_int_equal(ms, T0 / 1000000 + 250);
	assert_int_equal(when_parse("90s", 100000, &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(when_parse("2h", 7200000, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(when_parse("5", 0, &ms), -1);
	assert_int_equal(when_parse("yesterday", 0, &ms), -1);
	assert_int_equal(when_parse("2025-13-04T10:24:24Z", 0, &ms), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records),
	    cmocka_unit_test(test_raw_log),
	    cmocka_unit_test(test_when),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
