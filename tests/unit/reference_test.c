/* Unit tests for common/reference: Docker's reference grammar and its normalisation (cases
 * from github.com/distribution/reference's normalize_test.go and reference_test.go). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "reference.h"

#define HEX "ffd7ad58e1a1c1a0a3b5e1c5e1e1f7f2b0bd7b5a4c5c6a4c2e3f0d2f9b3c1a0e"

/* Each valid input with its full normalised form and its familiar form. */
static const struct {
	const char *in, *full, *familiar;
} valid[] = {
    {"busybox", "docker.io/library/busybox:latest", "busybox:latest"},
    {"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"},
    {"library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
    {"docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
    {"docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"},
    {"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"},
    {"local/nginx:docker", "docker.io/local/nginx:docker", "local/nginx:docker"},
    {"docker.io/local/nginx:docker", "docker.io/local/nginx:docker", "local/nginx:docker"},
    {"shoal/web:1", "docker.io/shoal/web:1", "shoal/web:1"},
    {"localhost/web", "localhost/web:latest", "localhost/web:latest"},
    {"localhost:5000/shoal/web:2", "localhost:5000/shoal/web:2", "localhost:5000/shoal/web:2"},
    {"192.168.56.10:5000/shoal/web:1", "192.168.56.10:5000/shoal/web:1",
     "192.168.56.10:5000/shoal/web:1"},
    {"registry.example.com/a/b/c/d", "registry.example.com/a/b/c/d:latest",
     "registry.example.com/a/b/c/d:latest"},
    {"Example.COM/x", "Example.COM/x:latest", "Example.COM/x:latest"},
    {"[::1]:5000/x:t", "[::1]:5000/x:t", "[::1]:5000/x:t"},
    {"a.b-c.d:443/x", "a.b-c.d:443/x:latest", "a.b-c.d:443/x:latest"},
    {"foo_bar.com:8080/x", NULL, NULL},
    /* found by tests/fuzz/reference.c: a first path component that looks like a host keeps
     * docker.io/ in the familiar form, or it would name registry foo.com */
    {"docker.io/foo.com/bar", "docker.io/foo.com/bar:latest", "docker.io/foo.com/bar:latest"},
    {"docker.io/localhost/bar", "docker.io/localhost/bar:latest", "docker.io/localhost/bar:latest"},
    {"foo.com/bar", "foo.com/bar:latest", "foo.com/bar:latest"},
    {"library/" HEX, "docker.io/library/" HEX ":latest",
     "library/" HEX ":latest"}, /* "_" in a host: checked below as invalid */
    {"a__b/c--d/e.f/g_h", "docker.io/a__b/c--d/e.f/g_h:latest", "a__b/c--d/e.f/g_h:latest"},
    {"x:TAG_1.2-b", "docker.io/library/x:TAG_1.2-b", "x:TAG_1.2-b"},
    {"x:_t", "docker.io/library/x:_t", "x:_t"},
    {"x@sha256:" HEX, "docker.io/library/x@sha256:" HEX, "x@sha256:" HEX},
    {"x:1@sha256:" HEX, "docker.io/library/x:1@sha256:" HEX, "x:1@sha256:" HEX},
    {"localhost:5000/x@sha256:" HEX, "localhost:5000/x@sha256:" HEX,
     "localhost:5000/x@sha256:" HEX},
};

static void
test_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		struct reference r;
		struct shoal_err err = {0};
		char *full, *fam;

		if (valid[i].full == NULL)
			continue;
		if (reference_parse(valid[i].in, &r, &err) != 0)
			fail_msg("%s: %s", valid[i].in, err.msg);
		full = reference_string(&r);
		fam = reference_familiar(&r);
		if (strcmp(full, valid[i].full) != 0 || strcmp(fam, valid[i].familiar) != 0)
			fail_msg("%s: got %s / %s", valid[i].in, full, fam);
		free(full);
		free(fam);
		reference_free(&r);
	}
}

