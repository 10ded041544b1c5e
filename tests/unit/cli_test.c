/*
 * Unit tests for the shoal CLI: what a user sees without a scheduler (argument checks, the
 * columns of ps and services, apply's local validation, a call without a token); the client
 * engine itself is tested in rpc_call_test.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <jansson.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "cli/apply.h"
#include "cli/client.h"
#include "cli/logs.h"
#include "cli/nodes.h"
#include "cli/ps.h"
#include "cli/services.h"
#include "err.h"
#include "fixture.h"
#include "log.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "rpc.h"
#include "token.h"
#include "util.h"

/* ---- scale arguments ---- */

static void
test_scale_parse(void **state)
{
	static const struct {
		const char *arg, *err;
	} bad[] = {
	    {"web", "invalid scale \"web\": want SERVICE=REPLICAS, e.g. web=3"},
	    {"=3", "invalid scale \"=3\": want SERVICE=REPLICAS, e.g. web=3"},
	    {"web=", "invalid scale \"web=\": missing replicas after '='"},
	    {"web=-1", "invalid scale \"web=-1\": replicas must be a number from 0 to 10000"},
	    {"web=10001", "invalid scale \"web=10001\": replicas must be a number from 0 to 10000"},
	    {"web=5x", "invalid scale \"web=5x\": replicas must be a number from 0 to 10000"},
	    {"web=99999999999999999999",
	     "invalid scale \"web=99999999999999999999\": replicas must be a number from 0 to "
	     "10000"},
	    {"web= 3", "invalid scale \"web= 3\": replicas must be a number from 0 to 10000"},
	};
	struct shoal_err err;
	char name[64];
	uint32_t n = 42;

	(void)state;
	assert_int_equal(services_parse_scale("web=5", name, sizeof(name), &n, &err), 0);
	assert_string_equal(name, "web");
	assert_int_equal(n, 5);
	assert_int_equal(services_parse_scale("api-2=0", name, sizeof(name), &n, &err), 0);
	assert_string_equal(name, "api-2");
	assert_int_equal(n, 0);
	assert_int_equal(services_parse_scale("web=10000", name, sizeof(name), &n, &err), 0);
	assert_int_equal(n, 10000);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		n = 42;
		assert_int_equal(services_parse_scale(bad[i].arg, name, sizeof(name), &n, &err),
		                 -1);
		assert_string_equal(err.msg, bad[i].err);
		assert_int_equal(n, 42);
	}
	/* A name that does not fit the caller's buffer is refused, not cut. */
	assert_int_equal(services_parse_scale("abcdefgh=1", name, 8, &n, &err), -1);
	assert_string_equal(err.msg, "invalid scale \"abcdefgh=1\": service name too long");
}

/* ---- PORTS column ---- */

static void
test_format_ports(void **state)
{
	struct manifest_port ports[] = {{8080, 8080}, {8081, 80}, {0, 9000}};
	struct service_spec spec;
	char buf[64], tiny[8];

	(void)state;
	manifest_spec_init(&spec);
	assert_string_equal(services_format_ports(&spec, buf, sizeof(buf)), "-");
	spec.ports = ports;
	spec.n_ports = 1;
	assert_string_equal(services_format_ports(&spec, buf, sizeof(buf)), "8080->8080");
	spec.n_ports = 3;
	assert_string_equal(services_format_ports(&spec, buf, sizeof(buf)),
	                    "8080->8080,8081->80,9000");
	/* Truncated, still terminated. */
	assert_string_equal(services_format_ports(&spec, tiny, sizeof(tiny)), "8080->8");
	spec.ports = NULL;
	spec.n_ports = 0;
	manifest_spec_free(&spec);
}

/* ---- ps: STATE column and order ---- */

static Shoal__TaskInfo
task(const char *name, const char *service, uint32_t slot, const char *desired, Shoal__TaskState st,
     int64_t since)
{
	Shoal__TaskInfo t = SHOAL__TASK_INFO__INIT;

	t.name = (char *)name;
	t.service = (char *)service;
	t.slot = slot;
	t.desired = (char *)desired;
	t.state = st;
	t.state_since_ms = since;
	t.exit_code = -1;
	return t;
}

