#include "nodes.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "ps.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "table.h"
#include "util.h"

const char nodes_usage[] =
    "usage: shoal nodes [-q] [--filter KEY=VALUE]... [-o json]\n"
    "\n"
    "List the cluster's nodes: NAME ADDRESS STATUS AVAILABILITY CPUS MEMORY TASKS SUBNET AGE.\n"
    "STATUS is ready while heartbeats arrive and down after 3 missed intervals.\n"
    "\n"
    "Options:\n"
    "  -q, --quiet          print only the node names\n"
    "  -f, --filter K=V     only nodes with name=NAME, status=ready|down,\n"
    "                       availability=active|drain or label=KEY=VALUE (repeat: all match)\n"
    "  -o json              print the same as a JSON array\n";

const char nodes_drain_usage[] =
    "usage: shoal drain NODE\n"
    "\n"
    "Drain a node: the scheduler places no new task there and moves its running tasks to\n"
    "other nodes. `shoal activate NODE` undoes it.\n";

const char nodes_activate_usage[] =
    "usage: shoal activate NODE\n"
    "\n"
    "Make a drained node active again: it takes new tasks (running ones are not moved back).\n";

const char nodes_node_usage[] =
    "usage: shoal node rm [-f|--force] NODE\n"
    "       shoal node update [--label-add KEY=VALUE]... [--label-rm KEY]... NODE\n"
    "\n"
    "node update: set or remove labels of a node at the scheduler, as `docker node update`\n"
    "does. They are kept by the scheduler (a restart keeps them) and merged over the labels\n"
    "the node's agent registers (its own label flags): on the same key the admin's win;\n"
    "removing an admin label shows the agent's again, and an agent's own label is changed on\n"
    "the agent only. Placement constraints (node.labels.KEY) see them at once: a pending task\n"
    "that fits now is placed; running tasks stay where they are. All or nothing.\n"
    "\n"
    "  --label-add KEY=VALUE  set a label (repeatable)\n"
    "  --label-rm KEY         remove a label set with --label-add (repeatable)\n"
    "\n"
    "node rm: "
    "Remove a node from the cluster: its record, its subnet and the node key its name is bound\n"
    "to. A node's name only comes back with its own key (DATA_DIR/node.key on the agent); a\n"
    "node that lost its key joins anew after `shoal node rm`. A node that is up (ready or\n"
    "connected) is refused: stop its agent first. Its tasks end and are replaced elsewhere.\n"
    "\n"
    "Options:\n"
    "  -f, --force   remove the node even while it is up (its session is closed; an agent\n"
    "                still running there joins again as a new node)\n";

static json_t *
node_json(const Shoal__NodeInfo *n)
{
	json_t *labels = json_object();

	for (size_t i = 0; i < n->n_labels; i++)
		json_object_set_new(labels, n->labels[i]->key, json_string(n->labels[i]->value));
	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:f, s:I, s:f, s:I, s:i, s:s, s:I, s:I, s:o, s:s}", "id",
	    n->id, "name", n->name, "address", n->address, "status", n->status, "availability",
	    n->availability, "cpus", n->capacity ? (double)n->capacity->cpu_millis / 1000.0 : 0.0,
	    "memory_bytes", (json_int_t)(n->capacity ? n->capacity->memory_bytes : 0), "cpus_used",
	    n->usage ? (double)n->usage->cpu_millis / 1000.0 : 0.0, "memory_used_bytes",
	    (json_int_t)(n->usage ? n->usage->memory_bytes : 0), "tasks", (int)n->tasks, "subnet",
	    n->subnet, "created_ms", (json_int_t)n->created_ms, "last_seen_ms",
	    (json_int_t)n->last_seen_ms, "labels", labels, "key", n->key_fingerprint);
}

/* label=KEY=VALUE holds when the node has that label; the other keys compare a field. */
static bool
nodes_keep(const struct cli_filter *f, const Shoal__NodeInfo *n)
{
	for (size_t i = 0; i < f->n; i++) {
		bool has = false;
		if (strcmp(f->key[i], "label") != 0)
			continue;
		for (size_t k = 0; k < n->n_labels && !has; k++) {
			size_t kl = strlen(n->labels[k]->key);
			has = strncmp(f->value[i], n->labels[k]->key, kl) == 0 &&
			      f->value[i][kl] == '=' &&
			      strcmp(f->value[i] + kl + 1, n->labels[k]->value) == 0;
		}
		if (!has)
			return false;
	}
	return ps_filter_match(f, "name", n->name) && ps_filter_match(f, "status", n->status) &&
	       ps_filter_match(f, "availability", n->availability);
}

