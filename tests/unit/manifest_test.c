/* Unit tests for common/manifest: what a user writes, what the scheduler gets, and every
 * mistake reported once at the exact FILE:LINE:COLUMN. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include "manifest.h"
#include "manifest_check.h"
#include "manifest_internal.h"
#include "manifest_json.h"
#include "manifest_set.h"
#include "err.h"
#include "util.h"

/* Parse text that must be valid; fails the test with the errors otherwise. */
static void
parse_ok(const char *yaml, struct manifest *m)
{
	struct manifest_errors errs = {0};
	int r = manifest_parse_buffer("t.yaml", yaml, strlen(yaml), m, &errs);

	for (size_t i = 0; i < errs.n; i++)
		print_error("unexpected: %s\n", errs.lines[i]);
	assert_int_equal(r, 0);
	assert_int_equal(errs.n, 0);
	manifest_errors_free(&errs);
}

/* Parse text that must fail with exactly the expected lines (NULL-terminated), in order. */
static void
expect_errors(const char *yaml, const char *const *want)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	size_t n = 0;
	int r = manifest_parse_buffer("t.yaml", yaml, strlen(yaml), &m, &errs);

	while (want[n] != NULL)
		n++;
	/* On a mismatch, show everything that came back before the assertion fails. */
	for (size_t i = 0; i < errs.n; i++)
		if (errs.n != n || strcmp(errs.lines[i], want[i]) != 0)
			print_error("got: %s\n", errs.lines[i]);
	assert_int_equal(r, -1);
	/* All or nothing: a failed parse hands back no services. */
	assert_int_equal(m.n_services, 0);
	assert_null(m.services);
	assert_int_equal(errs.n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(errs.lines[i], want[i]);
	manifest_errors_free(&errs);
}

#define EXPECT(yaml, ...) expect_errors((yaml), (const char *const[]){__VA_ARGS__, NULL})

static void
test_web_example(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	const struct service_spec *s;

	(void)state;
	assert_int_equal(manifest_parse_file("manifests/web.yaml", &m, &errs), 0);
	assert_int_equal(m.n_services, 1);
	s = &m.services[0];
	assert_string_equal(s->name, "web");
	assert_string_equal(s->image, "192.168.56.10:5000/shoal/web:1");
	assert_int_equal(s->replicas, 3);
	assert_false(s->entrypoint.set);
	assert_true(s->command.set);
	assert_int_equal(s->command.n, 6);
	assert_string_equal(s->command.v[0], "httpd");
	assert_string_equal(s->command.v[5], "/www");
	assert_int_equal(s->n_env, 1);
	assert_string_equal(s->env[0].name, "GREETING");
	assert_string_equal(s->env[0].value, "hello");
	assert_int_equal(s->n_ports, 1);
	assert_int_equal(s->ports[0].published, 8080);
	assert_int_equal(s->ports[0].target, 8080);
	assert_int_equal(s->resources.cpu_millis, 100);
	assert_int_equal(s->resources.memory_bytes, 32 * 1024 * 1024);
	assert_int_equal(s->health.kind, MANIFEST_HEALTH_HTTP);
	assert_string_equal(s->health.http_path, "/healthz");
	assert_int_equal(s->health.port, 8080);
	assert_int_equal(s->health.interval_ms, 2000);
	assert_int_equal(s->health.timeout_ms, 1000);
	assert_int_equal(s->health.retries, 3);
	assert_int_equal(s->health.start_period_ms, 5000);
	assert_int_equal(s->update.order, MANIFEST_ORDER_START_FIRST);
	assert_int_equal(s->update.failure_action, MANIFEST_FAILURE_ROLLBACK);
	assert_int_equal(s->update.delay_ms, 2000);
	assert_int_equal(s->update.monitor_ms, 5000);
	assert_int_equal(s->stop_grace_ms, 10000);
	assert_int_equal(s->network, MANIFEST_NETWORK_BRIDGE);
	/* The demo turns no_new_privs on (the last line, after every checked position). */
	assert_true(s->no_new_privileges);
	/* Origins point at the service name's value and the published port's value. */
	assert_int_equal(m.origins[0].service.line, 4);
	assert_int_equal(m.origins[0].service.column, 10);
	assert_int_equal(m.origins[0].ports[0].line, 9);
	assert_int_equal(m.origins[0].ports[0].column, 21);
	manifest_free(&m);
	manifest_errors_free(&errs);
}

static const char full_flow[] =
    "service: web\n"
    "image: shoal/web:1\n"
    "replicas: 3\n"
    "command: [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
    "env: {GREETING: hello, A: \"1\"}\n"
    "ports: [{published: 8080, target: 8080}]\n"
    "resources: {cpus: 0.25, memory: 32Mi}\n"
    "restart: {policy: on-failure, max_attempts: 5, delay: 1s}\n"
    "placement: {constraints: [\"node.labels.zone == a\", \"node.name != node3\"], "
    "max_per_node: 2}\n"
    "health: {http: /healthz, port: 8080, interval: 2s, timeout: 1s, retries: 3, "
    "start_period: 5s}\n"
    "update: {parallelism: 1, delay: 2s, order: start-first, failure_action: rollback, "
    "monitor: 5s}\n"
    "stop_grace: 10s\n"
    "network: bridge\n";

/* The same service in block style, keys and env in another order. */
static const char full_block[] = "# block style\n"
                                 "image: shoal/web:1\n"
                                 "service: web\n"
                                 "replicas: 3\n"
                                 "command:\n"
                                 "  - httpd\n"
                                 "  - -f\n"
                                 "  - -p\n"
                                 "  - \"8080\"\n"
                                 "  - -h\n"
                                 "  - /www\n"
                                 "env:\n"
                                 "  - A=1\n"
                                 "  - GREETING=hello\n"
                                 "ports:\n"
                                 "  - published: 8080\n"
                                 "    target: 8080\n"
                                 "resources:\n"
                                 "  memory: 32Mi\n"
                                 "  cpus: 0.25\n"
                                 "restart:\n"
                                 "  policy: on-failure\n"
                                 "  max_attempts: 5\n"
                                 "  delay: 1000ms\n"
                                 "placement:\n"
                                 "  constraints:\n"
                                 "    - node.name!=node3\n"
                                 "    - node.labels.zone == a\n"
                                 "  max_per_node: 2\n"
                                 "health:\n"
                                 "  http: /healthz\n"
                                 "  port: 8080\n"
                                 "  interval: 2s\n"
                                 "  timeout: 1s\n"
                                 "  retries: 3\n"
                                 "  start_period: 5s\n"
                                 "update:\n"
                                 "  parallelism: 1\n"
                                 "  delay: 2s\n"
                                 "  order: start-first\n"
                                 "  failure_action: rollback\n"
                                 "  monitor: 5s\n"
                                 "stop_grace: 10s\n"
                                 "network: bridge\n";

static void
test_block_equals_flow(void **state)
{
	struct manifest a, b;
	const struct service_spec *s;

	(void)state;
	parse_ok(full_flow, &a);
	parse_ok(full_block, &b);
	s = &a.services[0];
	assert_int_equal(s->restart.policy, MANIFEST_RESTART_ON_FAILURE);
	assert_int_equal(s->restart.max_attempts, 5);
	assert_int_equal(s->restart.delay_ms, 1000);
	assert_int_equal(s->resources.cpu_millis, 250);
	assert_int_equal(s->placement.max_per_node, 2);
	/* Sorted by text, so the order written does not matter. */
	assert_int_equal(s->placement.n_constraints, 2);
	assert_int_equal(s->placement.constraints[0].field, MANIFEST_NODE_LABEL);
	assert_string_equal(s->placement.constraints[0].label, "zone");
	assert_true(s->placement.constraints[0].equal);
	assert_string_equal(s->placement.constraints[0].value, "a");
	assert_int_equal(s->placement.constraints[1].field, MANIFEST_NODE_NAME);
	assert_false(s->placement.constraints[1].equal);
	assert_string_equal(s->placement.constraints[1].value, "node3");
	/* env sorted by name. */
	assert_string_equal(s->env[0].name, "A");
	assert_string_equal(s->env[1].name, "GREETING");
	assert_true(manifest_spec_equal(&a.services[0], &b.services[0]));
	manifest_free(&a);
	manifest_free(&b);
}