static void
test_ps_state_text(void **state)
{
	Shoal__TaskInfo t =
	    task("web.1.a", "web", 1, "running", SHOAL__TASK_STATE__TASK_RUNNING, 0);
	char buf[96];

	(void)state;
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "running");
	t.state = SHOAL__TASK_STATE__TASK_FAILED;
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "failed"); /* no code known */
	t.exit_code = 1;
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "failed (exit 1)");
	/* The agent's messages already give the code: not twice. */
	t.message = "exited with code 1";
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "failed");
	t.exit_code = 137;
	t.message = "OOM-killed (exit 137)";
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "failed");
	/* "exit 137" does not tell exit 1. */
	t.exit_code = 1;
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "failed (exit 1)");
	t.state = SHOAL__TASK_STATE__TASK_STOPPED;
	t.exit_code = 0;
	t.message = "";
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "stopped (exit 0)");
	/* Only finished tasks carry a code. */
	t.state = SHOAL__TASK_STATE__TASK_STOPPING;
	assert_string_equal(ps_state_text(&t, buf, sizeof(buf)), "stopping");
	assert_string_equal(ps_state_name(SHOAL__TASK_STATE__TASK_PENDING), "pending");
	assert_string_equal(ps_state_name(SHOAL__TASK_STATE__TASK_PREPARING), "preparing");
	assert_string_equal(ps_state_name(99), "unknown");
	assert_string_equal(ps_state_name(-1), "unknown");
}

/* -q and -f/--filter, one parser for ps, services and nodes: a missing value is an error
 * (services and nodes once took it for an unknown argument). */
static void
test_ps_list_option(void **state)
{
	static const char *const keys[] = {"name", "status", NULL};
	char *argv[] = {"nodes", "-q",      "--filter", "status=down", "-x",
	                "-f",    "bogus=1", "-f",       NULL};
	struct cli_filter f = {0};
	bool quiet = false;
	int argc = 8, i = 1;

	(void)state;
	assert_int_equal(ps_list_option("nodes", argc, argv, &i, keys, &f, &quiet), 1);
	assert_true(quiet);
	assert_int_equal(i, 1);
	i = 2;
	assert_int_equal(ps_list_option("nodes", argc, argv, &i, keys, &f, &quiet), 1);
	assert_int_equal(i, 3); /* past its value */
	assert_int_equal(f.n, 1);
	assert_false(ps_filter_match(&f, "status", "ready"));
	assert_true(ps_filter_match(&f, "status", "down"));
	i = 4;
	assert_int_equal(ps_list_option("nodes", argc, argv, &i, keys, &f, &quiet), 0);
	i = 5;
	assert_int_equal(ps_list_option("nodes", argc, argv, &i, keys, &f, &quiet), -1);
	i = 7;
	assert_int_equal(ps_list_option("nodes", argc, argv, &i, keys, &f, &quiet), -1);
}

static void
test_ps_sort(void **state)
{
	Shoal__TaskInfo v[] = {
	    task("web.2.old", "web", 2, "shutdown", SHOAL__TASK_STATE__TASK_FAILED, 100),
	    task("web.1.new", "web", 1, "running", SHOAL__TASK_STATE__TASK_STARTING, 300),
	    task("api.1.a", "api", 1, "running", SHOAL__TASK_STATE__TASK_RUNNING, 50),
	    task("web.2.cur", "web", 2, "running", SHOAL__TASK_STATE__TASK_RUNNING, 200),
	    task("web.1.cur", "web", 1, "running", SHOAL__TASK_STATE__TASK_RUNNING, 100),
	    task("web.10.a", "web", 10, "running", SHOAL__TASK_STATE__TASK_RUNNING, 10),
	    task("web.2.older", "web", 2, "shutdown", SHOAL__TASK_STATE__TASK_STOPPED, 50),
	};
	static const char *const want[] = {"api.1.a",   "web.1.cur",   "web.1.new", "web.2.cur",
	                                   "web.2.old", "web.2.older", "web.10.a"};
	Shoal__TaskInfo *p[ARRAY_SIZE(v)];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(v); i++)
		p[i] = &v[i];
	ps_sort(p, ARRAY_SIZE(p));
	for (size_t i = 0; i < ARRAY_SIZE(p); i++)
		assert_string_equal(p[i]->name, want[i]);
}

