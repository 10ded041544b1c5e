/* Unit tests for runtime/container: the state file round trip, the layers file, names, and
 * how an image's config and the user's overrides combine. */
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

#include <jansson.h>

#include "err.h"
#include "util.h"
#include "runtime/container.h"
#include "runtime/image.h"

static char **
strv(int n, ...)
{
	char **v = xcalloc((size_t)n + 1, sizeof(char *));
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		v[i] = xstrdup(va_arg(ap, const char *));
	va_end(ap);
	return v;
}

static void
fill_spec(struct container_spec *s, const char *name)
{
	memset(s, 0, sizeof(*s));
	s->name = name ? xstrdup(name) : NULL;
	s->image = xstrdup("shoal/web:1");
	s->nlayers = 2;
	s->layers = strv(2, "/var/lib/shoal/layers/aa", "/var/lib/shoal/layers/bb");
	s->layer_digests = strv(2, "aa", "bb");
	s->argv = strv(3, "httpd", "-f", "-p 80");
	s->env = strv(1, "A=\"quoted\" value");
	s->cwd = xstrdup("/www");
	s->user = xstrdup("nobody");
	s->limits.cpu_quota_us = 50000;
	s->limits.cpu_period_us = 100000;
	s->limits.memory_bytes = 64 << 20;
	s->limits.pids = 32;
	s->net = NETNS_HOST;
	s->autoremove = true;
}