/* Every field of s has its default: a spec of only a name and an image, from YAML or JSON. */
static void
assert_defaults(const struct service_spec *s)
{
	assert_int_equal(s->replicas, 1);
	assert_false(s->entrypoint.set);
	assert_false(s->command.set);
	assert_int_equal(s->n_env, 0);
	assert_int_equal(s->n_ports, 0);
	assert_int_equal(s->resources.cpu_millis, 0);
	assert_int_equal(s->resources.memory_bytes, 0);
	assert_int_equal(s->resources.pids, 0);
	assert_int_equal(s->restart.policy, MANIFEST_RESTART_ALWAYS);
	assert_int_equal(s->restart.max_attempts, 0);
	assert_int_equal(s->restart.delay_ms, 5000);
	assert_int_equal(s->placement.n_constraints, 0);
	assert_int_equal(s->placement.max_per_node, 0);
	assert_int_equal(s->health.kind, MANIFEST_HEALTH_NONE);
	assert_int_equal(s->health.interval_ms, 30000);
	assert_int_equal(s->health.timeout_ms, 30000);
	assert_int_equal(s->health.retries, 3);
	assert_int_equal(s->health.start_period_ms, 0);
	assert_int_equal(s->update.parallelism, 1);
	assert_int_equal(s->update.delay_ms, 0);
	assert_int_equal(s->update.order, MANIFEST_ORDER_STOP_FIRST);
	assert_int_equal(s->update.failure_action, MANIFEST_FAILURE_PAUSE);
	assert_int_equal(s->update.monitor_ms, 5000);
	assert_int_equal(s->stop_grace_ms, 10000);
	assert_int_equal(s->network, MANIFEST_NETWORK_BRIDGE);
	/* Docker's default: no no_new_privs, so setuid and file capabilities work. */
	assert_false(s->no_new_privileges);
}

static void
test_defaults(void **state)
{
	struct manifest m;
	const struct service_spec *s;

	(void)state;
	parse_ok("service: min\nimage: busybox\n", &m);
	assert_int_equal(m.n_services, 1);
	s = &m.services[0];
	assert_defaults(s);
	manifest_free(&m);
}

static void
test_multiple_documents(void **state)
{
	struct manifest m;

	(void)state;
	/* A leading "---", an empty document and a trailing "---" are all fine. */
	parse_ok("---\nservice: a\nimage: x\n---\n---\nservice: b\nimage: y\nreplicas: 0\n---\n",
	         &m);
	assert_int_equal(m.n_services, 2);
	assert_string_equal(m.file, "t.yaml");
	assert_string_equal(m.services[0].name, "a");
	assert_string_equal(m.services[1].name, "b");
	assert_int_equal(m.services[1].replicas, 0);
	assert_int_equal(m.origins[1].service.line, 6);
	manifest_free(&m);
}

static void
test_units_and_forms(void **state)
{
	struct manifest m;
	const struct service_spec *s;

	(void)state;
	parse_ok("service: u\n"
	         "image: x\n"
	         "entrypoint: []\n"
	         "command: sh -c \"echo 'hi there'\" a\\ b\n"
	         "ports: [\"8080:80\", 81, {target: 82}]\n"
	         "resources: {cpus: 2, memory: 1.5Gi, pids: 64}\n"
	         "restart: {delay: 1.5m}\n"
	         "health: {cmd: curl -f localhost, interval: 1500ms, timeout: 1h}\n"
	         "update: {parallelism: 0, delay: 0}\n"
	         "stop_grace: 0\n"
	         "network: host\n"
	         "no_new_privileges: true\n",
	         &m);
	s = &m.services[0];
	/* entrypoint: [] clears the image's: set, but empty. */
	assert_true(s->entrypoint.set);
	assert_int_equal(s->entrypoint.n, 0);
	/* A command string is split like a shell would, quotes and backslashes included. */
	assert_int_equal(s->command.n, 4);
	assert_string_equal(s->command.v[0], "sh");
	assert_string_equal(s->command.v[1], "-c");
	assert_string_equal(s->command.v[2], "echo 'hi there'");
	assert_string_equal(s->command.v[3], "a b");
	assert_int_equal(s->n_ports, 3);
	assert_int_equal(s->ports[0].published, 8080);
	assert_int_equal(s->ports[0].target, 80);
	assert_int_equal(s->ports[1].published, 0);
	assert_int_equal(s->ports[1].target, 81);
	assert_int_equal(s->ports[2].target, 82);
	assert_int_equal(s->resources.cpu_millis, 2000);
	assert_int_equal(s->resources.memory_bytes, 1610612736LL);
	assert_int_equal(s->resources.pids, 64);
	assert_int_equal(s->restart.delay_ms, 90000);
	/* A health cmd string runs through sh -c, as Docker's CMD-SHELL. */
	assert_int_equal(s->health.kind, MANIFEST_HEALTH_CMD);
	assert_int_equal(s->health.cmd.n, 3);
	assert_string_equal(s->health.cmd.v[2], "curl -f localhost");
	assert_int_equal(s->health.interval_ms, 1500);
	assert_int_equal(s->health.timeout_ms, 3600000);
	assert_int_equal(s->update.parallelism, 0);
	assert_int_equal(s->update.delay_ms, 0);
	assert_int_equal(s->stop_grace_ms, 0);
	assert_int_equal(s->network, MANIFEST_NETWORK_HOST);
	assert_true(s->no_new_privileges);
	manifest_free(&m);
	parse_ok("service: u\nimage: x\nno_new_privileges: false\n", &m);
	assert_false(m.services[0].no_new_privileges);
	manifest_free(&m);

	/* An http check without a port probes the first port's target. */
	parse_ok("service: h\nimage: x\nports: [\"8080:80\"]\nhealth: {http: /}\n", &m);
	assert_int_equal(m.services[0].health.port, 80);
	manifest_free(&m);
}

/* Every file in manifests/ parses, and together they can run in one cluster. */
static void
test_examples_dir(void **state)
{
	struct manifest set[32];
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir("manifests");

	(void)state;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		struct manifest_errors errs = {0};
		size_t l = strlen(de->d_name);
		char path[300];

		if (l < 6 || strcmp(de->d_name + l - 5, ".yaml") != 0)
			continue;
		assert_true(n < ARRAY_SIZE(set));
		snprintf(path, sizeof(path), "manifests/%s", de->d_name);
		if (manifest_parse_file(path, &set[n], &errs) != 0)
			for (size_t i = 0; i < errs.n; i++)
				print_error("%s\n", errs.lines[i]);
		assert_int_equal(errs.n, 0);
		assert_true(set[n].n_services > 0);
		manifest_errors_free(&errs);
		n++;
	}
	closedir(d);
	assert_true(n >= 4);
	{
		struct manifest_errors errs = {0};
		assert_int_equal(manifest_set_check(set, n, &errs), 0);
		assert_int_equal(errs.n, 0);
	}
	for (size_t i = 0; i < n; i++)
		manifest_free(&set[i]);
}