static void
test_ps_task_json(void **state)
{
	Shoal__TaskInfo t = task("web.1.a", "web", 1, "running", SHOAL__TASK_STATE__TASK_FAILED, 7);
	json_t *j;

	(void)state;
	t.id = "0123456789ab";
	t.node = "node1";
	t.ip = "10.244.1.2";
	t.message = "exited with code 3";
	t.exit_code = 3;
	t.version = 2;
	t.health = "";
	t.started_at_ms = 5;
	j = ps_task_json(&t);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
	assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 3);
	assert_int_equal(json_integer_value(json_object_get(j, "slot")), 1);
	assert_string_equal(json_string_value(json_object_get(j, "node")), "node1");
	assert_int_equal(json_object_size(j), 15); /* every TaskInfo field */
	json_decref(j);
}

/* ---- apply: what would be sent, or nothing ---- */

struct tmpdir {
	char dir[64];
};

static char *
write_file(const struct tmpdir *d, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", d->dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int
tmp_setup(void **state)
{
	struct tmpdir *d = xcalloc(1, sizeof(*d));

	if (fixture_tmpdir(d->dir, sizeof(d->dir), "cli") == -1)
		return -1;
	*state = d;
	return 0;
}

static int
tmp_teardown(void **state)
{
	struct tmpdir *d = *state;

	if (fixture_rmtree(d->dir) == -1)
		return -1;
	free(d);
	return 0;
}

static void
test_apply_bad_manifest(void **state)
{
	struct tmpdir *d = *state;
	cleanup_free char *bad = write_file(d, "bad.yaml",
	                                    "service: web\n"
	                                    "image: shoal/web:1\n"
	                                    "replica: 3\n"
	                                    "resources: {memory: 32MB}\n");
	cleanup_free char *good = write_file(d, "good.yaml", "service: api\nimage: shoal/api:1\n");
	cleanup_free char *want1 = xasprintf("%s:3:1: ", bad);
	cleanup_free char *want2 = xasprintf("%s:4:21: ", bad);
	const char *files[] = {good, bad};
	struct manifest_errors errs = {0};
	struct apply_request r;

	(void)state;
	assert_int_equal(apply_build(files, 2, stdin, &r, &errs), -1);
	/* Nothing to send, and every mistake with its place. */
	assert_int_equal(r.n, 0);
	assert_null(r.specs_json);
	assert_int_equal(errs.n, 2);
	assert_memory_equal(errs.lines[0], want1, strlen(want1));
	assert_non_null(strstr(errs.lines[0], "unknown key \"replica\""));
	assert_memory_equal(errs.lines[1], want2, strlen(want2));
	manifest_errors_free(&errs);
	apply_request_free(&r);
}

static void
test_apply_across_files(void **state)
{
	struct tmpdir *d = *state;
	cleanup_free char *a =
	    write_file(d, "a.yaml", "service: web\nimage: shoal/web:1\nports: [\"8080:80\"]\n");
	cleanup_free char *b =
	    write_file(d, "b.yaml", "service: api\nimage: shoal/api:1\nports: [\"8080:81\"]\n");
	cleanup_free char *missing = xasprintf("%s/nope.yaml", d->dir);
	cleanup_free char *want = xasprintf("%s:3:9: ", b);
	const char *files[] = {a, b, missing};
	struct manifest_errors errs = {0};
	struct apply_request r;

	(void)state;
	assert_int_equal(apply_build(files, 3, stdin, &r, &errs), -1);
	assert_int_equal(r.n, 0);
	assert_int_equal(errs.n, 2);
	assert_non_null(strstr(errs.lines[0], "nope.yaml: open"));
	assert_memory_equal(errs.lines[1], want, strlen(want));
	assert_non_null(strstr(errs.lines[1], "8080"));
	manifest_errors_free(&errs);
}

/* A port another service of the cluster publishes is named where the file writes it; the
 * service's own port (an update) is no clash. */
static void
test_apply_cluster_port(void **state)
{
	struct tmpdir *d = *state;
	cleanup_free char *a = write_file(d, "sq.yaml",
	                                  "service: sq\nimage: shoal/web:1\n"
	                                  "ports:\n  - {published: 9300, target: 80}\n");
	cleanup_free char *want = xasprintf("%s:4:17: ports[0]: port 9300 is already published by "
	                                    "service db (in the cluster)",
	                                    a);
	const struct apply_owner owners[] = {{5432, "db"}, {9300, "db"}};
	const struct apply_owner mine[] = {{9300, "sq"}};
	const char *files[] = {a};
	struct manifest_errors errs = {0};
	struct apply_request r;

	assert_int_equal(apply_build_owned(files, 1, stdin, owners, 2, &r, &errs), -1);
	assert_int_equal(r.n, 0);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0], want);
	manifest_errors_free(&errs);
	assert_int_equal(apply_build_owned(files, 1, stdin, mine, 1, &r, &errs), 0);
	assert_int_equal(r.n, 1);
	apply_request_free(&r);
}

