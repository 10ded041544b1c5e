#include "services.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "err.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "ps.h"
#include "shoal.pb-c.h"
#include "table.h"
#include "util.h"
#include "watch.h"

const char services_usage[] =
    "usage: shoal services [--stats] [-q] [--filter name=NAME] [-o json]\n"
    "\n"
    "List the services: NAME IMAGE REPLICAS PORTS UPDATED. REPLICAS is running/desired,\n"
    "PORTS published->target, UPDATED the time since the last change, followed by the update\n"
    "state when one is in progress (e.g. removing).\n"
    "\n"
    "Options:\n"
    "  --stats            also print the proxy's counters per service and backend\n"
    "  -q, --quiet        print only the service names\n"
    "  -f, --filter K=V   only services with name=NAME (repeat: all must match)\n"
    "  -o json            print the same as a JSON array, each with its full spec\n";

const char services_inspect_usage[] =
    "usage: shoal inspect SERVICE\n"
    "\n"
    "Print one service as JSON: its state, its spec (and the previous one after an update)\n"
    "and its tasks.\n";

const char services_scale_usage[] =
    "usage: shoal scale SERVICE=REPLICAS [SERVICE=REPLICAS ...] [-d]\n"
    "\n"
    "Set the number of replicas (0 to 10000) of one or more services, all or nothing, then\n"
    "wait until they run (as shoal apply does; exits 1 if one makes no progress for its\n"
    "update.timeout).\n"
    "\n"
    "Options:\n"
    "  -d, --detach   return at once, without waiting\n";

const char services_rm_usage[] =
    "usage: shoal rm SERVICE [SERVICE ...]\n"
    "\n"
    "Remove services: their tasks are stopped, then the service is gone. Prints each removed\n"
    "name. All or nothing: when a SERVICE does not exist, none is removed, the unknown ones\n"
    "are named and the exit status is 1.\n";

char *
services_format_ports(const struct service_spec *spec, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (size_t i = 0; i < spec->n_ports && off < len; i++) {
		const struct manifest_port *p = &spec->ports[i];
		int n;
		if (p->published)
			n = snprintf(buf + off, len - off, "%s%u->%u", i ? "," : "", p->published,
			             p->target);
		else
			n = snprintf(buf + off, len - off, "%s%u", i ? "," : "", p->target);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "-");
	return buf;
}

int
services_parse_scale(const char *arg, char *name, size_t namelen, uint32_t *replicas,
                     struct shoal_err *err)
{
	const char *eq = strchr(arg, '=');
	const char *digits;
	uint32_t v = 0;

	if (eq == NULL || eq == arg)
		return err_set(err, 0, "invalid scale \"%.64s\": want SERVICE=REPLICAS, e.g. web=3",
		               arg);
	if ((size_t)(eq - arg) >= namelen)
		return err_set(err, 0, "invalid scale \"%.64s\": service name too long", arg);
	digits = eq + 1;
	if (digits[0] == '\0')
		return err_set(err, 0, "invalid scale \"%.64s\": missing replicas after '='", arg);
	for (const char *p = digits; *p; p++) {
		if (*p < '0' || *p > '9' || v > SERVICES_MAX_REPLICAS)
			return err_set(err, 0,
			               "invalid scale \"%.64s\": replicas must be a number from 0 "
			               "to %d",
			               arg, SERVICES_MAX_REPLICAS);
		v = v * 10 + (uint32_t)(*p - '0');
	}
	if (v > SERVICES_MAX_REPLICAS)
		return err_set(err, 0,
		               "invalid scale \"%.64s\": replicas must be a number from 0 to %d",
		               arg, SERVICES_MAX_REPLICAS);
	memcpy(name, arg, (size_t)(eq - arg));
	name[eq - arg] = '\0';
	*replicas = v;
	return 0;
}