static void
test_errors_keys(void **state)
{
	(void)state;
	EXPECT("service: web\nimage: x\nreplica: 3\n",
	       "t.yaml:3:1: unknown key \"replica\" in service web (did you mean \"replicas\"?)");
	EXPECT("service: web\nimage: x\nhealth: {tcp: 80, intervall: 2s}\n",
	       "t.yaml:3:19: unknown key \"intervall\" in health of service web (did you mean "
	       "\"interval\"?)");
	EXPECT("service: web\nimage: x\nfoo: 1\n",
	       "t.yaml:3:1: unknown key \"foo\" in service web");
	EXPECT("service: web\nimage: x\nreplicas: 1\nreplicas: 2\n",
	       "t.yaml:4:1: duplicate key \"replicas\" in service web (first at 3:1)");
	EXPECT("service: web\nimage: x\nenv: {A: 1, B: 2, A: 3}\n",
	       "t.yaml:3:19: env: duplicate variable \"A\" (first at 3:7)");
	EXPECT("service: web\nimage: x\nports: [{target: 80, target: 81}]\n",
	       "t.yaml:3:22: duplicate key \"target\" in ports[0] of service web (first at 3:10)");
	/* Missing keys point at the document's start. */
	EXPECT("# comment\nimage: x\n",
	       "t.yaml:2:1: missing required key \"service\" in document 1");
	EXPECT("service: a\nimage: x\n---\nservice: web\n",
	       "t.yaml:3:1: missing required key \"image\" in service web");
	EXPECT("- service: web\n",
	       "t.yaml:1:1: expected a mapping describing one service, got a sequence");
	EXPECT("hello\n", "t.yaml:1:1: expected a mapping describing one service, got \"hello\"");
	EXPECT("", "t.yaml:1:1: no service defined (want one YAML document per service)");
	EXPECT("base: &b {replicas: 2}\nservice: web\nimage: x\nupdate: *b\n",
	       "t.yaml:1:1: unknown key \"base\" in service web",
	       "t.yaml:4:9: aliases are not supported (*b): write the value out in full");
	/* An alias where the name goes: one error, and no nameless service slips through. */
	EXPECT("service: &n a\nimage: x\n---\nservice: *n\nimage: x\n",
	       "t.yaml:4:10: aliases are not supported (*n): write the value out in full");
	EXPECT("service: web\nimage: x\n[a]: 1\n",
	       "t.yaml:3:1: keys must be strings, got a sequence in service web");
}

static void
test_errors_values(void **state)
{
	(void)state;
	EXPECT("service: web\nimage: x\nreplicas: three\n",
	       "t.yaml:3:11: replicas: expected an integer, got \"three\"");
	EXPECT("service: web\nimage: x\nreplicas: 10001\n",
	       "t.yaml:3:11: replicas: must be between 0 and 10000, got \"10001\"");
	EXPECT("service: web\nimage: x\nreplicas: -1\n",
	       "t.yaml:3:11: replicas: must be between 0 and 10000, got \"-1\"");
	EXPECT("service: web\nimage: x\nreplicas: 99999999999999999999\n",
	       "t.yaml:3:11: replicas: must be between 0 and 10000, got \"99999999999999999999\"");
	EXPECT("service: web\nimage: x\nreplicas:\n",
	       "t.yaml:3:10: replicas: expected an integer, got null");
	EXPECT("service: Web_1\nimage: x\n",
	       "t.yaml:1:10: service: invalid name \"Web_1\" (want a DNS label: lowercase letters, "
	       "digits and '-', at most 63 characters, not starting or ending with '-')");
	EXPECT("service: web\nimage: \"a b\"\n",
	       "t.yaml:2:8: image: invalid reference \"a b\": invalid character "
	       "(allowed: a-z 0-9 . _ - / : @)");
	EXPECT("service: web\nimage: \"x:1;rm\"\n",
	       "t.yaml:2:8: image: invalid reference \"x:1;rm\": invalid character "
	       "(allowed: a-z 0-9 . _ - / : @)");
	EXPECT("service: web\nimage: [x]\n",
	       "t.yaml:2:8: image: expected a string, got a sequence");
	EXPECT("service: web\nimage: x\nports: [{published: 0, target: 65536}]\n",
	       "t.yaml:3:21: ports[0].published: must be between 1 and 65535, got \"0\"",
	       "t.yaml:3:32: ports[0].target: must be between 1 and 65535, got \"65536\"");
	EXPECT("service: web\nimage: x\nports: [{published: 80}]\n",
	       "t.yaml:3:9: ports[0]: missing required key \"target\"");
	EXPECT("service: web\nimage: x\nports: [\"80:\"]\n",
	       "t.yaml:3:9: ports[0]: invalid port \"80:\" (want PUBLISHED:TARGET or a mapping "
	       "with published and target, ports 1 to 65535)");
	EXPECT("service: web\nimage: x\nresources: {cpus: 0}\n",
	       "t.yaml:3:19: resources.cpus: must be between 0.001 and 1024, got \"0\"");
	EXPECT("service: web\nimage: x\nresources: {cpus: 2000}\n",
	       "t.yaml:3:19: resources.cpus: must be between 0.001 and 1024, got \"2000\"");
	EXPECT("service: web\nimage: x\nresources: {cpus: half}\n",
	       "t.yaml:3:19: resources.cpus: expected a number of CPUs, got \"half\"");
	EXPECT(
	    "service: web\nimage: x\nresources: {memory: 32MB}\n",
	    "t.yaml:3:21: resources.memory: invalid size \"32MB\" (want a number with Ki, Mi, Gi, "
	    "k, M or G)");
	EXPECT("service: web\nimage: x\nresources: {memory: 1Mi}\n",
	       "t.yaml:3:21: resources.memory: must be at least 4Mi (omit it for no limit), got "
	       "\"1Mi\"");
	EXPECT("service: web\nimage: x\nresources: {pids: 0}\n",
	       "t.yaml:3:19: resources.pids: must be between 1 and 4194304, got \"0\"");
	EXPECT("service: web\nimage: x\nrestart: {policy: sometimes}\n",
	       "t.yaml:3:19: restart.policy: invalid value \"sometimes\" (want always, on-failure "
	       "or never)");
	EXPECT("service: web\nimage: x\nrestart: {delay: 5}\n",
	       "t.yaml:3:18: restart.delay: invalid duration \"5\" (want a number and ms, s, m or "
	       "h)");
	EXPECT("service: web\nimage: x\nrestart: {max_attempts: -1}\n",
	       "t.yaml:3:25: restart.max_attempts: must be between 0 and 1000000, got \"-1\"");
	EXPECT("service: web\nimage: x\nupdate: {order: random, failure_action: panic}\n",
	       "t.yaml:3:17: update.order: invalid value \"random\" (want stop-first or "
	       "start-first)",
	       "t.yaml:3:41: update.failure_action: invalid value \"panic\" (want pause, rollback "
	       "or continue)");
	EXPECT("service: web\nimage: x\nupdate: {parallelism: -1}\n",
	       "t.yaml:3:23: update.parallelism: must be between 0 and 10000, got \"-1\"");
	EXPECT("service: web\nimage: x\nno_new_privileges: yes\n",
	       "t.yaml:3:20: no_new_privileges: expected true or false, got \"yes\"");
	EXPECT("service: web\nimage: x\nno_new_privileges: [true]\n",
	       "t.yaml:3:20: no_new_privileges: expected true or false, got a sequence");
	EXPECT("service: web\nimage: x\nnetwork: overlay\n",
	       "t.yaml:3:10: network: invalid value \"overlay\" (want bridge or host)");
	EXPECT("service: web\nimage: x\nstop_grace: soon\n",
	       "t.yaml:3:13: stop_grace: invalid duration \"soon\" (want a number and ms, s, m or "
	       "h)");
	EXPECT("service: web\nimage: x\nplacement: {max_per_node: -2}\n",
	       "t.yaml:3:27: placement.max_per_node: must be between 0 and 10000, got \"-2\"");
	EXPECT("service: web\nimage: x\nplacement: {constraints: [\"node.zone == a\", "
	       "\"node.labels. == b\", \"node.name = c\", \"node.id !=\"]}\n",
	       "t.yaml:3:27: placement.constraints[0]: invalid constraint \"node.zone == a\" (want "
	       "node.name, node.id or node.labels.KEY, then == or !=, then a value)",
	       "t.yaml:3:45: placement.constraints[1]: invalid constraint \"node.labels. == b\" "
	       "(want node.name, node.id or node.labels.KEY, then == or !=, then a value)",
	       "t.yaml:3:66: placement.constraints[2]: invalid constraint \"node.name = c\" (want "
	       "node.name, node.id or node.labels.KEY, then == or !=, then a value)",
	       "t.yaml:3:83: placement.constraints[3]: invalid constraint \"node.id !=\" (want "
	       "node.name, node.id or node.labels.KEY, then == or !=, then a value)");
	EXPECT("service: web\nimage: x\ncommand: \"echo 'oops\"\n",
	       "t.yaml:3:10: command: cannot split \"echo 'oops\" into words: unterminated single "
	       "quote");
	EXPECT("service: web\nimage: x\ncommand: [echo, {a: 1}]\n",
	       "t.yaml:3:17: command[1]: expected a string, got a mapping");
	EXPECT("service: web\nimage: x\nenv: [A=1, B]\n",
	       "t.yaml:3:12: env[1]: expected NAME=VALUE, got \"B\"");
	EXPECT("service: web\nimage: x\nenv: {A: }\n",
	       "t.yaml:3:10: env.A: expected a string, got null");
}

