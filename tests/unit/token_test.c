/* Unit tests for common/token: the join token a user copies between machines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "token.h"

#define HASH_HEX   "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define SECRET_HEX "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2"

static void
test_round_trip(void **state)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t hash[TOKEN_HASH_BYTES];
	struct token t, u;
	struct shoal_err err;
	char s[TOKEN_STRLEN];

	(void)state;
	crypto_sign_keypair(pk, sk);
	token_generate(TOKEN_ROLE_WORKER, pk, &t);
	token_format(&t, s, sizeof(s));
	assert_int_equal(strlen(s), TOKEN_STRLEN - 1);
	assert_memory_equal(s, "SHOAL1-worker-", 14);
	assert_int_equal(token_parse(s, &u, &err), 0);
	assert_int_equal(u.role, TOKEN_ROLE_WORKER);
	assert_memory_equal(u.secret, t.secret, TOKEN_SECRET_BYTES);
	token_ca_hash(pk, hash);
	assert_memory_equal(u.ca_hash, hash, TOKEN_HASH_BYTES);

	/* Two tokens for the same key share the hash, never the secret. */
	token_generate(TOKEN_ROLE_ADMIN, pk, &u);
	assert_memory_equal(u.ca_hash, t.ca_hash, TOKEN_HASH_BYTES);
	assert_memory_not_equal(u.secret, t.secret, TOKEN_SECRET_BYTES);
	token_format(&u, s, sizeof(s));
	assert_memory_equal(s, "SHOAL1-admin-", 13);

	/* Whitespace around it, as in a file or a paste, is fine; upper-case hex too. */
	assert_int_equal(token_parse("  SHOAL1-admin-" HASH_HEX "-" SECRET_HEX "\n", &u, &err), 0);
	assert_int_equal(u.role, TOKEN_ROLE_ADMIN);
	assert_int_equal(u.ca_hash[1], 0x11);
	assert_int_equal(u.secret[0], 0x5e);
	token_wipe(&u);
	for (size_t i = 0; i < TOKEN_SECRET_BYTES; i++)
		assert_int_equal(u.secret[i], 0);
}

static void
test_malformed(void **state)
{
	static const char *const bad[] = {
	    "",
	    "   \n",
	    "SHOAL1",
	    "SHOAL2-worker-" HASH_HEX "-" SECRET_HEX,
	    "shoal1-worker-" HASH_HEX "-" SECRET_HEX,
	    "SHOAL1-worker-" HASH_HEX,
	    "SHOAL1-worker-" HASH_HEX "-",
	    "SHOAL1-worker-" HASH_HEX "-" SECRET_HEX "0",
	    "SHOAL1-worker-" HASH_HEX "-" SECRET_HEX "-",
	    "SHOAL1-worker-" HASH_HEX "0-" SECRET_HEX,
	    "SHOAL1-worker-" HASH_HEX
	    "-5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ecz",
	    "SHOAL1-worker-" SECRET_HEX,
	    "SHOAL1-worker--" SECRET_HEX,
	    "SHOAL1-worker-" HASH_HEX " " SECRET_HEX,
	    "SHOAL1-" SECRET_HEX "-" HASH_HEX "-" SECRET_HEX,
	    "SHOAL1-root-" HASH_HEX "-" SECRET_HEX,
	    "SHOAL1--" HASH_HEX "-" SECRET_HEX,
	    "SHOAL1-WORKER-" HASH_HEX "-" SECRET_HEX,
	    "SHOAL1-worker-" HASH_HEX "-" SECRET_HEX " trailing",
	};
	struct token t;
	struct shoal_err err;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&t, 0xaa, sizeof(t));
		err_clear(&err);
		if (token_parse(bad[i], &t, &err) != -1)
			fail_msg("accepted malformed token #%zu", i);
		assert_true(strncmp(err.msg, "token: ", 7) == 0);
		/* The message never echoes the secret, nor any long run of the input. */
		assert_null(strstr(err.msg, "5ec2e7"));
		assert_null(strstr(err.msg, "00112233"));
		/* A failed parse leaves *t alone. */
		assert_int_equal(t.secret[0], 0xaa);
	}
	token_parse("SHOAL1-root-" HASH_HEX "-" SECRET_HEX, &t, &err);
	assert_string_equal(err.msg, "token: unknown role (want worker, admin or read)");
	token_parse("SHOAL1-worker-" HASH_HEX, &t, &err);
	assert_string_equal(err.msg, "token: malformed (expected SHOAL1-<role>-<hash>-<secret>)");
}

static void
test_role_names(void **state)
{
	(void)state;
	assert_string_equal(token_role_name(TOKEN_ROLE_WORKER), "worker");
	assert_string_equal(token_role_name(TOKEN_ROLE_ADMIN), "admin");
	assert_string_equal(token_role_name(TOKEN_ROLE_NONE), "none");
	assert_string_equal(token_role_name((enum token_role)42), "none");
}

static void
test_load(void **state)
{
	char path[] = "/tmp/shoal-token-test.XXXXXX";
	const char *s = "SHOAL1-worker-" HASH_HEX "-" SECRET_HEX "\n";
	struct token t;
	struct shoal_err err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
	assert_int_equal(token_load(path, &t, &err), 0);
	assert_int_equal(t.role, TOKEN_ROLE_WORKER);
	assert_int_equal(t.secret[31], 0xc2);

	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "SHOAL1-worker-" SECRET_HEX "\n", 79), 79);
	close(fd);
	assert_int_equal(token_load(path, &t, &err), -1);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "token: malformed"));
	assert_null(strstr(err.msg, "5ec2e7"));
	unlink(path);

	assert_int_equal(token_load(path, &t, &err), -1);
	assert_non_null(strstr(err.msg, "No such file or directory"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_role_names),
	    cmocka_unit_test(test_load),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
