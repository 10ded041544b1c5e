#include "ps.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "table.h"
#include "util.h"

const char ps_usage[] =
    "usage: shoal ps [SERVICE] [-a] [-q] [--filter KEY=VALUE]... [-o json]\n"
    "\n"
    "List tasks, of every service or of SERVICE: TASK SERVICE NODE DESIRED STATE SINCE IP\n"
    "MESSAGE. DESIRED is running or shutdown; STATE is pending, assigned, preparing, starting,\n"
    "running, stopping, stopped or failed, with the exit code of a finished task. The\n"
    "MESSAGE of an ended task ends with the last line it wrote (`shoal inspect` and -o json\n"
    "have its last lines).\n"
    "\n"
    "Options:\n"
    "  -a, --all             include finished tasks (each slot's history)\n"
    "  -q, --quiet           print only the task ids\n"
    "  -f, --filter K=V      only tasks with service=NAME, node=NAME, state=STATE or\n"
    "                        desired=running|shutdown (repeat: all must match)\n"
    "  -o json               print every task field as a JSON array\n";

/* Indexed by Shoal__TaskState, the names the scheduler logs and agents use. */
static const char *const ps_state_names[] = {
    "pending", "assigned", "preparing", "starting", "running", "stopping", "stopped", "failed",
};

const char *
ps_state_name(int state)
{
	if (state < 0 || (size_t)state >= ARRAY_SIZE(ps_state_names))
		return "unknown";
	return ps_state_names[state];
}

/* True when s holds word not followed by a digit: "exit 1" must not match "exit 137". */
static bool
ps_has_number(const char *s, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = s; (p = strstr(p, word)) != NULL; p += n)
		if (p[n] < '0' || p[n] > '9')
			return true;
	return false;
}

/* True when msg already tells the exit code: agents write "exit 137" or "exited with code 1". */
static bool
ps_message_has_code(const char *msg, int code)
{
	char a[32], b[32];

	if (msg == NULL)
		return false;
	snprintf(a, sizeof(a), "exit %d", code);
	snprintf(b, sizeof(b), "code %d", code);
	return ps_has_number(msg, a) || ps_has_number(msg, b);
}

char *
ps_state_text(const Shoal__TaskInfo *t, char *buf, size_t len)
{
	const char *name = ps_state_name((int)t->state);

	if ((t->state == SHOAL__TASK_STATE__TASK_FAILED ||
	     t->state == SHOAL__TASK_STATE__TASK_STOPPED) &&
	    t->exit_code >= 0 && !ps_message_has_code(t->message, t->exit_code))
		snprintf(buf, len, "%s (exit %d)", name, t->exit_code);
	else if (t->state == SHOAL__TASK_STATE__TASK_RUNNING && t->health && t->health[0])
		snprintf(buf, len, "%s (%s)", name, t->health);
	else
		snprintf(buf, len, "%s", name);
	return buf;
}

int
ps_compare(const void *pa, const void *pb)
{
	const Shoal__TaskInfo *a = *(const Shoal__TaskInfo *const *)pa;
	const Shoal__TaskInfo *b = *(const Shoal__TaskInfo *const *)pb;
	int r = strcmp(a->service ? a->service : "", b->service ? b->service : "");
	int ar, br;

	if (r != 0)
		return r;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	ar = a->desired && strcmp(a->desired, "running") == 0;
	br = b->desired && strcmp(b->desired, "running") == 0;
	if (ar != br)
		return br - ar;
	ar = a->state == SHOAL__TASK_STATE__TASK_RUNNING;
	br = b->state == SHOAL__TASK_STATE__TASK_RUNNING;
	if (ar != br)
		return br - ar;
	if (a->state_since_ms != b->state_since_ms)
		return a->state_since_ms > b->state_since_ms ? -1 : 1;
	/* Total order, so the listing is the same from one run to the next. */
	return strcmp(a->name ? a->name : "", b->name ? b->name : "");
}

void
ps_sort(Shoal__TaskInfo **tasks, size_t n)
{
	if (n > 1)
		qsort(tasks, n, sizeof(*tasks), ps_compare);
}

json_t *
ps_task_json(const Shoal__TaskInfo *t)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:i, s:I, s:s, s:I, "
	                 "s:s}",
	                 "id", t->id, "name", t->name, "service", t->service, "slot",
	                 (json_int_t)t->slot, "node", t->node, "desired", t->desired, "state",
	                 ps_state_name((int)t->state), "state_since_ms",
	                 (json_int_t)t->state_since_ms, "ip", t->ip, "message", t->message,
	                 "exit_code", (int)t->exit_code, "version", (json_int_t)t->version,
	                 "health", t->health, "started_at_ms", (json_int_t)t->started_at_ms,
	                 "last_output", t->last_output ? t->last_output : "");
}

/* The last line of an ended task's output, after its message: "exited with code 3: FATAL". */
static const char *
ps_message(const Shoal__TaskInfo *t, char *buf, size_t len)
{
	const char *msg = t->message[0] ? t->message : "-", *last;

	if (t->last_output == NULL || t->last_output[0] == '\0')
		return msg;
	last = strrchr(t->last_output, '\n');
	last = last ? last + 1 : t->last_output;
	snprintf(buf, len, "%s: %.60s%s", msg, last, strlen(last) > 60 ? "..." : "");
	return buf;
}

