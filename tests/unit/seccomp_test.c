/* Unit tests for runtime/seccomp: the default filter compiles, is cached on disk, and the
 * cached copy is what the next process loads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <linux/filter.h>

#include "err.h"
#include "util.h"
#include "runtime/seccomp.h"

static void
test_compile_and_cache(void **state)
{
	char dir[] = "/tmp/shoal-sctest-XXXXXX";
	struct shoal_err err;
	const struct sock_fprog *p, *q;
	size_t len = 0;
	void *bpf;

	(void)state;
	bpf = seccomp_compile_default(&len, &err);
	assert_non_null(bpf);
	assert_true(len > 0);
	assert_int_equal(len % sizeof(struct sock_filter), 0);

	assert_non_null(mkdtemp(dir));
	p = seccomp_default_prog(dir, &err);
	assert_non_null(p);
	assert_int_equal(p->len * sizeof(struct sock_filter), len);
	assert_memory_equal(p->filter, bpf, len);
	/* Built once per process: the same program again, no new compile. */
	q = seccomp_default_prog(dir, &err);
	assert_ptr_equal(p, q);

	/* The cache file holds exactly the program. */
	cleanup_free char *cmd = xasprintf("cmp -s %s/seccomp-default-r1-*.bpf /dev/stdin", dir);
	FILE *f = popen(cmd, "w");
	assert_non_null(f);
	fwrite(bpf, 1, len, f);
	assert_int_equal(pclose(f), 0);
	free(bpf);
	cleanup_free char *rm = xasprintf("rm -rf %s", dir);
	assert_int_equal(system(rm), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compile_and_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