static void
test_errors_health(void **state)
{
	(void)state;
	EXPECT("service: web\nimage: x\nhealth: {interval: 2s}\n",
	       "t.yaml:3:9: health: missing the check (want exactly one of http, tcp or cmd)");
	EXPECT("service: web\nimage: x\nhealth: {http: /, tcp: 80, port: 80}\n",
	       "t.yaml:3:19: health: http and tcp cannot be combined (want exactly one of http, "
	       "tcp or cmd)");
	EXPECT("service: web\nimage: x\nhealth: {tcp: 80, port: 81}\n",
	       "t.yaml:3:19: health.port: only applies to an http check (tcp names its own port)");
	EXPECT("service: web\nimage: x\nhealth: {cmd: [\"true\"], port: 81}\n",
	       "t.yaml:3:25: health.port: only applies to an http check (a cmd check has none)");
	EXPECT("service: web\nimage: x\nhealth: {http: healthz, port: 80}\n",
	       "t.yaml:3:16: health.http: invalid path \"healthz\" (want an absolute URL path like "
	       "/healthz)");
	EXPECT("service: web\nimage: x\nhealth: {http: /}\n",
	       "t.yaml:3:9: health.port: required for an http check when the service has no ports");
	EXPECT(
	    "service: web\nimage: x\nhealth: {cmd: [], retries: 0, interval: 0, timeout: 1x}\n",
	    "t.yaml:3:15: health.cmd: must not be empty",
	    "t.yaml:3:28: health.retries: must be between 1 and 1000, got \"0\"",
	    "t.yaml:3:41: health.interval: must be greater than 0",
	    "t.yaml:3:53: health.timeout: invalid duration \"1x\" (want a number and ms, s, m or "
	    "h)");
	EXPECT("service: web\nimage: x\nhealth: tcp\n",
	       "t.yaml:3:9: health: expected a mapping, got \"tcp\"");
}

static void
test_errors_syntax(void **state)
{
	(void)state;
	EXPECT("service: web\nimage: [a\n",
	       "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' (while parsing a "
	       "flow sequence at 2:8)");
	EXPECT("service: web\n  image: a\n",
	       "t.yaml:2:8: YAML syntax error: mapping values are not allowed in this context");
	EXPECT("service: web\nimage: x\n\treplicas: 2\n",
	       "t.yaml:3:1: YAML syntax error: found a tab character that violates indentation "
	       "(while scanning a plain scalar at 2:8)");
	/* Mistakes in earlier documents are still reported before the syntax error stops us. */
	EXPECT("service: web\nimage: x\nreplicas: many\n---\nservice: b\nimage: \"x\n",
	       "t.yaml:3:11: replicas: expected an integer, got \"many\"",
	       "t.yaml:7:1: YAML syntax error: found unexpected end of stream (while scanning a "
	       "quoted scalar at 6:8)");
	EXPECT("service: w\xff\n", "t.yaml:1:11: invalid input: invalid leading UTF-8 octet");
}

/* Validation collects every error: a manifest with three mistakes gets three lines. */
static void
test_three_mistakes(void **state)
{
	(void)state;
	EXPECT(
	    "service: web\n"
	    "image: shoal/web:1\n"
	    "replica: 3\n"
	    "resources:\n"
	    "  memory: 32MB\n"
	    "update:\n"
	    "  order: sideways\n",
	    "t.yaml:3:1: unknown key \"replica\" in service web (did you mean \"replicas\"?)",
	    "t.yaml:5:11: resources.memory: invalid size \"32MB\" (want a number with Ki, Mi, Gi, "
	    "k, M or G)",
	    "t.yaml:7:10: update.order: invalid value \"sideways\" (want stop-first or "
	    "start-first)");
}

static void
test_duplicates(void **state)
{
	struct manifest set[2];
	struct manifest_errors errs = {0};
	const char *a = "service: web\nimage: x\nports: [{published: 8080, target: 80}]\n";
	const char *b = "service: api\nimage: y\n---\n"
	                "service: web\nimage: z\nports: [\"9000:80\", \"8080:80\"]\n";

	(void)state;
	/* Within one file: the second service name and the port clash. */
	EXPECT(
	    "service: web\nimage: x\nports: [\"8080:80\"]\n---\n"
	    "service: web\nimage: y\nports: [\"8080:81\", \"8080:82\"]\n",
	    "t.yaml:5:10: service: duplicate service name \"web\" (first defined at t.yaml:1:10)",
	    "t.yaml:7:9: ports[0]: port 8080 is already published by service web (t.yaml:3:9)",
	    "t.yaml:7:20: ports[1]: port 8080 is already published by service web (t.yaml:3:9)");
	EXPECT("service: web\nimage: x\nports: [\"8080:80\", \"8080:81\"]\n",
	       "t.yaml:3:20: ports[1]: port 8080 is already published by service web (t.yaml:3:9)");

	/* Across files: each parses alone, the set does not. */
	assert_int_equal(manifest_parse_buffer("a.yaml", a, strlen(a), &set[0], &errs), 0);
	assert_int_equal(manifest_parse_buffer("b.yaml", b, strlen(b), &set[1], &errs), 0);
	assert_int_equal(manifest_set_check(set, 1, &errs), 0);
	assert_int_equal(manifest_set_check(set, 2, &errs), -1);
	assert_int_equal(errs.n, 2);
	assert_string_equal(errs.lines[0], "b.yaml:4:10: service: duplicate service name \"web\" "
	                                   "(first defined at a.yaml:1:10)");
	assert_string_equal(errs.lines[1], "b.yaml:6:20: ports[1]: port 8080 is already published "
	                                   "by service web (a.yaml:3:21)");
	manifest_errors_free(&errs);
	manifest_free(&set[0]);
	manifest_free(&set[1]);
}

/* A runaway file is capped: the first MANIFEST_MAX_ERRORS lines and one more saying so. */
static void
test_error_cap(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	char *buf = xstrdup("service: web\nimage: x\n");

	(void)state;
	for (int i = 0; i < 300; i++) {
		char *next = xasprintf("%sbad%d: 1\n", buf, i);
		free(buf);
		buf = next;
	}
	assert_int_equal(manifest_parse_buffer("t.yaml", buf, strlen(buf), &m, &errs), -1);
	assert_int_equal(errs.n, MANIFEST_MAX_ERRORS + 1);
	assert_string_equal(errs.lines[0], "t.yaml:3:1: unknown key \"bad0\" in service web");
	assert_string_equal(errs.lines[MANIFEST_MAX_ERRORS],
	                    "too many errors; only the first 100 are shown");
	manifest_errors_free(&errs);
	free(buf);
}

