/* Unit tests for runtime/registry and runtime/regauth without a network: manifest types as
 * registries serve them, the WWW-Authenticate challenge parser, auth.json credentials. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "runtime/oci.h"
#include "runtime/regauth.h"
#include "runtime/registry.h"

#define D(c)                                                                                       \
	"sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  \
	    c c c c c c c c c c c c c c c c c c c c c c c c

#define OCI_MANIFEST_NO_TYPE                                                                       \
	"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+"    \
	"json\",\"digest\":\"" D(                                                                  \
	    "a") "\",\"size\":10},\"layers\":[{\"mediaType\":"                                     \
	         "\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D(                \
	             "b") "\",\"size\":20}]}"

#define DOCKER_MANIFEST                                                                            \
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+"    \
	"json\",\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","     \
	"\"digest\":\"" D("a") "\",\"size\":10},\"layers\":[{\"mediaType\":\"application/"         \
	                       "vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D(          \
	                           "b") "\",\"size\":20}]}"

#define DOCKER_LIST                                                                                \
	"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest."       \
	"list.v2+json\",\"manifests\":[{\"mediaType\":\"application/vnd.docker.distribution."      \
	"manifest.v2+json\",\"digest\":\"" D(                                                      \
	    "c") "\",\"size\":5,\"platform\":{\"architecture\":"                                   \
	         "\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},{\"mediaType\":\"application/"   \
	         "vnd."                                                                            \
	         "docker.distribution.manifest.v2+json\",\"digest\":\"" D(                         \
	             "d") "\",\"size\":6,"                                                         \
	                  "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}"

#define SCHEMA1                                                                                    \
	"{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"1\",\"fsLayers\":[],\"signatures\":[]}"

static void
test_manifest_types(void **state)
{
	struct shoal_err err;
	struct oci_manifest m;
	const char *mt;

	(void)state;
	/* umoci writes no mediaType: the Content-Type says, and the layer types still count. */
	mt = registry_manifest_type(OCI_MANIFEST_NO_TYPE, OCI_MT_MANIFEST, &err);
	assert_string_equal(mt, OCI_MT_MANIFEST);
	assert_int_equal(oci_parse_manifest(OCI_MANIFEST_NO_TYPE, mt, &m, &err), 0);
	assert_int_equal(m.nlayers, 1);
	assert_string_equal(m.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
	oci_manifest_free(&m);
	/* Neither field: the shape. */
	assert_string_equal(registry_manifest_type(OCI_MANIFEST_NO_TYPE, NULL, &err),
	                    OCI_MT_MANIFEST);
	assert_string_equal(registry_manifest_type(OCI_MANIFEST_NO_TYPE, "application/json", &err),
	                    OCI_MT_MANIFEST);
	/* The document's own type wins over a header. */
	mt = registry_manifest_type(DOCKER_MANIFEST, "text/plain", &err);
	assert_string_equal(mt, "application/vnd.docker.distribution.manifest.v2+json");
	assert_int_equal(oci_parse_manifest(DOCKER_MANIFEST, mt, &m, &err), 0);
	assert_string_equal(m.config.digest, D("a"));
	oci_manifest_free(&m);
	assert_string_equal(registry_manifest_type(DOCKER_LIST, NULL, &err),
	                    "application/vnd.docker.distribution.manifest.list.v2+json");
	assert_string_equal(
	    registry_manifest_type("{\"schemaVersion\":2,\"manifests\":[]}", NULL, &err),
	    OCI_MT_INDEX);
}

static void
test_manifest_refused(void **state)
{
	struct shoal_err err;

	(void)state;
	assert_null(registry_manifest_type(SCHEMA1, NULL, &err));
	assert_non_null(strstr(err.msg, "schema 1"));
	assert_null(registry_manifest_type(
	    "{\"schemaVersion\":2}", "application/vnd.docker.distribution.manifest.v1+prettyjws",
	    &err));
	assert_non_null(strstr(err.msg, "schema 1"));
	assert_null(registry_manifest_type("{\"schemaVersion\":2,\"mediaType\":\"text/html\"}",
	                                   NULL, &err));
	assert_non_null(strstr(err.msg, "unsupported media type text/html"));
	assert_null(registry_manifest_type("<html>", "text/html", &err));
	assert_non_null(strstr(err.msg, "invalid JSON"));
	assert_null(registry_manifest_type("[1,2]", NULL, &err));
}