/* Ask for the services (all of them when name is NULL). The reply is the caller's to free. */
static Shoal__ListServicesReply *
services_list(struct cli_ctx *ctx, const char *name, bool stats, Shoal__Envelope **reply)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ListServices ls = SHOAL__LIST_SERVICES__INIT;
	struct shoal_err err;

	if (name)
		ls.name = (char *)name;
	ls.stats = stats;
	req.body_case = SHOAL__ENVELOPE__BODY_LIST_SERVICES;
	req.list_services = &ls;
	if (client_call(ctx, &req, reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return NULL;
	}
	if ((*reply)->body_case != SHOAL__ENVELOPE__BODY_LIST_SERVICES_REPLY) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		shoal__envelope__free_unpacked(*reply, NULL);
		*reply = NULL;
		return NULL;
	}
	return (*reply)->list_services_reply;
}

/* The spec as JSON to embed: its own text parsed, or null if the scheduler sent none. */
static json_t *
services_spec_json(const char *text)
{
	json_t *j;

	if (text == NULL || text[0] == '\0')
		return json_null();
	j = json_loads(text, 0, NULL);
	return j ? j : json_string(text);
}

static json_t *
services_stats_json(const Shoal__ServiceInfo *s)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < s->n_stats; i++) {
		const Shoal__ServiceStats *st = s->stats[i];
		json_t *o = json_pack(
		    "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "backend", st->backend,
		    "connections", (json_int_t)st->connections, "active", (json_int_t)st->active,
		    "bytes_in", (json_int_t)st->bytes_in, "bytes_out", (json_int_t)st->bytes_out,
		    "connect_failures", (json_int_t)st->connect_failures, "retries",
		    (json_int_t)st->retries, "busy_timeouts", (json_int_t)st->busy_timeouts);

		/* The queue is the service's: on its total line only. */
		if (st->backend[0] == '\0') {
			json_object_set_new(o, "queue_len",
			                    json_integer((json_int_t)st->queue_len));
			json_object_set_new(o, "queued", json_integer((json_int_t)st->queued));
			json_object_set_new(o, "queue_wait_ms",
			                    json_integer((json_int_t)st->queue_wait_ms));
			json_object_set_new(o, "queue_timeouts",
			                    json_integer((json_int_t)st->queue_timeouts));
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

static json_t *
services_info_json(const Shoal__ServiceInfo *s, bool stats)
{
	json_t *spec = services_spec_json(s->spec_json);
	json_t *ports = json_object_get(spec, "ports");
	json_t *o = json_pack(
	    "{s:s, s:O, s:{s:i, s:i}, s:o, s:I, s:I, s:I, s:s, s:o}", "name", s->name, "image",
	    json_object_get(spec, "image") ? json_object_get(spec, "image") : json_null(),
	    "replicas", "running", (int)s->replicas_running, "desired", (int)s->replicas_desired,
	    "ports", ports ? json_incref(ports) : json_array(), "version", (json_int_t)s->version,
	    "created_ms", (json_int_t)s->created_ms, "updated_ms", (json_int_t)s->updated_ms,
	    "update_state", s->update_state, "spec", spec);

	if (stats)
		json_object_set_new(o, "stats", services_stats_json(s));
	{
		json_t *pe = json_array();
		for (size_t i = 0; i < s->n_port_errors; i++)
			json_array_append_new(pe, json_string(s->port_errors[i]));
		json_object_set_new(o, "port_errors", pe);
	}
	return o;
}

static int
services_name_compare(const void *a, const void *b)
{
	return strcmp((*(const Shoal__ServiceInfo *const *)a)->name,
	              (*(const Shoal__ServiceInfo *const *)b)->name);
}

static void
services_print_stats(const Shoal__ListServicesReply *lr)
{
	static const char *const header[] = {"SERVICE",  "BACKEND",   "CONNECTIONS",   "ACTIVE",
	                                     "BYTES IN", "BYTES OUT", "FAILURES",      "RETRIES",
	                                     "QUEUED",   "WAIT",      "QUEUE TIMEOUTS"};
	struct table t;
	size_t rows = 0;

	table_init(&t, ARRAY_SIZE(header), header);
	for (size_t i = 0; i < lr->n_services; i++) {
		const Shoal__ServiceInfo *s = lr->services[i];
		for (size_t j = 0; j < s->n_stats; j++) {
			const Shoal__ServiceStats *st = s->stats[j];
			char conns[24], active[24], in[32], out[32], fails[24], retries[24];
			char queued[24] = "-", wait[24] = "-", qto[24] = "-";
			/* QUEUED: waiting now; WAIT: the mean wait of those that got a slot. */
			if (st->backend[0] == '\0') {
				snprintf(queued, sizeof(queued), "%llu",
				         (unsigned long long)st->queue_len);
				snprintf(wait, sizeof(wait), "%llums",
				         (unsigned long long)(st->queued
				                                  ? st->queue_wait_ms / st->queued
				                                  : 0));
				snprintf(qto, sizeof(qto), "%llu",
				         (unsigned long long)st->queue_timeouts);
			}
			snprintf(conns, sizeof(conns), "%llu", (unsigned long long)st->connections);
			snprintf(active, sizeof(active), "%llu", (unsigned long long)st->active);
			util_format_bytes((int64_t)st->bytes_in, in, sizeof(in));
			util_format_bytes((int64_t)st->bytes_out, out, sizeof(out));
			snprintf(fails, sizeof(fails), "%llu",
			         (unsigned long long)st->connect_failures);
			snprintf(retries, sizeof(retries), "%llu", (unsigned long long)st->retries);
			const char *row[] = {s->name, st->backend[0] ? st->backend : "total",
			                     conns,   active,
			                     in,      out,
			                     fails,   retries,
			                     queued,  wait,
			                     qto};
			table_add(&t, row);
			rows++;
		}
	}
	fputc('\n', stdout);
	if (rows)
		table_print(&t, stdout);
	else
		puts("no proxy statistics yet");
	table_free(&t);
}

int
services_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const header[] = {"NAME", "IMAGE", "REPLICAS", "PORTS", "UPDATED"};
	Shoal__Envelope *reply = NULL;
	Shoal__ListServicesReply *lr;
	int64_t now = util_wall_ms();
	static const char *const keys[] = {"name", NULL};
	struct cli_filter filter = {0};
	bool stats = false, quiet = false;

	for (int i = 1; i < argc; i++) {
		int o = ps_list_option("services", argc, argv, &i, keys, &filter, &quiet);
		if (o == -1)
			return 1;
		if (o == 1)
			continue;
		if (strcmp(argv[i], "--stats") == 0) {
			stats = true;
		} else {
			fprintf(stderr, "shoal services: unexpected argument %s\n%s", argv[i],
			        services_usage);
			return 1;
		}
	}
	lr = services_list(ctx, NULL, stats, &reply);
	if (lr == NULL)
		return 1;
	{
		size_t k = 0;
		for (size_t i = 0; i < lr->n_services; i++)
			if (ps_filter_match(&filter, "name", lr->services[i]->name))
				lr->services[k++] = lr->services[i];
			else
				shoal__service_info__free_unpacked(lr->services[i], NULL);
		lr->n_services = k;
	}
	if (lr->n_services > 1)
		qsort(lr->services, lr->n_services, sizeof(*lr->services), services_name_compare);
	if (quiet && !ctx->json) {
		for (size_t i = 0; i < lr->n_services; i++)
			printf("%s\n", lr->services[i]->name);
	} else if (ctx->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < lr->n_services; i++)
			json_array_append_new(arr, services_info_json(lr->services[i], stats));
		ps_print_json(arr);
	} else {
		struct table t;
		table_init(&t, ARRAY_SIZE(header), header);
		for (size_t i = 0; i < lr->n_services; i++) {
			const Shoal__ServiceInfo *s = lr->services[i];
			struct service_spec spec;
			struct shoal_err err;
			char replicas[32], ports[256], age[16], updated[300];
			bool parsed = manifest_spec_from_json(s->spec_json, &spec, &err) == 0;

			snprintf(replicas, sizeof(replicas), "%u/%u", s->replicas_running,
			         s->replicas_desired);
			if (parsed)
				services_format_ports(&spec, ports, sizeof(ports));
			else
				snprintf(ports, sizeof(ports), "?");
			util_format_age(now - s->updated_ms, age, sizeof(age));
			if (s->update_state[0])
				snprintf(updated, sizeof(updated), "%s (%s)", age, s->update_state);
			else
				snprintf(updated, sizeof(updated), "%s", age);
			const char *row[] = {s->name, parsed && spec.image ? spec.image : "?",
			                     replicas, ports, updated};
			table_add(&t, row);
			if (parsed)
				manifest_spec_free(&spec);
		}
		table_print(&t, stdout);
		table_free(&t);
		/* A published port some node cannot listen on: never only in that node's log. */
		for (size_t i = 0; i < lr->n_services; i++)
			for (size_t j = 0; j < lr->services[i]->n_port_errors; j++)
				printf("note: %s: %s\n", lr->services[i]->name,
				       lr->services[i]->port_errors[j]);
		if (stats)
			services_print_stats(lr);
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return 0;
}

int
services_inspect_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ListTasks lt = SHOAL__LIST_TASKS__INIT;
	Shoal__Envelope *sreply = NULL, *treply = NULL;
	Shoal__ListServicesReply *lr;
	Shoal__ListTasksReply *tr;
	const Shoal__ServiceInfo *s;
	struct shoal_err err;
	json_t *o, *tasks;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "shoal inspect: want one SERVICE\n%s", services_inspect_usage);
		return 1;
	}
	lr = services_list(ctx, argv[1], true, &sreply);
	if (lr == NULL)
		return 1;
	if (lr->n_services != 1) {
		fprintf(stderr, "shoal: no such service: %s\n", argv[1]);
		shoal__envelope__free_unpacked(sreply, NULL);
		return 1;
	}
	s = lr->services[0];
	lt.service = argv[1];
	req.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS;
	req.list_tasks = &lt;
	if (client_call(ctx, &req, &treply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		shoal__envelope__free_unpacked(sreply, NULL);
		return 1;
	}
	if (treply->body_case != SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		shoal__envelope__free_unpacked(treply, NULL);
		shoal__envelope__free_unpacked(sreply, NULL);
		return 1;
	}
	tr = treply->list_tasks_reply;
	o = services_info_json(s, s->n_stats > 0);
	/* The manifest digest the current version runs (pinned by the first task that
	 * reported one), null until then. */
	json_object_set_new(o, "image_digest",
	                    s->image_digest[0] ? json_string(s->image_digest) : json_null());
	if (s->prev_spec_json[0])
		json_object_set_new(o, "prev_spec", services_spec_json(s->prev_spec_json));
	ps_sort(tr->tasks, tr->n_tasks);
	tasks = json_array();
	for (size_t i = 0; i < tr->n_tasks; i++)
		json_array_append_new(tasks, ps_task_json(tr->tasks[i]));
	json_object_set_new(o, "tasks", tasks);
	ps_print_json(o);
	shoal__envelope__free_unpacked(treply, NULL);
	shoal__envelope__free_unpacked(sreply, NULL);
	return 0;
}

