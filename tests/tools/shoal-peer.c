/*
 * shoal-peer: a small authenticated raw protocol client for hostile tests.
 *
 * It plays a peer that holds a token (worker or admin) and sends what a real agent or CLI
 * never would: crafted Registers, task reports with addresses of its choosing, listings
 * timed from the outside. The connection and handshake are common/rpc's client, the very
 * API the agent's session uses (rpc_connect with a token): whatever the handshake becomes,
 * this tool goes through it, it never speaks a copy of it.
 *
 *   shoal-peer --token FILE --addr HOST:PORT [--timeout MS] [--key FILE] COMMAND [OPTIONS]
 *
 * Its Registers carry a node key and its signature over the connection's channel binding, as
 * an agent's do (nodekey_sign_register): the key in --key FILE (made there if missing, as an
 * agent's node.key), else a fresh key per run.
 *
 * Commands (one table, `commands[]`; a new mode is one entry):
 *   register     --name X [--address A] [--labels N] [--label K=V]... [--capacity CPU,MEM]
 *                one Register; prints its reply
 *   report-task  --name X [--address A] --ip IP|own:N [--state S] [--hold SECONDS]
 *                [--keeps-specs]
 *                register as X, then report every task Assignments give it in state S
 *                (default running) with container_ip IP ("own:N": host N of the /24 the
 *                scheduler gave it); keeps heartbeating (acknowledging Endpoints like an
 *                agent) for --hold seconds (default 5), then exits. --keeps-specs registers
 *                as an agent that keeps specs (Register.keeps_specs)
 *   list-nodes   one ListNodes; prints how many nodes the reply held
 *
 * Output, one line per event, for tests to grep:
 *   reply BODY ms=ELAPSED [details]      a reply to this peer's request
 *   error code=N ms=ELAPSED message=...  an Error reply
 *   reported TASK_ID state=S ip=IP       a task status sent (report-task)
 *   assignments gen=G tasks=T specs=S json=J
 *                                        an Assignments came: its tasks, its service
 *                                        versions, and how many of those carried a spec
 *   closed REASON                        the scheduler closed the connection
 * Exit status: 0 the expected reply came, 3 an Error reply, 2 no reply (timeout, closed,
 * connect failure), 1 bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "nodekey.h"
#include "rpc.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

#define EXIT_USAGE    1
#define EXIT_NO_REPLY 2
#define EXIT_REFUSED  3

struct peer;

/* One mode: what to send once the handshake is done, and what to do with each message. */
struct command {
	const char *name;
	void (*start)(struct peer *p);
	void (*message)(struct peer *p, const Shoal__Envelope *env);
};

/* The whole run, owned by main. */
struct peer {
	struct event_base *base;
	struct rpc_conn *conn;
	struct event *deadline; /* --timeout: no reply by then is exit 2 */
	struct event *beat;     /* report-task: heartbeats */
	struct event *hold;     /* report-task: end of --hold */
	const struct command *cmd;
	int exit_code;
	uint64_t next_id, sent_id;
	int64_t sent_ms;
	/* options */
	const char *name, *address, *ip, *state;
	char **labels; /* --label K=V, as given */
	size_t nlabels, gen_labels;
	uint64_t cpu_millis, memory_bytes;
	int timeout_ms, hold_s;
	bool keeps_specs;
	struct nodekey key; /* --key FILE, or a fresh one */
	/* report-task */
	uint32_t subnet; /* host order, from RegisterReply */
	uint32_t heartbeat_ms;
	uint64_t assign_gen, endpoints_gen;
	char **reported; /* task ids already reported */
	size_t nreported;
};

static void
finish(struct peer *p, int code)
{
	p->exit_code = code;
	event_base_loopexit(p->base, NULL);
}

static void
arm(struct event *ev, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	evtimer_add(ev, &tv);
}