/* KEY=VALUE filters of a listing: each must hold. Returns -1 with a message for an unknown
 * key (one of keys, NULL-terminated). */
int
ps_filter_add(struct cli_filter *f, const char *arg, const char *const *keys, const char *cmd)
{
	const char *eq = strchr(arg, '=');
	char list[128] = "";

	for (size_t i = 0; eq && keys[i]; i++) {
		if (strlen(keys[i]) == (size_t)(eq - arg) &&
		    strncmp(keys[i], arg, (size_t)(eq - arg)) == 0 && f->n < ARRAY_SIZE(f->key)) {
			f->key[f->n] = keys[i];
			f->value[f->n++] = eq + 1;
			return 0;
		}
	}
	for (size_t i = 0; keys[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s=", i ? ", " : "",
		         keys[i]);
	fprintf(stderr, "shoal %s: --filter wants one of %s, not %s\n", cmd, list, arg);
	return -1;
}

int
ps_list_option(const char *cmd, int argc, char **argv, int *i, const char *const *keys,
               struct cli_filter *f, bool *quiet)
{
	const char *a = argv[*i];

	if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
		*quiet = true;
		return 1;
	}
	if (strcmp(a, "--filter") != 0 && strcmp(a, "-f") != 0)
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "shoal %s: %s needs KEY=VALUE\n", cmd, a);
		return -1;
	}
	return ps_filter_add(f, argv[++*i], keys, cmd) == -1 ? -1 : 1;
}

void
ps_print_json(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
	json_decref(v);
}

/* The value of key in f for which ok(value) fails, if any: the row is filtered out. */
bool
ps_filter_match(const struct cli_filter *f, const char *key, const char *value)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->key[i], key) == 0 && strcmp(f->value[i], value ? value : "") != 0)
			return false;
	return true;
}

static bool
ps_keep(const struct cli_filter *f, const Shoal__TaskInfo *t)
{
	return ps_filter_match(f, "service", t->service) && ps_filter_match(f, "node", t->node) &&
	       ps_filter_match(f, "state", ps_state_name((int)t->state)) &&
	       ps_filter_match(f, "desired", t->desired);
}

int
ps_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const header[] = {"TASK",  "SERVICE", "NODE", "DESIRED",
	                                     "STATE", "SINCE",   "IP",   "MESSAGE"};
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ListTasks lt = SHOAL__LIST_TASKS__INIT;
	Shoal__Envelope *reply = NULL;
	Shoal__ListTasksReply *lr;
	static const char *const keys[] = {"service", "node", "state", "desired", NULL};
	struct shoal_err err;
	struct cli_filter filter = {0};
	bool quiet = false;
	int64_t now = util_wall_ms();

	for (int i = 1; i < argc; i++) {
		int o = ps_list_option("ps", argc, argv, &i, keys, &filter, &quiet);
		if (o == -1)
			return 1;
		if (o == 1)
			continue;
		if (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--all") == 0) {
			lt.all = true;
		} else if (argv[i][0] == '-' || lt.service[0] != '\0') {
			fprintf(stderr, "shoal ps: unexpected argument %s\n%s", argv[i], ps_usage);
			return 1;
		} else {
			lt.service = argv[i];
		}
	}
	req.body_case = SHOAL__ENVELOPE__BODY_LIST_TASKS;
	req.list_tasks = &lt;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	if (reply->body_case != SHOAL__ENVELOPE__BODY_LIST_TASKS_REPLY) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		shoal__envelope__free_unpacked(reply, NULL);
		return 1;
	}
	lr = reply->list_tasks_reply;
	{
		size_t k = 0;
		for (size_t i = 0; i < lr->n_tasks; i++)
			if (ps_keep(&filter, lr->tasks[i]))
				lr->tasks[k++] = lr->tasks[i];
			else
				shoal__task_info__free_unpacked(lr->tasks[i], NULL);
		lr->n_tasks = k;
	}
	ps_sort(lr->tasks, lr->n_tasks);
	if (quiet && !ctx->json) {
		for (size_t i = 0; i < lr->n_tasks; i++)
			printf("%s\n", lr->tasks[i]->id);
	} else if (ctx->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < lr->n_tasks; i++)
			json_array_append_new(arr, ps_task_json(lr->tasks[i]));
		ps_print_json(arr);
	} else {
		struct table t;
		table_init(&t, ARRAY_SIZE(header), header);
		for (size_t i = 0; i < lr->n_tasks; i++) {
			const Shoal__TaskInfo *ti = lr->tasks[i];
			char state[96], since[16], msg[512];
			ps_state_text(ti, state, sizeof(state));
			util_format_age(now - ti->state_since_ms, since, sizeof(since));
			const char *row[] = {ti->name,
			                     ti->service,
			                     ti->node[0] ? ti->node : "-",
			                     ti->desired,
			                     state,
			                     since,
			                     ti->ip[0] ? ti->ip : "-",
			                     ps_message(ti, msg, sizeof(msg))};
			table_add(&t, row);
		}
		table_print(&t, stdout);
		table_free(&t);
		for (size_t i = 0; i < lr->n_port_errors; i++)
			printf("note: %s\n", lr->port_errors[i]);
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return 0;
}