/* Each invalid input and a word its message must hold. */
static const struct {
	const char *in, *why;
} invalid[] = {
    {"", "empty"},
    {"../../x:1", "\"..\""},
    {"../x", "\"..\""},
    {"a/../b", "\"..\""},
    {"UPPER/x", "lowercase"},
    {"Busybox", "lowercase"},
    {"docker.io/Library/x", "lowercase"},
    {"x:../y", "port"},
    {"x y", "invalid character"},
    {"x;rm", "invalid character"},
    {"x\n", "invalid character"},
    {"x$(id)", "invalid character"},
    {"x:", "invalid tag"},
    {"x:.t", "invalid tag"},
    {"x:-t", "invalid tag"},
    {"x:a/b", "invalid"},
    {"/x", "empty path component"},
    {"x/", "empty path component"},
    {"a//b", "empty path component"},
    {"-x", "path component"},
    {"x-", "path component"},
    {"x.", "path component"},
    {"a___b", "path component"},
    {"a_.b", "path component"},
    {"x@sha256:abc", "invalid digest"},
    {"x@md5:" HEX, "unsupported digest algorithm"},
    {"x@sha256:" HEX "@sha256:" HEX, "more than one"},
    {"x@", "invalid digest"},
    {"@sha256:" HEX, "missing repository name"},
    {":t", "missing repository name"},
    {"foo_bar.com:8080/x", "registry host"},
    {"-a.com/x", "registry host"},
    {"a.com:0/x", "port"},
    {"a.com:65536/x", "port"},
    {"a.com:/x", "port"},
    {"[zz/x", "IPv6"},
    {"[a.b..c::1]:5000/x", "IPv6"}, /* found by tests/fuzz/reference.c: ".." in a host */
    {"[]:5000/x", "IPv6"},
    {HEX, "image ID"},
};

static void
test_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		struct reference r;
		struct shoal_err err = {0};

		if (reference_parse(invalid[i].in, &r, &err) != -1)
			fail_msg("\"%s\" accepted", invalid[i].in);
		if (strstr(err.msg, "invalid reference \"") != err.msg ||
		    strstr(err.msg, invalid[i].why) == NULL)
			fail_msg("\"%s\": message \"%s\" lacks \"%s\"", invalid[i].in, err.msg,
			         invalid[i].why);
		assert_null(r.domain);
		assert_null(r.path);
	}
}

static void
test_lengths(void **state)
{
	struct reference r;
	struct shoal_err err;
	char name[300], tag[140];

	(void)state;
	/* 255 characters in all is the limit, domain included. */
	memset(name, 'a', sizeof(name));
	memcpy(name, "library/", 8);
	name[255 - strlen("docker.io/")] = '\0';
	assert_int_equal(reference_parse(name, &r, &err), 0);
	reference_free(&r);
	name[255 - strlen("docker.io/")] = 'a';
	name[256 - strlen("docker.io/")] = '\0';
	assert_int_equal(reference_parse(name, &r, &err), -1);
	assert_non_null(strstr(err.msg, "255"));
	/* Tags: 128 characters. */
	memset(tag, 't', sizeof(tag));
	memcpy(tag, "x:", 2);
	tag[2 + 128] = '\0';
	assert_int_equal(reference_parse(tag, &r, &err), 0);
	reference_free(&r);
	tag[2 + 128] = 't';
	tag[2 + 129] = '\0';
	assert_int_equal(reference_parse(tag, &r, &err), -1);
}

static void
test_parts(void **state)
{
	struct reference r;
	struct shoal_err err;
	char *s;

	(void)state;
	assert_int_equal(reference_parse("localhost:5000/shoal/web@sha256:" HEX, &r, &err), 0);
	assert_string_equal(r.domain, "localhost:5000");
	assert_string_equal(r.path, "shoal/web");
	assert_null(r.tag); /* a digest alone gets no :latest */
	assert_string_equal(r.digest, "sha256:" HEX);
	s = reference_familiar_name(&r);
	assert_string_equal(s, "localhost:5000/shoal/web");
	free(s);
	reference_free(&r);
	reference_free(&r); /* twice is harmless */

	assert_int_equal(reference_parse("nginx", &r, &err), 0);
	s = reference_name(&r);
	assert_string_equal(s, "docker.io/library/nginx");
	free(s);
	s = reference_familiar_name(&r);
	assert_string_equal(s, "nginx");
	free(s);
	reference_free(&r);

	/* A non-printable byte never reaches the message as is. */
	assert_int_equal(reference_parse("x\x1b[2J", &r, &err), -1);
	assert_null(strchr(err.msg, '\x1b'));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_lengths),
	    cmocka_unit_test(test_parts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