static void
test_deep_nesting(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	char buf[400];
	size_t o;

	(void)state;
	o = (size_t)snprintf(buf, sizeof(buf), "service: web\nimage: x\nenv: ");
	for (int i = 0; i < 100; i++)
		buf[o++] = '[';
	for (int i = 0; i < 100; i++)
		buf[o++] = ']';
	buf[o++] = '\n';
	buf[o] = '\0';
	assert_int_equal(manifest_parse_buffer("t.yaml", buf, strlen(buf), &m, &errs), -1);
	/* The parse stops at the first depth error: nothing after it is read. */
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0], "t.yaml:3:37: nested too deeply (more than 32 levels)");
	manifest_errors_free(&errs);
}

/* Deep flow nesting is quadratic inside libyaml's scanner: 200 KB of brackets took 20 s before
 * the parse stopped at the first depth error. It must now fail fast, with one line. */
static void
test_deep_nesting_fast(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	size_t n = 200 * 1024, o;
	char *buf = xmalloc(n + 64);
	int64_t t0;

	(void)state;
	o = (size_t)snprintf(buf, 64, "service: web\nimage: x\nenv: ");
	memset(buf + o, '[', n);
	buf[o + n] = '\0';
	t0 = util_now_ms();
	assert_int_equal(manifest_parse_buffer("deep.yaml", buf, strlen(buf), &m, &errs), -1);
	assert_true(util_now_ms() - t0 < 1000);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0],
	                    "deep.yaml:3:37: nested too deeply (more than 32 levels)");
	manifest_errors_free(&errs);
	free(buf);
}

/* A manifest over MANIFEST_MAX_BYTES is refused whole, whether from a buffer or a file. */
static void
test_size_cap(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	size_t n = MANIFEST_MAX_BYTES + 1;
	char *buf = xmalloc(n + 1);
	char path[] = "/tmp/shoal-manifest-test.XXXXXX";
	int fd;

	(void)state;
	memset(buf, '#', n);
	memcpy(buf, "service: a\nimage: x\n", 20);
	buf[n] = '\0';
	assert_int_equal(manifest_parse_buffer("big.yaml", buf, n, &m, &errs), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0],
	                    "big.yaml: too large (more than 1048576 bytes); split it "
	                    "into several files");
	manifest_errors_free(&errs);
	/* The same from a file, and exactly at the limit is still read. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	assert_int_equal(manifest_parse_file(path, &m, &errs), -1);
	assert_int_equal(errs.n, 1);
	manifest_errors_free(&errs);
	assert_int_equal(ftruncate(fd, (off_t)(n - 1)), 0);
	assert_int_equal(manifest_parse_file(path, &m, &errs), 0);
	assert_int_equal(m.n_services, 1);
	manifest_free(&m);
	close(fd);
	unlink(path);
	free(buf);
}

static void
test_parse_file_missing(void **state)
{
	struct manifest_errors errs = {0};
	struct manifest m;

	(void)state;
	assert_int_equal(manifest_parse_file("manifests/nope.yaml", &m, &errs), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(
	    errs.lines[0],
	    "manifests/nope.yaml: open manifests/nope.yaml: No such file or directory");
	assert_int_equal(m.n_services, 0);
	manifest_errors_free(&errs);
}

static void
round_trip(const struct service_spec *s)
{
	struct service_spec back;
	struct shoal_err err;
	char *j1 = manifest_spec_to_json(s), *j2;

	assert_int_equal(manifest_spec_from_json(j1, &back, &err), 0);
	assert_true(manifest_spec_equal(s, &back));
	j2 = manifest_spec_to_json(&back);
	assert_string_equal(j1, j2);
	free(j2);
	manifest_spec_free(&back);
	/* The wire form (Assignments') reads back to the same spec but for replicas, and is
	 * never longer. */
	j2 = manifest_spec_json_wire(j1);
	assert_non_null(j2);
	assert_true(strlen(j2) <= strlen(j1));
	assert_null(strstr(j2, "replicas"));
	assert_int_equal(manifest_spec_from_json(j2, &back, &err), 0);
	back.replicas = s->replicas;
	assert_true(manifest_spec_equal(s, &back));
	free(j2);
	j2 = manifest_spec_to_json(&back);
	assert_string_equal(j1, j2);
	free(j1);
	free(j2);
	manifest_spec_free(&back);
}

static void
test_json_round_trip(void **state)
{
	const char *files[] = {"manifests/web.yaml", "manifests/api-constraints.yaml",
	                       "manifests/worker-restart.yaml", "manifests/multi.yaml"};
	struct manifest m;
	char *j;

	(void)state;
	for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
		struct manifest_errors errs = {0};
		assert_int_equal(manifest_parse_file(files[f], &m, &errs), 0);
		for (size_t i = 0; i < m.n_services; i++)
			round_trip(&m.services[i]);
		manifest_free(&m);
	}
	parse_ok(full_flow, &m);
	round_trip(&m.services[0]);
	j = manifest_spec_to_json(&m.services[0]);
	assert_string_equal(
	    j, "{\"command\":[\"httpd\",\"-f\",\"-p\",\"8080\",\"-h\",\"/www\"],"
	       "\"env\":{\"A\":\"1\",\"GREETING\":\"hello\"},"
	       "\"health\":{\"http\":\"/healthz\",\"interval_ms\":2000,\"kind\":\"http\","
	       "\"port\":8080,\"retries\":3,\"start_period_ms\":5000,\"timeout_ms\":1000},"
	       "\"image\":\"shoal/web:1\",\"name\":\"web\",\"network\":\"bridge\","
	       "\"no_new_privileges\":false,"
	       "\"placement\":{\"constraints\":[\"node.labels.zone == a\",\"node.name != "
	       "node3\"],\"max_per_node\":2},"
	       "\"ports\":[{\"published\":8080,\"target\":8080}],\"replicas\":3,"
	       "\"resources\":{\"cpu_millis\":250,\"memory_bytes\":33554432,\"pids\":0},"
	       "\"restart\":{\"delay_ms\":1000,\"max_attempts\":5,\"policy\":\"on-failure\"},"
	       "\"stop_grace_ms\":10000,"
	       "\"update\":{\"delay_ms\":2000,\"failure_action\":\"rollback\",\"monitor_ms\":"
	       "5000,\"order\":\"start-first\",\"parallelism\":1}}");
	free(j);
	manifest_free(&m);
	parse_ok("service: u\nimage: x\nentrypoint: []\nhealth: {cmd: \"true\"}\n", &m);
	round_trip(&m.services[0]);
	manifest_free(&m);
	parse_ok("service: u\nimage: x\nno_new_privileges: true\n", &m);
	round_trip(&m.services[0]);
	j = manifest_spec_to_json(&m.services[0]);
	{
		char *lean = manifest_spec_json_wire(j);
		/* What is left is what differs from the defaults. */
		assert_string_equal(lean,
		                    "{\"image\":\"x\",\"name\":\"u\",\"no_new_privileges\":true}");
		free(lean);
	}
	free(j);
	assert_null(manifest_spec_json_wire("{\"name\""));
	j = manifest_spec_to_json(&m.services[0]);
	assert_non_null(strstr(j, "\"no_new_privileges\":true"));
	free(j);
	manifest_free(&m);
}