int
services_scale_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	bool detach = watch_detach_arg(&argc, argv);
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ScaleRequest sr = SHOAL__SCALE_REQUEST__INIT;
	Shoal__Envelope *reply = NULL;
	size_t n = argc > 1 ? (size_t)argc - 1 : 0;
	Shoal__Scale *scales = xcalloc(n ? n : 1, sizeof(*scales));
	Shoal__Scale **ptrs = xcalloc(n ? n : 1, sizeof(*ptrs));
	char(*names)[64] = xcalloc(n ? n : 1, sizeof(*names));
	struct shoal_err err;
	int rc = 1;

	if (n == 0) {
		fprintf(stderr, "shoal scale: want SERVICE=REPLICAS\n%s", services_scale_usage);
		goto out;
	}
	/* Check every argument before sending: a scale is all or nothing. */
	for (size_t i = 0; i < n; i++) {
		uint32_t replicas;
		if (services_parse_scale(argv[i + 1], names[i], sizeof(names[i]), &replicas,
		                         &err) == -1) {
			fprintf(stderr, "shoal: %s\n", err.msg);
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(names[i], names[j]) == 0) {
				fprintf(stderr, "shoal: service %s given twice\n", names[i]);
				goto out;
			}
		}
		shoal__scale__init(&scales[i]);
		scales[i].service = names[i];
		scales[i].replicas = replicas;
		ptrs[i] = &scales[i];
	}
	sr.scales = ptrs;
	sr.n_scales = n;
	req.body_case = SHOAL__ENVELOPE__BODY_SCALE;
	req.scale = &sr;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		goto out;
	}
	if (reply->body_case != SHOAL__ENVELOPE__BODY_OK) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s scaled to %u\n", scales[i].service, scales[i].replicas);
	fflush(stdout);
	rc = 0;
	if (!detach) {
		const char **watch = xcalloc(n, sizeof(*watch));
		for (size_t i = 0; i < n; i++)
			watch[i] = names[i];
		rc = watch_rollout(ctx, watch, n, reply->ok->events_seq, WATCH_APPLY);
		free(watch);
	}