static void
send_env(struct peer *p, Shoal__Envelope *env)
{
	struct shoal_err err;

	env->id = ++p->next_id;
	if (rpc_send(p->conn, env, &err) == -1) {
		fprintf(stderr, "shoal-peer: send: %s\n", err.msg);
		finish(p, EXIT_NO_REPLY);
		return;
	}
	printf("sent %s bytes=%zu\n",
	       protobuf_c_message_descriptor_get_field(&shoal__envelope__descriptor,
	                                               (unsigned)env->body_case)
	           ->name,
	       shoal__envelope__get_packed_size(env));
	fflush(stdout);
}

/* A request whose reply the run waits for. */
static void
send_request(struct peer *p, Shoal__Envelope *env)
{
	send_env(p, env);
	p->sent_id = p->next_id;
	p->sent_ms = util_now_ms();
}

static long long
elapsed(const struct peer *p)
{
	return (long long)(util_now_ms() - p->sent_ms);
}

/* An Error reply to our request ends the run with exit 3. true if env was one. */
static bool
error_reply(struct peer *p, const Shoal__Envelope *env)
{
	if (env->body_case != SHOAL__ENVELOPE__BODY_ERROR)
		return false;
	printf("error code=%u ms=%lld message=%s\n", env->error->code, elapsed(p),
	       env->error->message);
	fflush(stdout);
	if (env->id == p->sent_id)
		finish(p, EXIT_REFUSED);
	return true;
}

/* ---- register ---- */

static void
send_register(struct peer *p)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
	uint8_t sig[NODEKEY_SIG_BYTES];
	size_t n = p->nlabels + p->gen_labels;
	Shoal__Label *lv = xcalloc(n ? n : 1, sizeof(*lv));
	Shoal__Label **lp = xcalloc(n ? n : 1, sizeof(*lp));
	char **copies = xcalloc(p->nlabels ? p->nlabels : 1, sizeof(*copies));

	for (size_t i = 0; i < n; i++) {
		shoal__label__init(&lv[i]);
		lp[i] = &lv[i];
		if (i < p->nlabels) {
			char *eq;
			copies[i] = xstrdup(p->labels[i]);
			eq = strchr(copies[i], '=');
			if (eq)
				*eq++ = '\0';
			lv[i].key = copies[i];
			lv[i].value = eq ? eq : "";
		} else {
			/* --labels N: the smallest labels there are, as many as asked. */
			lv[i].key = "k";
			lv[i].value = "v";
		}
	}
	cap.cpu_millis = p->cpu_millis;
	cap.memory_bytes = p->memory_bytes;
	reg.node_name = (char *)p->name;
	reg.keeps_specs = p->keeps_specs;
	reg.address = (char *)p->address;
	reg.labels = lp;
	reg.n_labels = n;
	reg.capacity = &cap;
	reg.version = "shoal-peer";
	nodekey_sign_register(&p->key, p->conn, &reg, sig);
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	send_request(p, &env);
	for (size_t i = 0; i < p->nlabels; i++)
		free(copies[i]);
	free(copies);
	free(lv);
	free(lp);
}

/* true once the RegisterReply came (printed); false for anything else. */
static bool
register_reply(struct peer *p, const Shoal__Envelope *env)
{
	const Shoal__RegisterReply *rr = env->register_reply;

	if (env->body_case != SHOAL__ENVELOPE__BODY_REGISTER_REPLY || env->id != p->sent_id)
		return false;
	printf("reply register_reply ms=%lld node_id=%s subnet=%s heartbeat_ms=%u\n", elapsed(p),
	       rr->node_id, rr->container_subnet, rr->heartbeat_interval_ms);
	fflush(stdout);
	p->heartbeat_ms = rr->heartbeat_interval_ms ? rr->heartbeat_interval_ms : 1000;
	/* "10.244.3.0/24": own:N addresses are built from it. */
	char addr[32];
	struct in_addr in;
	const char *slash = strchr(rr->container_subnet, '/');
	if (slash && (size_t)(slash - rr->container_subnet) < sizeof(addr)) {
		memcpy(addr, rr->container_subnet, (size_t)(slash - rr->container_subnet));
		addr[slash - rr->container_subnet] = '\0';
		if (inet_pton(AF_INET, addr, &in) == 1)
			p->subnet = ntohl(in.s_addr) & 0xffffff00u;
	}
	return true;
}