static void
test_from_json(void **state)
{
	struct service_spec s;
	struct shoal_err err;

	(void)state;
	/* Missing keys take defaults; unknown keys are ignored (a newer writer). */
	assert_int_equal(
	    manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\",\"future\":1}", &s, &err), 0);
	assert_defaults(&s);
	manifest_spec_free(&s);
	assert_int_equal(manifest_spec_from_json("{\"name\":\"a\"", &s, &err), -1);
	assert_int_equal(manifest_spec_from_json("[]", &s, &err), -1);
	assert_string_equal(err.msg, "spec json: expected an object");
	assert_int_equal(manifest_spec_from_json(
	                     "{\"name\":\"a\",\"image\":\"x\",\"replicas\":\"3\"}", &s, &err),
	                 -1);
	assert_string_equal(err.msg, "spec json: replicas: expected an integer");
	assert_int_equal(manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\",\"restart\":"
	                                         "{\"policy\":\"sometimes\"}}",
	                                         &s, &err),
	                 -1);
	assert_string_equal(err.msg, "spec json: policy: invalid value");
	assert_int_equal(manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\",\"placement\":"
	                                         "{\"constraints\":[\"zone=a\"]}}",
	                                         &s, &err),
	                 -1);
	assert_int_equal(manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\",\"env\":{\"B\":"
	                                         "\"2\",\"A\":\"1\"}}",
	                                         &s, &err),
	                 0);
	assert_string_equal(s.env[0].name, "A");
	/* A row written before the key existed: Docker's default, off. */
	assert_false(s.no_new_privileges);
	manifest_spec_free(&s);
	assert_int_equal(
	    manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\",\"no_new_privileges\":true}",
	                            &s, &err),
	    0);
	assert_true(s.no_new_privileges);
	manifest_spec_free(&s);
	/* Not a boolean: refused, not taken as truthy (a client sending "false" means off). */
	assert_int_equal(manifest_spec_from_json("{\"name\":\"a\",\"image\":\"x\","
	                                         "\"no_new_privileges\":\"false\"}",
	                                         &s, &err),
	                 -1);
	assert_string_equal(err.msg, "spec json: no_new_privileges: expected true or false");
}

static void
test_spec_equal_and_copy(void **state)
{
	struct manifest m;
	struct service_spec c;

	(void)state;
	parse_ok(full_flow, &m);
	manifest_spec_copy(&c, &m.services[0]);
	assert_true(manifest_spec_equal(&c, &m.services[0]));
	/* The copy owns its strings. */
	assert_ptr_not_equal(c.name, m.services[0].name);
	assert_ptr_not_equal(c.env[0].value, m.services[0].env[0].value);

	c.replicas = 4;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.replicas = 3;
	free(c.env[1].value);
	c.env[1].value = xstrdup("bye");
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	free(c.env[1].value);
	c.env[1].value = xstrdup("hello");
	assert_true(manifest_spec_equal(&c, &m.services[0]));
	c.placement.constraints[1].equal = true;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.placement.constraints[1].equal = false;
	c.command.set = false;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.command.set = true;
	c.health.timeout_ms++;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.health.timeout_ms--;
	c.ports[0].published = 8081;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.ports[0].published = 8080;
	/* Turning no_new_privs on or off is a new version: the tasks must restart with it. */
	c.no_new_privileges = true;
	assert_false(manifest_spec_equal(&c, &m.services[0]));
	c.no_new_privileges = false;
	assert_true(manifest_spec_equal(&c, &m.services[0]));
	manifest_spec_free(&c);
	assert_null(c.name);
	manifest_spec_free(&c); /* a freed spec frees again as a no-op */
	manifest_free(&m);
}

static void
test_image_reference(void **state)
{
	static const char *const good[] = {
	    "x",
	    "busybox",
	    "shoal/web:1",
	    "library/busybox:1.35",
	    "x/a.b_c__d-e--f/g",
	    "localhost/x",
	    "localhost:5000/team/app:v1.2-rc_3",
	    "Registry.Example.com/x",
	    "10.0.0.1:5000/x:latest",
	    "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	    "x:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	};
	/* The image with spaces and ';', and the traversal and case tricks. */
	static const char *const bad[] = {
	    "",
	    "a b",
	    "x;rm -rf /",
	    "x:1;rm",
	    "../../x:1",
	    "UPPER/x",
	    "x:../y",
	    "x:",
	    ":1",
	    "x/",
	    "/x",
	    "x//y",
	    "-x",
	    "x-",
	    "x..y",
	    "x___y",
	    "x:.1",
	    "x:-1",
	    "a.b:99999/x",
	    "a.b:/x",
	    "-a.b/x",
	    "x@sha256:00",
	    "x@md5:0123456789abcdef0123456789abcdef",
	    "x\n",
	    "x\t",
	};
	struct shoal_err err;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		if (manifest_check_image(good[i], &err) != 0)
			print_error("refused %s: %s\n", good[i], err.msg);
		assert_int_equal(manifest_check_image(good[i], &err), 0);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (manifest_check_image(bad[i], &err) != -1)
			print_error("accepted \"%s\"\n", bad[i]);
		assert_int_equal(manifest_check_image(bad[i], &err), -1);
	}
	{
		char longname[300];
		/* Docker's 255 counts the name as normalised: "localhost/" and 245 more. */
		memcpy(longname, "localhost/", 10);
		memset(longname + 10, 'a', 246);
		longname[256] = '\0';
		assert_int_equal(manifest_check_image(longname, &err), -1);
		longname[255] = '\0';
		assert_int_equal(manifest_check_image(longname, &err), 0);
	}
}

/* The scheduler's check is this one: what it refused in the issue (replicas 20000 and
 * 4000000000, interval 0, env names "A=B" and "", an image with spaces and ';'), every
 * problem on its own line, and the same spec accepted once fixed. */
static void
test_spec_check(void **state)
{
	struct manifest_errors errs = {0};
	struct service_spec s;
	struct shoal_err err;
	struct manifest m;

	(void)state;
	assert_int_equal(
	    manifest_spec_from_json(
	        "{\"name\":\"web\",\"image\":\"x y;z\",\"replicas\":20000,"
	        "\"env\":{\"A=B\":\"1\",\"\":\"2\",\"OK\":\"3\"},"
	        "\"health\":{\"kind\":\"tcp\",\"port\":80,\"interval_ms\":0},"
	        "\"resources\":{\"cpu_millis\":2000000,\"memory_bytes\":1,\"pids\":9999999},"
	        "\"restart\":{\"max_attempts\":1000001},"
	        "\"update\":{\"parallelism\":10001,\"monitor_ms\":2000000000000000},"
	        "\"stop_grace_ms\":1000000000000001}",
	        &s, &err),
	    0);
	assert_int_equal(manifest_spec_check(&s, "service web: ", &errs), -1);
	{
		static const char *const want[] = {
		    "service web: image: invalid reference \"x y;z\": invalid character "
		    "(allowed: a-z 0-9 . _ - / : @)",
		    "service web: replicas: must be between 0 and 10000, got 20000",
		    "service web: env: invalid variable name \"\" (want no '=', no space, not "
		    "empty)",
		    "service web: env: invalid variable name \"A=B\" (want no '=', no space, not "
		    "empty)",
		    "service web: resources.cpu_millis: must be between 1 and 1024000, got 2000000",
		    "service web: resources.memory: must be between 4194304 and "
		    "9000000000000000000, got 1",
		    "service web: resources.pids: must be between 1 and 4194304, got 9999999",
		    "service web: restart.max_attempts: must be between 0 and 1000000, got 1000001",
		    "service web: health.interval: must be greater than 0, got 0 ms",
		    "service web: update.parallelism: must be between 0 and 10000, got 10001",
		    "service web: update.monitor: must be between 0 and 1000000000000000, got "
		    "2000000000000000",
		    "service web: stop_grace: must be between 0 and 1000000000000000, got "
		    "1000000000000001",
		};
		for (size_t i = 0; i < errs.n; i++)
			if (errs.n != ARRAY_SIZE(want) || strcmp(errs.lines[i], want[i]) != 0)
				print_error("got: %s\n", errs.lines[i]);
		assert_int_equal(errs.n, ARRAY_SIZE(want));
		for (size_t i = 0; i < errs.n; i++)
			assert_string_equal(errs.lines[i], want[i]);
	}
	manifest_errors_free(&errs);
	manifest_spec_free(&s);

	/* 4000000000 replicas aborted the scheduler on an allocation: now a line. */
	assert_int_equal(
	    manifest_spec_from_json("{\"name\":\"web\",\"image\":\"x\",\"replicas\":4000000000}",
	                            &s, &err),
	    0);
	assert_int_equal(manifest_spec_check(&s, NULL, &errs), -1);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0], "replicas: must be between 0 and 10000, got 4000000000");
	manifest_errors_free(&errs);
	manifest_spec_free(&s);

	/* A health check of the wrong shape, and a bad name. */
	assert_int_equal(manifest_spec_from_json("{\"name\":\"Web_1\",\"image\":\"x\","
	                                         "\"health\":{\"kind\":\"http\",\"port\":0}}",
	                                         &s, &err),
	                 0);
	assert_int_equal(manifest_spec_check(&s, NULL, &errs), -1);
	assert_int_equal(errs.n, 3);
	assert_string_equal(errs.lines[1],
	                    "health.http: invalid path (want an absolute URL path like /healthz)");
	assert_string_equal(errs.lines[2], "health.port: must be between 1 and 65535, got 0");
	manifest_errors_free(&errs);
	manifest_spec_free(&s);

	/* A spec too large to travel in a listing or an Assignments frame, from either reader. */
	{
		size_t n = MANIFEST_MAX_SPEC_BYTES;
		char *yaml = xmalloc(n + 64);
		int o = snprintf(yaml, 64, "service: fat\nimage: x\nenv:\n  A: \"");
		memset(yaml + o, 'a', n);
		strcpy(yaml + o + n, "\"\n");
		assert_int_equal(manifest_parse_buffer("t.yaml", yaml, strlen(yaml), &m, &errs),
		                 -1);
		assert_int_equal(errs.n, 1);
		assert_string_equal(
		    errs.lines[0],
		    "t.yaml:1:10: spec: 131570 bytes as JSON, more than 131072 (keep "
		    "large data such as certificates in the image or a mounted file, "
		    "not in env or command)");
		manifest_errors_free(&errs);
		/* Just under the limit is fine. */
		strcpy(yaml + o + n - 1000, "\"\n");
		parse_ok(yaml, &m);
		manifest_free(&m);
		free(yaml);
	}

	/* Every spec the YAML reader builds passes: the CLI and the scheduler agree. */
	parse_ok(full_flow, &m);
	assert_int_equal(manifest_spec_check(&m.services[0], NULL, &errs), 0);
	assert_int_equal(errs.n, 0);
	manifest_free(&m);
}