int
nodes_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char *const header[] = {"NAME",   "ADDRESS", "STATUS", "AVAILABILITY", "CPUS",
	                                     "MEMORY", "TASKS",   "SUBNET", "AGE"};
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;
	Shoal__Envelope *reply = NULL;
	const Shoal__ListNodesReply *lr;
	static const char *const keys[] = {"name", "status", "availability", "label", NULL};
	struct cli_filter filter = {0};
	struct shoal_err err;
	int64_t now = util_wall_ms();
	bool quiet = false;

	for (int i = 1; i < argc; i++) {
		int o = ps_list_option("nodes", argc, argv, &i, keys, &filter, &quiet);
		if (o == -1)
			return 1;
		if (o == 0) {
			fprintf(stderr, "shoal nodes: unexpected argument %s\n%s", argv[i],
			        nodes_usage);
			return 1;
		}
	}
	req.body_case = SHOAL__ENVELOPE__BODY_LIST_NODES;
	req.list_nodes = &ln;
	if (client_call(ctx, &req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	if (reply->body_case != SHOAL__ENVELOPE__BODY_LIST_NODES_REPLY) {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		shoal__envelope__free_unpacked(reply, NULL);
		return 1;
	}
	lr = reply->list_nodes_reply;
	{
		Shoal__ListNodesReply *m = reply->list_nodes_reply;
		size_t k = 0;
		for (size_t i = 0; i < m->n_nodes; i++)
			if (nodes_keep(&filter, m->nodes[i]))
				m->nodes[k++] = m->nodes[i];
			else
				shoal__node_info__free_unpacked(m->nodes[i], NULL);
		m->n_nodes = k;
	}
	if (quiet && !ctx->json) {
		for (size_t i = 0; i < lr->n_nodes; i++)
			printf("%s\n", lr->nodes[i]->name);
	} else if (ctx->json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < lr->n_nodes; i++)
			json_array_append_new(arr, node_json(lr->nodes[i]));
		ps_print_json(arr);
	} else {
		struct table t;
		/* Several schedulers (etcd store): say which one leads. */
		if (lr->leader_id && lr->leader_id[0])
			printf("Leader: %s\n", lr->leader_address);
		table_init(&t, ARRAY_SIZE(header), header);
		for (size_t i = 0; i < lr->n_nodes; i++) {
			const Shoal__NodeInfo *n = lr->nodes[i];
			char cpus[16], mem[32], tasks[16], age[16];
			snprintf(cpus, sizeof(cpus), "%.2f",
			         n->capacity ? (double)n->capacity->cpu_millis / 1000.0 : 0.0);
			util_format_bytes(n->capacity ? (int64_t)n->capacity->memory_bytes : 0, mem,
			                  sizeof(mem));
			snprintf(tasks, sizeof(tasks), "%u", n->tasks);
			util_format_age(now - n->created_ms, age, sizeof(age));
			const char *row[] = {n->name,         n->address, n->status,
			                     n->availability, cpus,       mem,
			                     tasks,           n->subnet,  age};
			table_add(&t, row);
		}
		table_print(&t, stdout);
		table_free(&t);
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return 0;
}

/* Send req, expect Ok and print line (a node's name, or name and state). Returns the exit code. */
static int
nodes_call_ok(struct cli_ctx *ctx, Shoal__Envelope *req, const char *line)
{
	Shoal__Envelope *reply = NULL;
	struct shoal_err err;
	int rc = 0;

	if (client_call(ctx, req, &reply, &err) == -1) {
		fprintf(stderr, "shoal: %s\n", err.msg);
		return 1;
	}
	if (reply->body_case == SHOAL__ENVELOPE__BODY_OK) {
		printf("%s\n", line);
	} else {
		fprintf(stderr, "shoal: unexpected reply from the scheduler\n");
		rc = 1;
	}
	shoal__envelope__free_unpacked(reply, NULL);
	return rc;
}

/* a, an argument of `shoal node CMD` that is no option of CMD's, as its one NODE: -1 (said,
 * with the usage) for an unknown option or a second name. */
static int
nodes_take_name(const char *cmd, const char *a, const char **name)
{
	if (a[0] == '-' || *name != NULL) {
		fprintf(stderr, "shoal node %s: unexpected argument %s\n%s", cmd, a,
		        nodes_node_usage);
		return -1;
	}
	*name = a;
	return 0;
}

/* -1 (said, with the usage) when `shoal node CMD` was given no NODE. */
static int
nodes_want_name(const char *cmd, const char *name)
{
	if (name != NULL)
		return 0;
	fprintf(stderr, "shoal node %s: want one NODE\n%s", cmd, nodes_node_usage);
	return -1;
}

/* drain and activate are one request with a flag. */
static int
nodes_set_availability(struct cli_ctx *ctx, int argc, char **argv, bool drain, const char *usage)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__SetAvailability sa = SHOAL__SET_AVAILABILITY__INIT;
	cleanup_free char *line = NULL;

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "shoal %s: want one NODE\n%s", argv[0], usage);
		return 1;
	}
	sa.node = argv[1];
	sa.drain = drain;
	req.body_case = SHOAL__ENVELOPE__BODY_SET_AVAILABILITY;
	req.set_availability = &sa;
	line = xasprintf("%s %s", argv[1], drain ? "drain" : "active");
	return nodes_call_ok(ctx, &req, line);
}