static void
test_apply_stdin(void **state)
{
	struct tmpdir *d = *state;
	static char text[] = "service: web\nimage: shoal/web:1\nreplicas: 2\n---\n"
	                     "service: api\nimage: shoal/api:1\n";
	static char bad[] = "service: web\nimage: shoal/web:1\nreplicas: many\n";
	cleanup_free char *f = write_file(d, "c.yaml", "service: db\nimage: shoal/db:1\n");
	const char *files[] = {"-", f};
	const char *twice[] = {"-", "-"};
	struct manifest_errors errs = {0};
	struct apply_request r;
	struct service_spec spec;
	struct shoal_err err;
	FILE *in = fmemopen(text, strlen(text), "r");

	assert_int_equal(apply_build(files, 2, in, &r, &errs), 0);
	fclose(in);
	assert_int_equal(errs.n, 0);
	assert_int_equal(r.n, 3);
	/* Canonical JSON, in file and document order. */
	assert_int_equal(manifest_spec_from_json(r.specs_json[0], &spec, &err), 0);
	assert_string_equal(spec.name, "web");
	assert_int_equal(spec.replicas, 2);
	manifest_spec_free(&spec);
	assert_int_equal(manifest_spec_from_json(r.specs_json[2], &spec, &err), 0);
	assert_string_equal(spec.name, "db");
	manifest_spec_free(&spec);
	apply_request_free(&r);

	in = fmemopen(bad, strlen(bad), "r");
	assert_int_equal(apply_build(files, 1, in, &r, &errs), -1);
	fclose(in);
	assert_int_equal(errs.n, 1);
	assert_memory_equal(errs.lines[0], "<stdin>:3:11: ", 14);
	manifest_errors_free(&errs);

	in = fmemopen(text, strlen(text), "r");
	assert_int_equal(apply_build(twice, 2, in, &r, &errs), -1);
	fclose(in);
	assert_int_equal(errs.n, 1);
	assert_string_equal(errs.lines[0], "<stdin>: given twice (-f -)");
	manifest_errors_free(&errs);
	(void)state;
}

/* ---- logs ---- */

static void
test_logs_printer(void **state)
{
	struct logs_printer p = {.prefix = true};
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);

	(void)state;
	logs_printer_write(&p, "web.1.a", "hello\nwor", 9, f);
	logs_printer_write(&p, "web.2.b", "other\n", 6, f);
	logs_printer_write(&p, "web.1.a", "ld\n\nlast", 8, f);
	logs_printer_flush(&p, f);
	fclose(f);
	assert_string_equal(out, "web.1.a | hello\n"
	                         "web.2.b | other\n"
	                         "web.1.a | world\n"
	                         "web.1.a | \n"
	                         "web.1.a | last\n");
	free(out);
	logs_printer_free(&p);

	/* A task's own logs go through untouched. */
	p.prefix = false;
	f = open_memstream(&out, &len);
	logs_printer_write(&p, "web.1.a", "a\nb", 3, f);
	logs_printer_flush(&p, f);
	fclose(f);
	assert_string_equal(out, "a\nb");
	free(out);
	logs_printer_free(&p);
}

static void
test_logs_args(void **state)
{
	int tail = 7;

	(void)state;
	assert_true(logs_names_service("web"));
	assert_true(logs_names_service("api-2"));
	assert_false(logs_names_service("web.2.k3x9"));
	assert_false(logs_names_service("0123456789ab"));
	assert_int_equal(logs_parse_tail("10", &tail), 0);
	assert_int_equal(tail, 10);
	assert_int_equal(logs_parse_tail("all", &tail), 0);
	assert_int_equal(tail, -1);
	assert_int_equal(logs_parse_tail("-3", &tail), -1);
	assert_int_equal(logs_parse_tail("3x", &tail), -1);
	assert_int_equal(logs_parse_tail("99999999999", &tail), -1);
}