static void
test_constraint(void **state)
{
	struct manifest_constraint c;
	struct shoal_err err;
	char *s;

	(void)state;
	assert_int_equal(manifest_constraint_parse("  node.labels.disk==ssd ", &c, &err), 0);
	assert_int_equal(c.field, MANIFEST_NODE_LABEL);
	assert_string_equal(c.label, "disk");
	assert_true(c.equal);
	assert_string_equal(c.value, "ssd");
	s = manifest_constraint_format(&c);
	assert_string_equal(s, "node.labels.disk == ssd");
	free(s);
	manifest_constraint_free(&c);
	assert_int_equal(manifest_constraint_parse("node.id != abc123", &c, &err), 0);
	assert_int_equal(c.field, MANIFEST_NODE_ID);
	assert_false(c.equal);
	manifest_constraint_free(&c);
	assert_int_equal(manifest_constraint_parse("node.name == a b", &c, &err), -1);
	assert_int_equal(manifest_constraint_parse("node.name == ", &c, &err), -1);
	assert_int_equal(manifest_constraint_parse("node.hostname == a", &c, &err), -1);
}

/* proxy: {max_conns_per_replica, queue_timeout}: parsed, defaulted, range-checked by the
 * YAML reader and by manifest_spec_check (the scheduler's check of a JSON spec), round-tripped
 * through JSON, and absent from the JSON of a spec that keeps the defaults. */
static void
test_proxy_keys(void **state)
{
	struct manifest m;
	struct service_spec s;
	struct shoal_err err;
	struct manifest_errors errs = {0};
	char *j;

	(void)state;
	parse_ok("service: web\nimage: x\nproxy: {max_conns_per_replica: 4, queue_timeout: 2s}\n",
	         &m);
	assert_int_equal(m.services[0].proxy.max_conns_per_replica, 4);
	assert_int_equal(m.services[0].proxy.queue_timeout_ms, 2000);
	round_trip(&m.services[0]);
	j = manifest_spec_to_json(&m.services[0]);
	assert_non_null(
	    strstr(j, "\"proxy\":{\"max_conns_per_replica\":4,\"queue_timeout_ms\":2000}"));
	free(j);
	manifest_free(&m);
	parse_ok("service: web\nimage: x\n", &m);
	assert_int_equal(m.services[0].proxy.max_conns_per_replica, 0);
	assert_int_equal(m.services[0].proxy.queue_timeout_ms, 30000);
	j = manifest_spec_to_json(&m.services[0]);
	assert_null(strstr(j, "proxy"));
	free(j);
	manifest_free(&m);
	EXPECT(
	    "service: web\nimage: x\nproxy: {max_conns_per_replica: -1, queue: 3}\n",
	    "t.yaml:3:32: proxy.max_conns_per_replica: must be between 0 and 1000000, got \"-1\"",
	    "t.yaml:3:36: unknown key \"queue\" in proxy of service web");
	EXPECT("service: web\nimage: x\nproxy: {queue_timeout: 0}\n",
	       "t.yaml:3:24: proxy.queue_timeout: must be greater than 0");
	assert_int_equal(manifest_spec_from_json("{\"name\":\"web\",\"image\":\"x\",\"proxy\":{"
	                                         "\"max_conns_per_replica\":2000000,"
	                                         "\"queue_timeout_ms\":0}}",
	                                         &s, &err),
	                 0);
	assert_int_equal(manifest_spec_check(&s, NULL, &errs), -1);
	assert_int_equal(errs.n, 2);
	assert_string_equal(
	    errs.lines[0],
	    "proxy.max_conns_per_replica: must be between 0 and 1000000, got 2000000");
	assert_string_equal(errs.lines[1], "proxy.queue_timeout: must be greater than 0, got 0 ms");
	manifest_errors_free(&errs);
	manifest_spec_free(&s);
}

/* proxy.protocol and proxy.mode: parsed, named with FILE:LINE:COL when wrong, checked in a
 * JSON spec, round-tripped, and absent from the JSON of a spec that keeps the defaults. */
static void
test_proxy_mode_keys(void **state)
{
	struct manifest m;
	struct service_spec s;
	struct shoal_err err;
	struct manifest_errors errs = {0};
	char *j;

	(void)state;
	parse_ok("service: web\nimage: x\nproxy: {protocol: proxy-v2, mode: http}\n", &m);
	assert_int_equal(m.services[0].proxy.protocol, MANIFEST_PROXY_PROTOCOL_V2);
	assert_int_equal(m.services[0].proxy.mode, MANIFEST_PROXY_MODE_HTTP);
	round_trip(&m.services[0]);
	j = manifest_spec_to_json(&m.services[0]);
	assert_non_null(strstr(j, "\"mode\":\"http\""));
	assert_non_null(strstr(j, "\"protocol\":\"proxy-v2\""));
	free(j);
	manifest_free(&m);
	parse_ok("service: web\nimage: x\nproxy: {protocol: proxy-v1}\n", &m);
	assert_int_equal(m.services[0].proxy.protocol, MANIFEST_PROXY_PROTOCOL_V1);
	assert_int_equal(m.services[0].proxy.mode, MANIFEST_PROXY_MODE_TCP);
	round_trip(&m.services[0]);
	j = manifest_spec_to_json(&m.services[0]);
	assert_null(strstr(j, "mode"));
	free(j);
	manifest_free(&m);
	EXPECT("service: web\nimage: x\nproxy: {protocol: v2, mode: https}\n",
	       "t.yaml:3:19: proxy.protocol: invalid value \"v2\" (want none, proxy-v1 or "
	       "proxy-v2)",
	       "t.yaml:3:29: proxy.mode: invalid value \"https\" (want tcp or http)");
	assert_int_equal(manifest_spec_from_json("{\"name\":\"web\",\"image\":\"x\",\"proxy\":{"
	                                         "\"mode\":\"udp\"}}",
	                                         &s, &err),
	                 -1);
	assert_string_equal(err.msg, "spec json: mode: invalid value");
	manifest_spec_init(&s);
	s.name = strdup("web");
	s.image = strdup("x");
	s.proxy.protocol = (enum manifest_proxy_protocol)7;
	s.proxy.mode = (enum manifest_proxy_mode)9;
	assert_int_equal(manifest_spec_check(&s, NULL, &errs), -1);
	assert_int_equal(errs.n, 2);
	assert_string_equal(errs.lines[0], "proxy.protocol: invalid value 7");
	assert_string_equal(errs.lines[1], "proxy.mode: invalid value 9");
	manifest_errors_free(&errs);
	manifest_spec_free(&s);
}