static void
register_message(struct peer *p, const Shoal__Envelope *env)
{
	if (error_reply(p, env))
		return;
	if (register_reply(p, env))
		finish(p, 0);
}

/* ---- report-task ---- */

static void
send_heartbeat(struct peer *p)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Heartbeat hb = SHOAL__HEARTBEAT__INIT;
	Shoal__Usage usage = SHOAL__USAGE__INIT;
	struct shoal_err err;

	hb.usage = &usage;
	hb.assignments_generation = p->assign_gen;
	hb.endpoints_generation = p->endpoints_gen;
	env.id = ++p->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	/* Quietly: one line per beat would bury the lines a test greps for. */
	if (rpc_send(p->conn, &env, &err) == -1)
		fprintf(stderr, "shoal-peer: heartbeat: %s\n", err.msg);
}

static void
on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;

	(void)fd;
	(void)what;
	send_heartbeat(p);
	arm(p->beat, p->heartbeat_ms);
}

static void
on_hold(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	finish(arg, 0);
}

static int
state_parse(const char *s)
{
	const ProtobufCEnumValue *v;
	cleanup_free char *full = xasprintf("TASK_%s", s);

	for (char *c = full; *c; c++)
		*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
	v = protobuf_c_enum_descriptor_get_value_by_name(&shoal__task_state__descriptor, full);
	return v ? v->value : -1;
}

/* The address to report: as given, or "own:N", host N of the /24 the scheduler gave. */
static void
report_ip(const struct peer *p, char *buf, size_t len)
{
	if (strncmp(p->ip, "own:", 4) == 0) {
		uint32_t a = p->subnet | (uint32_t)(atoi(p->ip + 4) & 255);
		snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
		         a & 255);
	} else {
		snprintf(buf, len, "%s", p->ip);
	}
}

static void
report_assignments(struct peer *p, const Shoal__Assignments *as)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__TaskReport tr = SHOAL__TASK_REPORT__INIT;
	Shoal__TaskStatus *sts = xcalloc(as->n_tasks + 1, sizeof(*sts));
	Shoal__TaskStatus **sp = xcalloc(as->n_tasks + 1, sizeof(*sp));
	char ip[64];
	int64_t now = util_wall_ms();

	p->assign_gen = as->generation;
	{
		size_t json = 0;
		for (size_t k = 0; k < as->n_specs; k++)
			json += as->specs[k]->spec_json[0] != '\0';
		printf("assignments gen=%llu tasks=%zu specs=%zu json=%zu\n",
		       (unsigned long long)as->generation, as->n_tasks, as->n_specs, json);
		fflush(stdout);
	}
	report_ip(p, ip, sizeof(ip));
	for (size_t i = 0; i < as->n_tasks; i++) {
		const char *id = as->tasks[i]->task_id;
		bool seen = false;
		for (size_t k = 0; k < p->nreported && !seen; k++)
			seen = strcmp(p->reported[k], id) == 0;
		if (seen)
			continue;
		p->reported = xrealloc(p->reported, (p->nreported + 1) * sizeof(*p->reported));
		p->reported[p->nreported++] = xstrdup(id);
		shoal__task_status__init(&sts[tr.n_statuses]);
		sts[tr.n_statuses].task_id = (char *)id;
		sts[tr.n_statuses].state = (Shoal__TaskState)state_parse(p->state);
		sts[tr.n_statuses].timestamp_ms = now;
		sts[tr.n_statuses].started_at_ms = now;
		sts[tr.n_statuses].generation = as->generation;
		sts[tr.n_statuses].container_ip = ip;
		sp[tr.n_statuses] = &sts[tr.n_statuses];
		tr.n_statuses++;
		printf("reported %s state=%s ip=%s\n", id, p->state, ip);
	}
	fflush(stdout);
	if (tr.n_statuses) {
		tr.statuses = sp;
		env.body_case = SHOAL__ENVELOPE__BODY_TASK_REPORT;
		env.task_report = &tr;
		send_env(p, &env);
	}
	free(sts);
	free(sp);
}