static void
test_round_trip(void **state)
{
	struct container c = {0}, *d;
	struct shoal_err err;
	json_t *j;
	char *text;

	(void)state;
	fill_spec(&c.spec, "web");
	c.root = "/var/lib/shoal";
	memset(c.id, 'a', 64);
	c.dir = "/var/lib/shoal/containers/aaaa";
	c.status = CONTAINER_EXITED;
	c.pid = 4242;
	c.pid_start = 123456789;
	c.shim_pid = 4241;
	c.shim_start = 123456700;
	c.exit_code = 137;
	c.exit_signal = 9;
	c.oom_killed = true;
	c.created_ms = 1700000000000;
	c.started_ms = 1700000000010;
	c.finished_ms = 1700000005000;
	c.cgroup = "shoal/aaaa";
	c.cgroup_manager = "v1";
	c.ip = "10.244.1.5";

	/* Through text, as it goes through state.json. */
	j = container_to_json(&c);
	text = json_dumps(j, 0);
	json_decref(j);
	j = json_loads(text, 0, NULL);
	free(text);
	assert_non_null(j);
	d = container_from_json("/var/lib/shoal", j, &err);
	json_decref(j);
	assert_non_null(d);
	assert_string_equal(d->id, c.id);
	assert_string_equal(d->dir,
	                    "/var/lib/shoal/containers/"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	assert_string_equal(d->spec.name, "web");
	assert_string_equal(d->spec.image, "shoal/web:1");
	assert_int_equal(d->status, CONTAINER_EXITED);
	assert_int_equal(d->pid, 4242);
	assert_int_equal(d->pid_start, 123456789);
	assert_int_equal(d->shim_pid, 4241);
	assert_int_equal(d->shim_start, 123456700);
	assert_int_equal(d->exit_code, 137);
	assert_int_equal(d->exit_signal, 9);
	assert_true(d->oom_killed);
	assert_int_equal(d->created_ms, 1700000000000);
	assert_int_equal(d->started_ms, 1700000000010);
	assert_int_equal(d->finished_ms, 1700000005000);
	assert_string_equal(d->cgroup, "shoal/aaaa");
	assert_string_equal(d->cgroup_manager, "v1");
	assert_string_equal(d->ip, "10.244.1.5");
	assert_null(d->error);
	assert_int_equal(d->spec.nlayers, 2);
	assert_string_equal(d->spec.layers[1], "/var/lib/shoal/layers/bb");
	assert_string_equal(d->spec.layer_digests[0], "aa");
	assert_string_equal(d->spec.argv[2], "-p 80");
	assert_null(d->spec.argv[3]);
	assert_string_equal(d->spec.env[0], "A=\"quoted\" value");
	assert_string_equal(d->spec.cwd, "/www");
	assert_string_equal(d->spec.user, "nobody");
	assert_null(d->spec.hostname);
	assert_int_equal(d->spec.limits.cpu_quota_us, 50000);
	assert_int_equal(d->spec.limits.cpu_period_us, 100000);
	assert_int_equal(d->spec.limits.memory_bytes, 64 << 20);
	assert_int_equal(d->spec.limits.pids, 32);
	assert_int_equal(d->spec.net, NETNS_HOST);
	assert_true(d->spec.autoremove);
	container_free(d);
	container_spec_clear(&c.spec);
}

static void
test_malformed(void **state)
{
	struct shoal_err err;
	json_t *j =
	    json_loads("{\"id\": \"short\", \"state\": \"running\", \"config\": {}}", 0, NULL);

	(void)state;
	assert_null(container_from_json("/r", j, &err));
	assert_string_equal(err.msg, "malformed state");
	json_decref(j);
}

/* A container "web" created from fill_spec under root (not NULL); s keeps what create left of the
 * spec. */
static struct container *
create_web(const char *root, struct container_spec *s, struct shoal_err *err)
{
	struct container *c;

	assert_non_null(root);
	fill_spec(s, "web");
	c = container_create(root, s, err);
	assert_non_null(c);
	return c;
}

static void
test_create_load_remove(void **state)
{
	char root[] = "/tmp/shoal-ctest-XXXXXX";
	struct container_spec s;
	struct container *c, *d;
	struct shoal_err err;

	(void)state;
	c = create_web(mkdtemp(root), &s, &err);
	assert_null(s.name); /* taken */
	assert_int_equal(c->status, CONTAINER_CREATED);
	assert_int_equal(strlen(c->id), 64);
	assert_string_equal(c->spec.hostname, c->spec.hostname); /* set */
	assert_int_equal(strncmp(c->spec.hostname, c->id, 12), 0);

	/* The layers file, for the image store's rmi: hex digests one per line. */
	cleanup_free char *lp = xasprintf("%s/layers", c->dir);
	cleanup_free char *layers = util_read_file(lp, NULL, &err);
	assert_string_equal(layers, "aa\nbb\n");

	/* The name is taken; nothing else is created by the refused attempt. */
	fill_spec(&s, "web");
	assert_null(container_create(root, &s, &err));
	assert_string_equal(err.msg, "name \"web\" is already in use");
	container_spec_clear(&s);
	fill_spec(&s, "bad/name");
	assert_null(container_create(root, &s, &err));
	container_spec_clear(&s);

	/* By name, by id prefix; HOSTNAME joined the env. */
	d = container_load(root, "web", &err);
	assert_non_null(d);
	assert_string_equal(d->id, c->id);
	assert_string_equal(d->spec.env[1] + 9, c->spec.hostname);
	container_free(d);
	char prefix[8];
	memcpy(prefix, c->id, 7);
	prefix[7] = '\0';
	d = container_load(root, prefix, &err);
	assert_non_null(d);
	container_free(d);
	assert_null(container_load(root, "nosuch", &err));
	assert_string_equal(err.msg, "no such container: nosuch");
	/* By full id (read straight from its directory), and a full id of none: the same answer
	 * as a listing gives. */
	d = container_load(root, c->id, &err);
	assert_non_null(d);
	assert_string_equal(d->id, c->id);
	container_free(d);
	char other[65];
	memset(other, 'f', 64);
	other[64] = '\0';
	assert_null(container_load(root, other, &err));
	assert_string_equal(err.msg + strlen("no such container: "), other);

	size_t n;
	struct container **v = container_list(root, &n, &err);
	assert_int_equal(n, 1);
	container_list_free(v, n);

	assert_int_equal(container_remove(c, false, &err), 0);
	assert_int_equal(access(c->dir, F_OK), -1);
	assert_null(container_load(root, "web", &err));
	cleanup_free char *names = xasprintf("%s/names", root);
	cleanup_free char *conts = xasprintf("%s/containers", root);
	assert_int_equal(rmdir(names), 0); /* empty: the name went too */
	assert_int_equal(rmdir(conts), 0);
	assert_int_equal(rmdir(root), 0);
	container_free(c);
}

static void
test_apply_image(void **state)
{
	char *layer_dirs[] = {"/l/base", "/l/top", NULL};
	char *digests[] = {"base", "top", NULL};
	char *ep[] = {"/entry", NULL};
	char *cmd[] = {"serve", "--port", "80", NULL};
	char *env[] = {"PATH=/bin", "A=1", NULL};
	struct image img = {.digest = "sha256:abc",
	                    .nlayers = 2,
	                    .layer_dirs = layer_dirs,
	                    .layer_digests = digests,
	                    .entrypoint = ep,
	                    .cmd = cmd,
	                    .env = env,
	                    .workdir = "/srv",
	                    .user = "www"};
	char *over_cmd[] = {"debug", NULL};
	char *over_env[] = {"A=2", "B=3", NULL};
	struct container_spec s = {0};

	(void)state;
	container_spec_apply_image(&s, &img, NULL, NULL);
	assert_string_equal(s.argv[0], "/entry");
	assert_string_equal(s.argv[1], "serve");
	assert_string_equal(s.argv[3], "80");
	assert_string_equal(s.cwd, "/srv");
	assert_string_equal(s.user, "www");
	assert_string_equal(s.layers[0], "/l/base");
	assert_string_equal(s.image_digest, "sha256:abc");
	container_spec_clear(&s);

	/* Arguments replace the cmd, not the entrypoint; --env replaces the same key. */
	s.user = xstrdup("root");
	container_spec_apply_image(&s, &img, over_cmd, over_env);
	assert_string_equal(s.argv[0], "/entry");
	assert_string_equal(s.argv[1], "debug");
	assert_null(s.argv[2]);
	assert_string_equal(s.env[0], "PATH=/bin");
	assert_string_equal(s.env[1], "A=2");
	assert_string_equal(s.env[2], "B=3");
	assert_null(s.env[3]);
	assert_string_equal(s.user, "root");
	container_spec_clear(&s);

	/* An entrypoint of the caller's replaces the image's and drops its cmd (the agent's
	 * manifest entrypoint, docker run --entrypoint): the arguments given follow it. */
	s.entrypoint = xcalloc(2, sizeof(char *));
	s.entrypoint[0] = xstrdup("/other");
	container_spec_apply_image(&s, &img, NULL, NULL);
	assert_string_equal(s.argv[0], "/other");
	assert_null(s.argv[1]);
	container_spec_clear(&s);
	s.entrypoint = xcalloc(2, sizeof(char *));
	s.entrypoint[0] = xstrdup("/other");
	container_spec_apply_image(&s, &img, over_cmd, NULL);
	assert_string_equal(s.argv[0], "/other");
	assert_string_equal(s.argv[1], "debug");
	assert_null(s.argv[2]);
	container_spec_clear(&s);
	/* Set but empty: only the arguments given. */
	s.entrypoint = xcalloc(1, sizeof(char *));
	container_spec_apply_image(&s, &img, over_cmd, NULL);
	assert_string_equal(s.argv[0], "debug");
	assert_null(s.argv[1]);
	container_spec_clear(&s);
}

/* --rm's trash and strip: the name goes with the container unless another has taken it over
 * since, and strip keeps the story (state.json) while the overlay and layers file go. */
static void
test_trash_strip(void **state)
{
	char root[] = "/tmp/shoal-ctest-XXXXXX";
	struct container_spec s;
	struct container *c, *d;
	struct shoal_err err;

	(void)state;
	c = create_web(mkdtemp(root), &s, &err);
	cleanup_free char *trashed = container_trash(c, &err);
	assert_non_null(trashed);
	assert_null(container_load(root, "web", &err)); /* gone from the list, name freed */
	cleanup_free char *state_json = xasprintf("%s/state.json", trashed);
	assert_int_equal(access(state_json, F_OK), 0);

	d = create_web(root, &s, &err);
	/* Removing the first container again must not free the name the second holds. */
	free(c->cgroup);
	c->cgroup = NULL;
	assert_int_equal(container_remove_files(c, &err), 0);
	container_free(c);
	c = container_load(root, "web", &err);
	assert_non_null(c);
	assert_string_equal(c->id, d->id);
	container_free(c);
	assert_int_equal(container_remove_tree(trashed, &err), 0);
	assert_int_equal(access(trashed, F_OK), -1);

	assert_int_equal(container_strip(d, &err), 0);
	cleanup_free char *layers = xasprintf("%s/layers", d->dir);
	cleanup_free char *rootfs = xasprintf("%s/rootfs", d->dir);
	cleanup_free char *kept = xasprintf("%s/state.json", d->dir);
	assert_int_equal(access(layers, F_OK), -1);
	assert_int_equal(access(rootfs, F_OK), -1);
	assert_int_equal(access(kept, F_OK), 0);
	assert_int_equal(container_remove(d, false, &err), 0);
	container_free(d);
	assert_int_equal(container_remove_tree(root, &err), 0);
	assert_int_equal(access(root, F_OK), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),         cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_create_load_remove), cmocka_unit_test(test_apply_image),
	    cmocka_unit_test(test_trash_strip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