out:
	if (reply)
		shoal__envelope__free_unpacked(reply, NULL);
	free(names);
	free(ptrs);
	free(scales);
	return rc;
}

int
services_rm_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__RemoveService rs = SHOAL__REMOVE_SERVICE__INIT;
	Shoal__Envelope *reply = NULL;
	struct shoal_err err;
	int rc = 0;

	if (argc < 2) {
		fprintf(stderr, "shoal rm: want at least one SERVICE\n%s", services_rm_usage);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-') {
			fprintf(stderr, "shoal rm: unexpected argument %s\n%s", argv[i],
			        services_rm_usage);
			return 1;
		}
	}
	/* All or nothing, like scale: one request, refused whole when a name is unknown. */
	rs.names = argv + 1;
	rs.n_names = (size_t)argc - 1;
	req.body_case = SHOAL__ENVELOPE__BODY_REMOVE_SERVICE;
	req.remove_service = &rs;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	if (reply->body_case == SHOAL__ENVELOPE__BODY_OK) {
		for (int i = 1; i < argc; i++)
			printf("%s\n", argv[i]);
	} else {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		rc = 1;
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return rc;
}

const char services_rollback_usage[] =
    "usage: shoal rollback SERVICE [-d]\n"
    "\n"
    "Return SERVICE to the spec it had before its last update, rolling its tasks back the same\n"
    "careful way an update goes (update.parallelism, delay and order), and wait until it is\n"
    "rolled back, showing the progress as shoal apply does; exits 1 if the rollback pauses.\n"
    "\n"
    "Options:\n"
    "  -d, --detach   return at once; `shoal services` shows the progress\n";

int
services_rollback_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__RollbackService rb = SHOAL__ROLLBACK_SERVICE__INIT;
	Shoal__Envelope *reply = NULL;
	struct shoal_err err;
	bool detach = watch_detach_arg(&argc, argv);
	const char *name = argv[1];
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "shoal rollback: want one SERVICE\n%s", services_rollback_usage);
		return 1;
	}
	rb.name = argv[1];
	req.body_case = SHOAL__ENVELOPE__BODY_ROLLBACK;
	req.rollback = &rb;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	printf("%s\n", reply->body_case == SHOAL__ENVELOPE__BODY_OK ? reply->ok->message : argv[1]);
	fflush(stdout);
	if (!detach && reply->body_case == SHOAL__ENVELOPE__BODY_OK)
		rc = watch_rollout(ctx, &name, 1, reply->ok->events_seq, WATCH_ROLLBACK);
	shoal__envelope__free_unpacked(reply, NULL);
	return rc;
}
