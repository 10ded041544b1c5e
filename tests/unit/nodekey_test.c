/* Unit tests for common/nodekey: a node's identity key on disk, and what its signature proves. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "nodekey.h"
#include "util.h"

static char dir[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shoal-nodekey-test.XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	cleanup_free char *cmd = xasprintf("rm -rf '%s'", dir);

	(void)state;
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_create_then_load(void **state)
{
	cleanup_free char *path = xasprintf("%s/node.key", dir);
	struct nodekey a, b;
	struct shoal_err err;
	struct stat sb;
	bool created;

	(void)state;
	assert_int_equal(nodekey_load_or_create(path, &a, &created, &err), 0);
	assert_true(created);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* A restart finds the same identity. */
	assert_int_equal(nodekey_load_or_create(path, &b, &created, &err), 0);
	assert_false(created);
	assert_memory_equal(a.pk, b.pk, sizeof(a.pk));
	assert_memory_equal(a.sk, b.sk, sizeof(a.sk));
}

static void
test_refuses_bad_files(void **state)
{
	cleanup_free char *path = xasprintf("%s/node.key", dir);
	struct nodekey k;
	struct shoal_err err;
	bool created;

	(void)state;
	/* Not a key: an error, never a fresh identity in its place. */
	assert_int_equal(util_write_file_atomic(path, "nonsense\n", 9, 0600, &err), 0);
	assert_int_equal(nodekey_load_or_create(path, &k, &created, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	assert_false(created);
	/* A key others can read may have leaked. */
	unlink(path);
	assert_int_equal(nodekey_load_or_create(path, &k, &created, &err), 0);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(nodekey_load_or_create(path, &k, &created, &err), -1);
	assert_non_null(strstr(err.msg, "readable by others"));
}

static void
test_signature_binds_session_and_key(void **state)
{
	uint8_t b1[32], b2[32], sig[NODEKEY_SIG_BYTES];
	struct nodekey k, other;
	char fp[NODEKEY_FP_LEN], fp2[NODEKEY_FP_LEN];

	(void)state;
	crypto_sign_keypair(k.pk, k.sk);
	crypto_sign_keypair(other.pk, other.sk);
	randombytes_buf(b1, sizeof(b1));
	randombytes_buf(b2, sizeof(b2));
	nodekey_sign(&k, b1, sizeof(b1), sig);
	assert_true(nodekey_verify(k.pk, b1, sizeof(b1), sig));
	/* Replayed on another connection: no. Claimed for another key: no. */
	assert_false(nodekey_verify(k.pk, b2, sizeof(b2), sig));
	assert_false(nodekey_verify(other.pk, b1, sizeof(b1), sig));
	/* A plain Ed25519 signature of the binding (no context) does not pass either. */
	crypto_sign_detached(sig, NULL, b1, sizeof(b1), k.sk);
	assert_false(nodekey_verify(k.pk, b1, sizeof(b1), sig));
	assert_int_equal(strlen(nodekey_fingerprint(k.pk, fp)), 16);
	assert_string_not_equal(fp, nodekey_fingerprint(other.pk, fp2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_create_then_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_bad_files, setup, teardown),
	    cmocka_unit_test(test_signature_binds_session_and_key),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("nodekey", tests, NULL, NULL);
}