/*
 * Each limit of the one table (manifest_internal.h) holds the same for the YAML reader and for a
 * JSON spec as the scheduler takes it (manifest_spec_from_json, then manifest_spec_check: apply
 * and scale alike): both accept the bounds, both refuse one past them, and where the message
 * names the range it names the same one. A limit changed in one reader only fails here.
 */
struct limit_case {
	enum limit_id id;
	const char *yaml; /* the key, with %s for the value */
	const char *json; /* the key, with %s for the value */
	int scale;        /* the value in YAML is the number / scale, three decimals (cpus) */
	bool zero_unset;  /* 0 in the spec means unset: min - 1 == 0 is not a violation */
	long long past;   /* how far past max to test (0: 1); a size in YAML is read as a double */
};

/* tmpl with its one %s replaced by val. Caller frees. */
static char *
limit_subst(const char *tmpl, const char *val)
{
	const char *at = strstr(tmpl, "%s");
	char *out;

	assert_non_null(at);
	assert_true(asprintf(&out, "%.*s%s%s", (int)(at - tmpl), tmpl, val, at + 2) > 0);
	return out;
}

static bool
limit_yaml(const struct limit_case *lc, long long v, char *msg, size_t size)
{
	struct manifest_errors errs = {0};
	struct manifest m;
	char val[64], *key, *doc;
	int r;

	if (lc->scale)
		snprintf(val, sizeof(val), "%.3f", (double)v / lc->scale);
	else
		snprintf(val, sizeof(val), "%lld", v);
	key = limit_subst(lc->yaml, val);
	assert_true(asprintf(&doc, "service: web\nimage: x\n%s\n", key) > 0);
	r = manifest_parse_buffer("t.yaml", doc, strlen(doc), &m, &errs);
	snprintf(msg, size, "%s", errs.n ? errs.lines[0] : "");
	if (r == 0)
		manifest_free(&m);
	manifest_errors_free(&errs);
	free(key);
	free(doc);
	return r == 0;
}

static bool
limit_json(const struct limit_case *lc, long long v, char *msg, size_t size)
{
	struct manifest_errors errs = {0};
	struct service_spec s;
	struct shoal_err err;
	char val[32], *key, *doc;
	int r;

	snprintf(val, sizeof(val), "%lld", v);
	key = limit_subst(lc->json, val);
	assert_true(asprintf(&doc, "{\"name\":\"web\",\"image\":\"x\",%s}", key) > 0);
	if (manifest_spec_from_json(doc, &s, &err) == -1) {
		snprintf(msg, size, "%s", err.msg);
		r = -1;
	} else {
		r = manifest_spec_check(&s, NULL, &errs);
		snprintf(msg, size, "%s", errs.n ? errs.lines[0] : "");
		manifest_spec_free(&s);
	}
	manifest_errors_free(&errs);
	free(key);
	free(doc);
	return r == 0;
}

static void
test_limits_one_table(void **state)
{
	static const struct limit_case cases[] = {
	    {LIM_REPLICAS, "replicas: %s", "\"replicas\":%s", 0, false, 0},
	    {LIM_RESTART_MAX, "restart: {max_attempts: %s}", "\"restart\":{\"max_attempts\":%s}", 0,
	     false, 0},
	    {LIM_MAX_PER_NODE, "placement: {max_per_node: %s}",
	     "\"placement\":{\"max_per_node\":%s}", 0, false, 0},
	    {LIM_PARALLELISM, "update: {parallelism: %s}", "\"update\":{\"parallelism\":%s}", 0,
	     false, 0},
	    {LIM_RETRIES, "health: {tcp: 80, retries: %s}",
	     "\"health\":{\"kind\":\"tcp\",\"port\":80,\"retries\":%s}", 0, false, 0},
	    {LIM_PORT, "ports: [{published: 80, target: %s}]",
	     "\"ports\":[{\"published\":80,\"target\":%s}]", 0, false, 0},
	    {LIM_CPU_MILLIS, "resources: {cpus: %s}", "\"resources\":{\"cpu_millis\":%s}", 1000,
	     true, 0},
	    {LIM_MEMORY, "resources: {memory: %s}", "\"resources\":{\"memory_bytes\":%s}", 0, true,
	     1000000000000000LL},
	    {LIM_PIDS, "resources: {pids: %s}", "\"resources\":{\"pids\":%s}", 0, true, 0},
	    {LIM_DURATION, "restart: {delay: %sms}", "\"restart\":{\"delay_ms\":%s}", 0, false, 0},
	    {LIM_MAX_CONNS, "proxy: {max_conns_per_replica: %s}",
	     "\"proxy\":{\"max_conns_per_replica\":%s}", 0, false, 0},
	};
	char ym[512], jm[512], range[96];

	(void)state;
	assert_int_equal(ARRAY_SIZE(cases), LIM_COUNT);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const struct limit_case *lc = &cases[i];
		long long min = manifest_limits[lc->id].min, max = manifest_limits[lc->id].max;
		long long bad[2] = {max + (lc->past ? lc->past : 1), min - 1};

		assert_int_equal(lc->id, i);
		print_message("limit %zu: %lld to %lld\n", i, min, max);
		assert_true(limit_yaml(lc, min, ym, sizeof(ym)));
		assert_true(limit_json(lc, min, jm, sizeof(jm)));
		assert_true(limit_yaml(lc, max, ym, sizeof(ym)));
		assert_true(limit_json(lc, max, jm, sizeof(jm)));
		for (int k = 0; k < 2; k++) {
			if (k == 1 && bad[k] == 0 && lc->zero_unset)
				continue;
			assert_false(limit_yaml(lc, bad[k], ym, sizeof(ym)));
			assert_false(limit_json(lc, bad[k], jm, sizeof(jm)));
			snprintf(range, sizeof(range), "must be between %lld and %lld", min, max);
			if (strstr(ym, range) != NULL && strstr(jm, "out of range") == NULL) {
				print_message("  yaml: %s\n  json: %s\n", ym, jm);
				assert_non_null(strstr(jm, range));
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_web_example),
	    cmocka_unit_test(test_limits_one_table),
	    cmocka_unit_test(test_block_equals_flow),
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_multiple_documents),
	    cmocka_unit_test(test_units_and_forms),
	    cmocka_unit_test(test_examples_dir),
	    cmocka_unit_test(test_errors_keys),
	    cmocka_unit_test(test_errors_values),
	    cmocka_unit_test(test_errors_health),
	    cmocka_unit_test(test_errors_syntax),
	    cmocka_unit_test(test_three_mistakes),
	    cmocka_unit_test(test_duplicates),
	    cmocka_unit_test(test_error_cap),
	    cmocka_unit_test(test_deep_nesting),
	    cmocka_unit_test(test_deep_nesting_fast),
	    cmocka_unit_test(test_size_cap),
	    cmocka_unit_test(test_image_reference),
	    cmocka_unit_test(test_spec_check),
	    cmocka_unit_test(test_parse_file_missing),
	    cmocka_unit_test(test_json_round_trip),
	    cmocka_unit_test(test_from_json),
	    cmocka_unit_test(test_spec_equal_and_copy),
	    cmocka_unit_test(test_constraint),
	    cmocka_unit_test(test_proxy_keys),
	    cmocka_unit_test(test_proxy_mode_keys),
	};
	return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