/* ---- the CLI's side of a call: no admin token, no request ---- */

static enum rpc_call_action
never(const Shoal__Envelope *env, void *arg, struct shoal_err *err)
{
	(void)env;
	(void)arg;
	(void)err;
	fail_msg("no reply expected");
	return RPC_CALL_FAIL;
}

static void
test_client_no_token(void **state)
{
	struct cli_ctx ctx = {.timeout_ms = 300, .scheduler = "127.0.0.1:1"};
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT, *reply = NULL;
	Shoal__LogsRequest lr = SHOAL__LOGS_REQUEST__INIT;
	struct shoal_err err;

	(void)state;
	req.body_case = SHOAL__ENVELOPE__BODY_LOGS;
	req.logs = &lr;
	assert_int_equal(client_stream(&ctx, &req, 0, never, NULL, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "no admin token"));
	assert_int_equal(client_call(&ctx, &req, &reply, &err), -1);
	assert_non_null(strstr(err.msg, "no admin token"));
	assert_null(reply);
	ctx.scheduler = "127.0.0.1:99999";
	assert_int_equal(client_call(&ctx, &req, &reply, &err), -1);
	assert_memory_equal(err.msg, "--scheduler: ", 13);
}

static int
group_setup(void **state)
{
	(void)state;
	if (fixture_rpc_init(NULL) == -1)
		return -1;
	log_init("cli_test", LOG_ERR);
	return 0;
}

/* The stderr of cmd(ctx, argc, argv), whose exit code must be 1: a usage mistake is caught
 * before any request (no scheduler here). Caller frees. */
static char *
usage_error(int (*cmd)(struct cli_ctx *, int, char **), int argc, char **argv)
{
	struct cli_ctx ctx = {.timeout_ms = 100, .scheduler = "127.0.0.1:1"};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = tmpfile();
	int saved = dup(2), rc;

	assert_non_null(f);
	fflush(stderr);
	dup2(fileno(f), 2);
	rc = cmd(&ctx, argc, argv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	assert_int_equal(rc, 1);
	rewind(f);
	assert_true(getdelim(&buf, &len, '\0', f) > 0);
	fclose(f);
	return buf;
}

/* `shoal node rm` and `node update` share their argument handling: the same words for the
 * same mistakes. */
static void
test_node_args(void **state)
{
	static const struct {
		char *argv[5];
		const char *want;
	} cases[] = {
	    {{"node", "rm"}, "shoal node rm: want one NODE\n"},
	    {{"node", "rm", "a", "b"}, "shoal node rm: unexpected argument b\n"},
	    {{"node", "rm", "-x", "a"}, "shoal node rm: unexpected argument -x\n"},
	    {{"node", "update", "--label-add", "k=v"}, "shoal node update: want one NODE\n"},
	    {{"node", "update", "a", "b"}, "shoal node update: unexpected argument b\n"},
	    {{"node", "update", "a"}, "shoal node update: nothing to change"},
	    {{"node", "update", "a", "--label-rm"}, "shoal node update: --label-rm wants a value"},
	    {{"node", "ls"}, "shoal node: want a subcommand (rm, update)"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int argc = 0;
		char *out;

		while (argc < 5 && cases[i].argv[argc] != NULL)
			argc++;
		out = usage_error(nodes_node_cmd, argc, (char **)cases[i].argv);
		if (strncmp(out, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("case %zu: got \"%s\"", i, out);
		free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scale_parse),
	    cmocka_unit_test(test_format_ports),
	    cmocka_unit_test(test_ps_state_text),
	    cmocka_unit_test(test_ps_list_option),
	    cmocka_unit_test(test_ps_sort),
	    cmocka_unit_test(test_ps_task_json),
	    cmocka_unit_test_setup_teardown(test_apply_bad_manifest, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_apply_across_files, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_apply_cluster_port, tmp_setup, tmp_teardown),
	    cmocka_unit_test_setup_teardown(test_apply_stdin, tmp_setup, tmp_teardown),
	    cmocka_unit_test(test_logs_printer),
	    cmocka_unit_test(test_logs_args),
	    cmocka_unit_test(test_node_args),
	    cmocka_unit_test(test_client_no_token),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