int
nodes_drain_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	return nodes_set_availability(ctx, argc, argv, true, nodes_drain_usage);
}

int
nodes_activate_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	return nodes_set_availability(ctx, argc, argv, false, nodes_activate_usage);
}

static int
nodes_rm(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__RemoveNode rn = SHOAL__REMOVE_NODE__INIT;
	const char *name = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--force") == 0)
			rn.force = true;
		else if (nodes_take_name("rm", argv[i], &name) == -1)
			return 1;
	}
	if (nodes_want_name("rm", name) == -1)
		return 1;
	rn.node = (char *)name;
	req.body_case = SHOAL__ENVELOPE__BODY_REMOVE_NODE;
	req.remove_node = &rn;
	return nodes_call_ok(ctx, &req, name);
}

static int
nodes_update(struct cli_ctx *ctx, int argc, char **argv)
{
	Shoal__Envelope req = SHOAL__ENVELOPE__INIT;
	Shoal__UpdateNode un = SHOAL__UPDATE_NODE__INIT;
	cleanup_free char **add = xcalloc((size_t)argc, sizeof(char *));
	cleanup_free char **rm = xcalloc((size_t)argc, sizeof(char *));
	const char *name = NULL;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = NULL;
		bool is_add = strncmp(a, "--label-add", 11) == 0 && (a[11] == '\0' || a[11] == '=');
		bool is_rm = strncmp(a, "--label-rm", 10) == 0 && (a[10] == '\0' || a[10] == '=');

		if (is_add || is_rm) {
			const char *eq = strchr(a, '=');
			if (eq && eq < a + (is_add ? 12 : 11))
				v = eq + 1;
			else if (i + 1 < argc)
				v = argv[++i];
			if (v == NULL) {
				fprintf(stderr, "shoal node update: %s wants a value\n%s", a,
				        nodes_node_usage);
				return 1;
			}
			if (is_add)
				add[un.n_label_add++] = (char *)v;
			else
				rm[un.n_label_rm++] = (char *)v;
		} else if (nodes_take_name("update", a, &name) == -1) {
			return 1;
		}
	}
	if (nodes_want_name("update", name) == -1)
		return 1;
	if (un.n_label_add == 0 && un.n_label_rm == 0) {
		fprintf(stderr,
		        "shoal node update: nothing to change (--label-add, --label-rm)\n%s",
		        nodes_node_usage);
		return 1;
	}
	un.node = (char *)name;
	un.label_add = add;
	un.label_rm = rm;
	req.body_case = SHOAL__ENVELOPE__BODY_UPDATE_NODE;
	req.update_node = &un;
	return nodes_call_ok(ctx, &req, name);
}

int
nodes_node_cmd(struct cli_ctx *ctx, int argc, char **argv)
{
	/* `node ls`/`node inspect` would join these here. */
	if (argc >= 2 && strcmp(argv[1], "rm") == 0)
		return nodes_rm(ctx, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "update") == 0)
		return nodes_update(ctx, argc - 1, argv + 1);
	fprintf(stderr, "shoal node: want a subcommand (rm, update)\n%s", nodes_node_usage);
	return 1;
}