static void
test_index_platforms(void **state)
{
	struct shoal_err err;
	struct oci_desc *ds;
	size_t n;

	(void)state;
	assert_int_equal(oci_parse_index(DOCKER_LIST, &ds, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(ds[0].platform, "linux/arm64");
	assert_string_equal(ds[1].platform, "linux/amd64");
	assert_string_equal(ds[1].digest, D("d"));
	oci_descs_free(ds, n);
	assert_non_null(registry_platform());
	assert_non_null(strstr(registry_platform(), "linux/"));
}

static void
test_challenge(void **state)
{
	struct regauth_challenge c;
	struct shoal_err err;

	(void)state;
	assert_int_equal(
	    regauth_parse_challenge("Bearer realm=\"https://auth.docker.io/token\",service="
	                            "\"registry.docker.io\",scope=\"repository:library/"
	                            "busybox:pull\"",
	                            &c, &err),
	    0);
	assert_int_equal(c.scheme, REGAUTH_BEARER);
	assert_string_equal(c.realm, "https://auth.docker.io/token");
	assert_string_equal(c.service, "registry.docker.io");
	assert_string_equal(c.scope, "repository:library/busybox:pull");
	regauth_challenge_free(&c);

	/* Case, spaces, tokens unquoted, escapes, unknown keys, a comma in a quoted scope. */
	assert_int_equal(regauth_parse_challenge("  bearer  realm=http://10.0.0.1:5001/auth , "
	                                         "error=\"insufficient_scope\", scope=\"repository:"
	                                         "a:pull,push\",service=\"q\\\"x\"",
	                                         &c, &err),
	                 0);
	assert_string_equal(c.realm, "http://10.0.0.1:5001/auth");
	assert_string_equal(c.scope, "repository:a:pull,push");
	assert_string_equal(c.service, "q\"x");
	regauth_challenge_free(&c);

	assert_int_equal(regauth_parse_challenge("Basic realm=\"Registry Realm\"", &c, &err), 0);
	assert_int_equal(c.scheme, REGAUTH_BASIC);
	assert_string_equal(c.realm, "Registry Realm");
	assert_null(c.service);
	regauth_challenge_free(&c);
	assert_int_equal(regauth_parse_challenge("BASIC", &c, &err), 0);
	regauth_challenge_free(&c);

	assert_int_equal(regauth_parse_challenge("Bearer service=\"x\"", &c, &err), -1);
	assert_non_null(strstr(err.msg, "without a realm"));
	assert_int_equal(regauth_parse_challenge("Bearer realm=\"file:///etc/passwd\"", &c, &err),
	                 -1);
	assert_int_equal(regauth_parse_challenge("Negotiate abc", &c, &err), -1);
	assert_non_null(strstr(err.msg, "unsupported authentication scheme"));
	assert_int_equal(regauth_parse_challenge("Bearer realm=\"https://x", &c, &err), -1);
	assert_int_equal(regauth_parse_challenge("Bearer realm", &c, &err), -1);
	assert_int_equal(regauth_parse_challenge("Bearer realm=\"https://x\" junk", &c, &err), -1);
	assert_int_equal(regauth_parse_challenge("", &c, &err), -1);
	assert_int_equal(regauth_parse_challenge(NULL, &c, &err), -1);
}

static char *
write_tmp(const char *text)
{
	char *path = strdup("/tmp/registry_test-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
test_auth_file(void **state)
{
	struct regauth_cred c;
	struct shoal_err err;
	char *h;
	/* "alice:s3cr:et" and "bob:pw" in base64. */
	char *path = write_tmp("{\"auths\":{\"localhost:5000\":{\"auth\":\"YWxpY2U6czNjcjpldA==\"},"
	                       "\"https://index.docker.io/v1/\":{\"auth\":\"Ym9iOnB3\"},"
	                       "\"bad:1\":{\"auth\":\"!!!\"},\"nocolon:1\":{\"auth\":\"Ym9i\"},"
	                       "\"https://r.example:443/v2/\":{\"auth\":\"Ym9iOnB3\"}}}");

	(void)state;
	assert_int_equal(regauth_load(path, "localhost:5000", &c, &err), 1);
	assert_string_equal(c.user, "alice");
	assert_string_equal(c.password, "s3cr:et"); /* the first colon splits */
	h = regauth_basic(&c);
	assert_string_equal(h, "Basic YWxpY2U6czNjcjpldA==");
	free(h);
	regauth_cred_free(&c);
	assert_int_equal(regauth_load(path, "docker.io", &c, &err), 1);
	assert_string_equal(c.user, "bob");
	regauth_cred_free(&c);
	assert_int_equal(regauth_load(path, "r.example:443", &c, &err), 1);
	regauth_cred_free(&c);
	assert_int_equal(regauth_load(path, "localhost:5001", &c, &err), 0);
	assert_null(c.user);
	assert_int_equal(regauth_load(path, "bad:1", &c, &err), -1);
	assert_non_null(strstr(err.msg, "not base64"));
	assert_null(strstr(err.msg, "!!!"));
	assert_int_equal(regauth_load(path, "nocolon:1", &c, &err), -1);
	assert_non_null(strstr(err.msg, "user:password"));
	assert_null(strstr(err.msg, "bob"));
	unlink(path);
	free(path);
	/* No file: anonymous. A broken one: an error that quotes nothing of it. */
	assert_int_equal(regauth_load("/nonexistent/auth.json", "x", &c, &err), 0);
	assert_int_equal(regauth_load(NULL, "x", &c, &err), 0);
	path = write_tmp("{\"auths\": {\"x\": {\"auth\": \"c2VjcmV0\"");
	assert_int_equal(regauth_load(path, "x", &c, &err), -1);
	assert_null(strstr(err.msg, "c2VjcmV0"));
	unlink(path);
	free(path);
}

static void
test_same_origin(void **state)
{
	(void)state;
	assert_true(registry_same_origin("http://10.0.0.1:5000", "http://10.0.0.1:5000/v2/x"));
	assert_true(registry_same_origin("http://10.0.0.1:5000", "http://10.0.0.1:5000"));
	assert_true(registry_same_origin("https://r.example", "https://r.example/v2/?a=1"));
	/* Prefixes that are other origins. */
	assert_false(registry_same_origin("http://10.0.0.1:5000", "http://10.0.0.1:50001/v2/"));
	assert_false(registry_same_origin("https://r.example", "https://r.example.evil/v2/"));
	assert_false(registry_same_origin("https://r.example", "https://r.example@evil/v2/"));
	assert_false(registry_same_origin("https://r.example", "https://r.example:444/v2/"));
	assert_false(registry_same_origin("https://r.example", "http://r.example/v2/"));
	assert_false(registry_same_origin("https://r.example", "/v2/x"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_types),  cmocka_unit_test(test_manifest_refused),
	    cmocka_unit_test(test_index_platforms), cmocka_unit_test(test_challenge),
	    cmocka_unit_test(test_auth_file),       cmocka_unit_test(test_same_origin),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