static void
report_message(struct peer *p, const Shoal__Envelope *env)
{
	if (error_reply(p, env))
		return;
	if (register_reply(p, env)) {
		/* From now on it looks alive to the scheduler until --hold ends. */
		send_heartbeat(p);
		arm(p->beat, p->heartbeat_ms);
		arm(p->hold, (int64_t)p->hold_s * 1000);
		evtimer_del(p->deadline);
		return;
	}
	switch (env->body_case) {
	case SHOAL__ENVELOPE__BODY_ASSIGNMENTS:
		report_assignments(p, env->assignments);
		break;
	case SHOAL__ENVELOPE__BODY_ENDPOINTS:
		/* Acknowledged like an agent, so no stop waits for this peer. */
		p->endpoints_gen = env->endpoints->generation;
		send_heartbeat(p);
		break;
	default:
		break;
	}
}

/* ---- list-nodes ---- */

static void
send_list_nodes(struct peer *p)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__ListNodes ln = SHOAL__LIST_NODES__INIT;

	env.body_case = SHOAL__ENVELOPE__BODY_LIST_NODES;
	env.list_nodes = &ln;
	send_request(p, &env);
}

static void
list_nodes_message(struct peer *p, const Shoal__Envelope *env)
{
	if (error_reply(p, env))
		return;
	if (env->body_case != SHOAL__ENVELOPE__BODY_LIST_NODES_REPLY || env->id != p->sent_id)
		return;
	printf("reply list_nodes_reply ms=%lld nodes=%zu\n", elapsed(p),
	       env->list_nodes_reply->n_nodes);
	fflush(stdout);
	finish(p, 0);
}

static const struct command commands[] = {
    {"register", send_register, register_message},
    {"report-task", send_register, report_message},
    {"list-nodes", send_list_nodes, list_nodes_message},
};

/* ---- the connection ---- */

static void
on_ready(struct rpc_conn *c, void *arg)
{
	struct peer *p = arg;

	(void)c;
	p->cmd->start(p);
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct peer *p = arg;

	(void)c;
	p->cmd->message(p, env);
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct peer *p = arg;

	(void)c;
	p->conn = NULL;
	printf("closed %s\n", reason);
	fflush(stdout);
	finish(p, EXIT_NO_REPLY);
}

static const struct rpc_callbacks cbs = {
    .ready = on_ready,
    .message = on_message,
    .closed = on_closed,
};

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;

	(void)fd;
	(void)what;
	printf("timeout after %dms\n", p->timeout_ms);
	fflush(stdout);
	finish(p, EXIT_NO_REPLY);
}

static void
usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: shoal-peer --token FILE --addr HOST:PORT [--timeout MS] [--key FILE] COMMAND\n"
	    "                  [OPTIONS]\n"
	    "  --key FILE   the node key Registers are signed with (made if missing; default: a\n"
	    "               fresh key per run)\n"
	    "commands:\n"
	    "  register     --name X [--address A] [--labels N] [--label K=V]...\n"
	    "               [--capacity CPU_MILLIS,MEMORY_BYTES]\n"
	    "  report-task  --name X [--address A] --ip IP|own:N [--state S] [--hold SECONDS]\n"
	    "               [--keeps-specs]\n"
	    "  list-nodes\n"
	    "exit: 0 reply, 3 error reply, 2 no reply, 1 usage\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"token", required_argument, NULL, 't'},
	    {"addr", required_argument, NULL, 'a'},
	    {"timeout", required_argument, NULL, 'T'},
	    {"key", required_argument, NULL, 'k'},
	    {"name", required_argument, NULL, 'n'},
	    {"address", required_argument, NULL, 'A'},
	    {"labels", required_argument, NULL, 'L'},
	    {"label", required_argument, NULL, 'l'},
	    {"capacity", required_argument, NULL, 'c'},
	    {"ip", required_argument, NULL, 'i'},
	    {"state", required_argument, NULL, 's'},
	    {"hold", required_argument, NULL, 'H'},
	    {"keeps-specs", no_argument, NULL, 'K'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct peer p = {
	    .address = "127.0.0.1",
	    .state = "running",
	    .cpu_millis = 1000,
	    .memory_bytes = 1u << 30,
	    .timeout_ms = 10000,
	    .hold_s = 5,
	};
	const char *token_file = NULL, *addr = NULL, *key_file = NULL;
	struct token token;
	struct shoal_err err;
	char host[256];
	uint16_t port;
	bool key_created;
	int c;

	p.labels = xcalloc((size_t)argc, sizeof(*p.labels));
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1 ||
	       (optind < argc && p.cmd == NULL)) {
		if (c == -1) {
			/* The command word; its options follow it. */
			for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
				if (strcmp(argv[optind], commands[i].name) == 0)
					p.cmd = &commands[i];
			if (p.cmd == NULL) {
				fprintf(stderr, "shoal-peer: unknown command %s\n", argv[optind]);
				return EXIT_USAGE;
			}
			optind++;
			continue;
		}
		switch (c) {
		case 't':
			token_file = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		case 'T':
			p.timeout_ms = atoi(optarg);
			break;
		case 'k':
			key_file = optarg;
			break;
		case 'n':
			p.name = optarg;
			break;
		case 'A':
			p.address = optarg;
			break;
		case 'L':
			p.gen_labels = strtoul(optarg, NULL, 10);
			break;
		case 'l':
			p.labels[p.nlabels++] = optarg;
			break;
		case 'c':
			if (sscanf(optarg, "%" SCNu64 ",%" SCNu64, &p.cpu_millis,
			           &p.memory_bytes) != 2) {
				fprintf(stderr, "shoal-peer: --capacity CPU_MILLIS,MEMORY_BYTES\n");
				return EXIT_USAGE;
			}
			break;
		case 'i':
			p.ip = optarg;
			break;
		case 's':
			p.state = optarg;
			break;
		case 'H':
			p.hold_s = atoi(optarg);
			break;
		case 'K':
			p.keeps_specs = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (p.cmd == NULL || token_file == NULL || addr == NULL || optind != argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (p.cmd->start == send_register && p.name == NULL) {
		fprintf(stderr, "shoal-peer: %s needs --name\n", p.cmd->name);
		return EXIT_USAGE;
	}
	if (p.cmd->message == report_message && (p.ip == NULL || state_parse(p.state) < 0)) {
		fprintf(stderr, "shoal-peer: report-task needs --ip and a known --state\n");
		return EXIT_USAGE;
	}
	if (sodium_init() < 0)
		return EXIT_NO_REPLY;
	signal(SIGPIPE, SIG_IGN);
	if (token_load(token_file, &token, &err) == -1 ||
	    util_parse_hostport(addr, host, sizeof(host), &port, &err) == -1) {
		fprintf(stderr, "shoal-peer: %s\n", err.msg);
		return EXIT_USAGE;
	}
	if (key_file == NULL) {
		crypto_sign_keypair(p.key.pk, p.key.sk);
	} else if (nodekey_load_or_create(key_file, &p.key, &key_created, &err) == -1) {
		fprintf(stderr, "shoal-peer: %s\n", err.msg);
		return EXIT_USAGE;
	}
	p.base = event_base_new();
	p.deadline = evtimer_new(p.base, on_deadline, &p);
	p.beat = evtimer_new(p.base, on_beat, &p);
	p.hold = evtimer_new(p.base, on_hold, &p);
	arm(p.deadline, p.timeout_ms);
	p.conn = rpc_connect(p.base, host, port, &token, NULL, &cbs, &p, &err);
	token_wipe(&token);
	if (p.conn == NULL) {
		fprintf(stderr, "shoal-peer: %s\n", err.msg);
		return EXIT_NO_REPLY;
	}
	event_base_dispatch(p.base);
	if (p.conn)
		rpc_free(p.conn);
	event_free(p.deadline);
	event_free(p.beat);
	event_free(p.hold);
	event_base_free(p.base);
	for (size_t i = 0; i < p.nreported; i++)
		free(p.reported[i]);
	free(p.reported);
	free(p.labels);
	nodekey_wipe(&p.key);
	return p.exit_code;
}
