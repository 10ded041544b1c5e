/*
 * simagents: many simulated Shoal agents in one process, for bench/scale.sh.
 *
 * Each simulated node speaks the real protocol over its own TCP connection (common/rpc: the
 * handshake with the worker token, then encrypted frames), on one libevent loop:
 *   - Register{name sim-00001.., capacity, tasks_running: what it acknowledged before},
 *   - a Heartbeat with usage every interval the scheduler hands out (+/-10% jitter, like
 *     agent/session.c), answered by a HeartbeatReply,
 *   - for every Assignments, one TaskReport: each task new to the node reported running
 *     (optionally preparing first, as a real agent does), each task no longer listed
 *     reported stopped. No container is started.
 * Like a real agent it drops a scheduler silent for 5 intervals and reconnects with back-off.
 *
 * Connections ramp up through a window (at most --window handshakes in flight) so that the
 * scheduler's listen backlog never overflows, from source addresses 127.0.0.2, .3, ...
 * (--sources) so that ephemeral ports never run out.
 *
 * Progress goes to stdout, one line per event, wall-clock ms first:
 *   ready WALL_MS nodes=N             every node registered
 *   assigned WALL_MS tasks=T          the nodes hold --expect tasks between them
 *   acked WALL_MS tasks=T             and reported each of them running
 * SIGUSR2: every node drops its session and registers again ("ready" is said again).
 *   stats WALL_MS ready=R tasks=T acked=A heartbeats=H replies=HR reports=P closed=C
 *         refused=F endpoints=E epbytes=B  (Endpoints frames received, their bytes)
 *         asbytes=A  (the Assignments frames' bytes)
 *         hbms=MS  (the longest heartbeat interval a reply has told)
 *                                     on SIGUSR1, every --stats-ms if set, and at exit
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "log.h"
#include "nodekey.h"
#include "rpc.h"
#include "shoal.pb-c.h"
#include "token.h"
#include "util.h"

#define TASK_ID_LEN    13 /* 12 hex and a NUL, as scheduler/task.h */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum sim_state {
	SIM_WAITING,     /* not connected yet (ramp) */
	SIM_CONNECTING,  /* connect, handshake, Register in flight */
	SIM_READY,       /* registered: heartbeating */
	SIM_RECONNECTING /* lost the scheduler: the timer reconnects */
};

struct sim;

/* One simulated node. */
struct sim_node {
	struct sim *sim;
	struct rpc_conn *conn;
	struct event *timer;      /* heartbeat when ready, reconnect when reconnecting */
	char (*ids)[TASK_ID_LEN]; /* the tasks assigned now, sorted */
	size_t nids;
	uint64_t next_id, register_id;
	uint64_t gen;    /* last Assignments generation */
	uint32_t idx;    /* 1-based: sim-00001 */
	uint32_t subnet; /* its container /24, host order, from RegisterReply */
	uint32_t heartbeat_ms;
	uint8_t state;
	uint8_t failures;
	bool ramp;          /* counted in the ramp window */
	struct nodekey key; /* its node identity, made at start, kept across reconnects */
};

/* The whole simulation; the only mutable global. */
struct sim {
	struct event_base *base;
	struct sim_node *nodes;
	uint32_t n;
	uint32_t next_ramp; /* next node to start */
	uint32_t inflight;  /* ramp connections not yet registered */
	uint32_t window;
	uint32_t sources;
	struct token token;
	struct sockaddr_in dst;
	char peer[80];
	const char *prefix;
	int64_t cpu_millis, memory_bytes;
	uint64_t expect;
	bool preparing; /* report preparing before running */
	bool stopping;
	/* counters */
	uint32_t ready;
	uint64_t tasks, acked, heartbeats, replies, reports, closed, refused;
	uint64_t endpoints, endpoints_bytes; /* Endpoints frames received, their bytes */
	uint64_t assign_bytes;               /* Assignments received, their bytes */
	uint32_t hb_ms;                      /* the last interval told, longest of a reply */
	bool ready_said, assigned_said, acked_said;
	struct event *sig_int, *sig_term, *sig_usr1, *sig_usr2, *stats_ev;
};

static void node_connect(struct sim_node *n);
static void on_closed(struct rpc_conn *c, const char *reason, void *arg);

static void say(const char *what, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(const char *what, const char *fmt, ...)
{
	va_list ap;

	printf("%s %lld ", what, (long long)util_wall_ms());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
say_stats(struct sim *s)
{
	say("stats",
	    "ready=%u tasks=%llu acked=%llu heartbeats=%llu replies=%llu reports=%llu "
	    "closed=%llu refused=%llu endpoints=%llu epbytes=%llu asbytes=%llu hbms=%u",
	    s->ready, (unsigned long long)s->tasks, (unsigned long long)s->acked,
	    (unsigned long long)s->heartbeats, (unsigned long long)s->replies,
	    (unsigned long long)s->reports, (unsigned long long)s->closed,
	    (unsigned long long)s->refused, (unsigned long long)s->endpoints,
	    (unsigned long long)s->endpoints_bytes, (unsigned long long)s->assign_bytes, s->hb_ms);
}

static void
arm(struct event *ev, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

	evtimer_add(ev, &tv);
}

static void
node_name(const struct sim_node *n, char *buf, size_t len)
{
	snprintf(buf, len, "%s-%05u", n->sim->prefix, n->idx);
}

/* Start as many ramp connections as the window allows. */
static void
ramp(struct sim *s)
{
	while (!s->stopping && s->inflight < s->window && s->next_ramp < s->n) {
		struct sim_node *n = &s->nodes[s->next_ramp++];
		n->ramp = true;
		s->inflight++;
		node_connect(n);
	}
}

static void
ramp_done(struct sim_node *n)
{
	if (!n->ramp)
		return;
	n->ramp = false;
	n->sim->inflight--;
	ramp(n->sim);
}

static void
send_or_warn(struct sim_node *n, Shoal__Envelope *env, const char *what)
{
	struct shoal_err err;

	if (n->conn && rpc_send(n->conn, env, &err) == -1)
		shoal_log(LOG_WARNING, "node %u: %s: %s", n->idx, what, err.msg);
}

static void
send_heartbeat(struct sim_node *n)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Heartbeat hb = SHOAL__HEARTBEAT__INIT;
	Shoal__Usage usage = SHOAL__USAGE__INIT;

	/* Some plausible, changing usage: a few percent of capacity. */
	usage.cpu_millis = (uint64_t)(n->sim->cpu_millis / 50) + util_random(100);
	usage.memory_bytes = (uint64_t)(n->sim->memory_bytes / 50) + util_random(1 << 20);
	hb.usage = &usage;
	hb.assignments_generation = n->gen;
	env.id = ++n->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_HEARTBEAT;
	env.heartbeat = &hb;
	send_or_warn(n, &env, "heartbeat");
	n->sim->heartbeats++;
}

static void
fill_status(const struct sim_node *n, Shoal__TaskStatus *st, const char *id, Shoal__TaskState state,
            size_t k, char *ip, size_t iplen, int64_t now)
{
	uint32_t a = n->subnet + 2 + (uint32_t)(k % 253);

	shoal__task_status__init(st);
	st->task_id = (char *)id;
	st->state = state;
	st->timestamp_ms = now;
	st->generation = n->gen;
	if (state == SHOAL__TASK_STATE__TASK_RUNNING) {
		snprintf(ip, iplen, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
		         a & 255);
		st->container_ip = ip;
		st->started_at_ms = now;
	} else if (state == SHOAL__TASK_STATE__TASK_STOPPED) {
		st->exit_code = 0;
	}
}

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
send_report(struct sim_node *n, Shoal__TaskStatus **sp, size_t ns)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__TaskReport tr = SHOAL__TASK_REPORT__INIT;

	if (ns == 0)
		return;
	tr.statuses = sp;
	tr.n_statuses = ns;
	env.id = ++n->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_TASK_REPORT;
	env.task_report = &tr;
	send_or_warn(n, &env, "task report");
	n->sim->reports++;
}

/*
 * The node's whole set arrived: report what is new running (preparing first if asked) and
 * what left stopped, then keep the new set. Sorted sets make this one merge.
 */
static void
on_assignments(struct sim_node *n, const Shoal__Assignments *as)
{
	struct sim *s = n->sim;
	size_t m = 0, nst = 0, i = 0, j = 0, cap;
	char(*ids)[TASK_ID_LEN] = xcalloc(as->n_tasks ? as->n_tasks : 1, TASK_ID_LEN);
	Shoal__TaskStatus *sts, **sp, **prep;
	char(*ips)[16];
	size_t nprep = 0;
	int64_t now = util_wall_ms();

	for (size_t k = 0; k < as->n_tasks; k++)
		if (strlen(as->tasks[k]->task_id) < TASK_ID_LEN)
			memcpy(ids[m++], as->tasks[k]->task_id, strlen(as->tasks[k]->task_id) + 1);
	qsort(ids, m, TASK_ID_LEN, id_cmp);
	n->gen = as->generation;
	cap = m + n->nids + 1;
	sts = xcalloc(cap + m, sizeof(*sts));
	sp = xcalloc(cap, sizeof(*sp));
	prep = xcalloc(m + 1, sizeof(*prep));
	ips = xcalloc(cap, sizeof(*ips));
	while (i < m || j < n->nids) {
		int c = i == m ? 1 : j == n->nids ? -1 : strcmp(ids[i], n->ids[j]);
		if (c < 0) { /* new here: it "starts" at once */
			if (s->preparing) {
				fill_status(n, &sts[cap + nprep], ids[i],
				            SHOAL__TASK_STATE__TASK_PREPARING, i, NULL, 0, now);
				prep[nprep] = &sts[cap + nprep];
				nprep++;
			}
			fill_status(n, &sts[nst], ids[i], SHOAL__TASK_STATE__TASK_RUNNING, i,
			            ips[nst], sizeof(ips[nst]), now);
			sp[nst] = &sts[nst];
			nst++;
			s->acked++;
			i++;
		} else if (c > 0) { /* no longer listed: "stopped" */
			fill_status(n, &sts[nst], n->ids[j], SHOAL__TASK_STATE__TASK_STOPPED, j,
			            NULL, 0, now);
			sp[nst] = &sts[nst];
			nst++;
			j++;
		} else {
			i++;
			j++;
		}
	}
	send_report(n, prep, nprep);
	send_report(n, sp, nst);
	s->tasks = s->tasks - n->nids + m;
	free(n->ids);
	n->ids = ids;
	n->nids = m;
	free(sts);
	free(sp);
	free(prep);
	free(ips);
	if (s->expect && !s->assigned_said && s->tasks >= s->expect) {
		s->assigned_said = true;
		say("assigned", "tasks=%llu", (unsigned long long)s->tasks);
	}
	if (s->expect && !s->acked_said && s->acked >= s->expect) {
		s->acked_said = true;
		say("acked", "tasks=%llu", (unsigned long long)s->acked);
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct sim_node *n = arg;

	(void)fd;
	(void)what;
	if (n->state == SIM_RECONNECTING) {
		node_connect(n);
		return;
	}
	if (n->state != SIM_READY)
		return;
	send_heartbeat(n);
	arm(n->timer, util_jitter(n->heartbeat_ms, 10));
}

static void
send_register(struct sim_node *n)
{
	struct sim *s = n->sim;
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__Register reg = SHOAL__REGISTER__INIT;
	Shoal__Capacity cap = SHOAL__CAPACITY__INIT;
	Shoal__Label zone = SHOAL__LABEL__INIT, *lp = &zone;
	Shoal__TaskStatus *sts = xcalloc(n->nids ? n->nids : 1, sizeof(*sts));
	Shoal__TaskStatus **sp = xcalloc(n->nids ? n->nids : 1, sizeof(*sp));
	char(*ips)[16] = xcalloc(n->nids ? n->nids : 1, sizeof(*ips));
	char name[64], zone_value[16];
	uint8_t sig[NODEKEY_SIG_BYTES];
	int64_t now = util_wall_ms();

	node_name(n, name, sizeof(name));
	/* As agent/session.c: prove the node key on this connection. */
	nodekey_sign_register(&n->key, n->conn, &reg, sig);
	snprintf(zone_value, sizeof(zone_value), "z%u", n->idx % 4);
	zone.key = "zone";
	zone.value = zone_value;
	reg.keeps_specs = true; /* as an agent: each spec once a session */
	cap.cpu_millis = (uint64_t)s->cpu_millis;
	cap.memory_bytes = (uint64_t)s->memory_bytes;
	/* After a reconnect: what it runs, so that the scheduler adopts it. */
	for (size_t k = 0; k < n->nids; k++) {
		fill_status(n, &sts[k], n->ids[k], SHOAL__TASK_STATE__TASK_RUNNING, k, ips[k],
		            sizeof(ips[k]), now);
		sp[k] = &sts[k];
	}
	reg.node_name = name;
	reg.address = "127.0.0.1";
	reg.labels = &lp;
	reg.n_labels = 1;
	reg.capacity = &cap;
	reg.tasks_running = sp;
	reg.n_tasks_running = n->nids;
	reg.version = "0.1-sim";
	env.id = n->register_id = ++n->next_id;
	env.body_case = SHOAL__ENVELOPE__BODY_REGISTER;
	env.register_ = &reg;
	send_or_warn(n, &env, "register");
	free(sts);
	free(sp);
	free(ips);
}

static void
on_ready(struct rpc_conn *c, void *arg)
{
	(void)c;
	send_register(arg);
}

static void
on_register_reply(struct sim_node *n, const Shoal__RegisterReply *rr)
{
	struct sim *s = n->sim;
	struct in_addr in;
	char net[32];
	const char *slash = strchr(rr->container_subnet, '/');

	snprintf(net, sizeof(net), "%.*s",
	         (int)(slash ? slash - rr->container_subnet : (ptrdiff_t)sizeof(net) - 1),
	         rr->container_subnet);
	n->subnet = inet_pton(AF_INET, net, &in) == 1 ? ntohl(in.s_addr) : 0;
	n->heartbeat_ms = rr->heartbeat_interval_ms ? rr->heartbeat_interval_ms : 1000;
	n->state = SIM_READY;
	n->failures = 0;
	s->ready++;
	/* Like agent/session.c: silence for 5 intervals means the scheduler is gone. */
	rpc_set_idle_timeout(n->conn, (int)(5 * n->heartbeat_ms));
	send_heartbeat(n);
	arm(n->timer, util_jitter(n->heartbeat_ms, 10));
	ramp_done(n);
	if (!s->ready_said && s->ready == s->n) {
		s->ready_said = true;
		say("ready", "nodes=%u", s->n);
	}
}

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct sim_node *n = arg;

	(void)c;
	switch (env->body_case) {
	case SHOAL__ENVELOPE__BODY_REGISTER_REPLY:
		if (n->state == SIM_CONNECTING && env->id == n->register_id)
			on_register_reply(n, env->register_reply);
		break;
	case SHOAL__ENVELOPE__BODY_HEARTBEAT_REPLY:
		n->sim->replies++;
		/* As an agent does: the scheduler stretches the interval for a big cluster. */
		if (env->heartbeat_reply->heartbeat_interval_ms &&
		    env->heartbeat_reply->heartbeat_interval_ms != n->heartbeat_ms) {
			n->heartbeat_ms = env->heartbeat_reply->heartbeat_interval_ms;
			rpc_set_idle_timeout(n->conn, (int)(5 * n->heartbeat_ms));
		}
		if (n->heartbeat_ms > n->sim->hb_ms || n->sim->hb_ms == 0)
			n->sim->hb_ms = n->heartbeat_ms;
		break;
	case SHOAL__ENVELOPE__BODY_ASSIGNMENTS:
		n->sim->assign_bytes += shoal__assignments__get_packed_size(env->assignments);
		if (n->state == SIM_READY)
			on_assignments(n, env->assignments);
		break;
	case SHOAL__ENVELOPE__BODY_ENDPOINTS:
		/* Counted (the volume every node receives is what scales with tasks x nodes), not
		 * applied: no proxy here. */
		n->sim->endpoints++;
		n->sim->endpoints_bytes += shoal__endpoints__get_packed_size(env->endpoints);
		break;
	case SHOAL__ENVELOPE__BODY_ERROR:
		n->sim->refused++;
		shoal_log(LOG_ERR, "node %u: scheduler refused a request: %s", n->idx,
		          env->error->message);
		/* A refused registration: drop the session and retry later, as agents do. */
		if (env->id == n->register_id && n->state == SIM_CONNECTING) {
			rpc_free(n->conn);
			on_closed(NULL, "registration refused", n);
		}
		break;
	default:
		break;
	}
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct sim_node *n = arg;
	struct sim *s = n->sim;
	int64_t ms = BACKOFF_MIN_MS;

	(void)c;
	n->conn = NULL;
	s->closed++;
	if (n->state == SIM_READY)
		s->ready--;
	shoal_log(LOG_WARNING, "node %u: lost the scheduler: %s; reconnecting", n->idx, reason);
	n->state = SIM_RECONNECTING;
	if (n->failures < 16)
		n->failures++;
	for (int i = 1; i < n->failures && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	arm(n->timer, util_jitter(ms > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms, 20));
	ramp_done(n);
}

static const struct rpc_callbacks sim_cbs = {
    .ready = on_ready,
    .message = on_message,
    .closed = on_closed,
};

/* A non-blocking connect from 127.0.0.(2 + idx % sources), handed to the rpc client. */
static void
node_connect(struct sim_node *n)
{
	struct sim *s = n->sim;
	struct sockaddr_in src = {.sin_family = AF_INET};
	int fd, one = 1;

	n->state = SIM_CONNECTING;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		shoal_log(LOG_ERR, "node %u: socket: %s", n->idx, strerror(errno));
		goto retry;
	}
	if (s->sources > 0) {
		src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + n->idx % s->sources);
		/* The port is picked at connect(), per destination: no ephemeral exhaustion. */
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			shoal_log(LOG_ERR, "node %u: bind 127.0.0.%u: %s", n->idx,
			          1 + n->idx % s->sources, strerror(errno));
			close(fd);
			goto retry;
		}
	}
	if (connect(fd, (struct sockaddr *)&s->dst, sizeof(s->dst)) == -1 && errno != EINPROGRESS) {
		shoal_log(LOG_ERR, "node %u: connect %s: %s", n->idx, s->peer, strerror(errno));
		close(fd);
		goto retry;
	}
	n->conn = rpc_client(s->base, fd, s->peer, &s->token, NULL, &sim_cbs, n);
	if (n->conn != NULL)
		return;
retry:
	n->state = SIM_RECONNECTING;
	s->closed++;
	arm(n->timer, util_jitter(BACKOFF_MAX_MS, 20));
	ramp_done(n);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sim *s = arg;

	(void)what;
	if (sig == SIGUSR1) {
		say_stats(s);
		return;
	}
	if (sig == SIGUSR2) {
		/* Every node drops its session and registers again (with its own key): the storm
		 * a scheduler restart or a network cut brings. "ready" is said again when all are
		 * back. */
		s->ready_said = false;
		for (uint32_t i = 0; i < s->n; i++) {
			struct sim_node *n = &s->nodes[i];
			if (n->state != SIM_READY || n->conn == NULL)
				continue;
			rpc_free(n->conn);
			n->failures = 0;
			on_closed(NULL, "SIGUSR2", n);
		}
		return;
	}
	s->stopping = true;
	event_base_loopexit(s->base, NULL);
}

static void
on_stats(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	say_stats(arg);
}

/* As many descriptors as the hard limit allows: one per node and a few. */
static void
raise_nofile(uint32_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < (rlim_t)want + 64) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want + 64
		                  ? (rlim_t)want + 64
		                  : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			fprintf(stderr, "simagents: setrlimit NOFILE: %s\n", strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)want + 64)
		fprintf(stderr, "simagents: only %llu descriptors for %u nodes (hard limit)\n",
		        (unsigned long long)rl.rlim_cur, want);
}

static const char usage_text[] =
    "usage: simagents --scheduler HOST:PORT --token-file FILE --nodes N [options]\n"
    "  --scheduler HOST:PORT   the scheduler (an IPv4 address)\n"
    "  --token-file FILE       the worker token\n"
    "  --nodes N               simulated nodes (sim-00001 ...)\n"
    "  --prefix NAME           node name prefix (default sim)\n"
    "  --cpus N                capacity per node (default 64)\n"
    "  --memory SIZE           capacity per node (default 256Gi)\n"
    "  --expect TASKS          say `assigned` and `acked` once the nodes hold TASKS\n"
    "  --preparing             report each new task preparing, then running\n"
    "  --window N              handshakes in flight while ramping up (default 256)\n"
    "  --sources N             source addresses 127.0.0.2.. (default 8; 0: any)\n"
    "  --stats-ms MS           print a stats line every MS (default: on SIGUSR1 only)\n"
    "  --log-level LEVEL       error, warn (default), info, debug\n";

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"scheduler", required_argument, NULL, 's'},
	    {"token-file", required_argument, NULL, 't'},
	    {"nodes", required_argument, NULL, 'n'},
	    {"prefix", required_argument, NULL, 'p'},
	    {"cpus", required_argument, NULL, 'c'},
	    {"memory", required_argument, NULL, 'm'},
	    {"expect", required_argument, NULL, 'e'},
	    {"preparing", no_argument, NULL, 'P'},
	    {"window", required_argument, NULL, 'w'},
	    {"sources", required_argument, NULL, 'S'},
	    {"stats-ms", required_argument, NULL, 'i'},
	    {"log-level", required_argument, NULL, 'L'},
	    {"help", no_argument, NULL, 'h'},
	    {0, 0, 0, 0},
	};
	struct sim s = {
	    .prefix = "sim",
	    .cpu_millis = 64000,
	    .memory_bytes = 256LL << 30,
	    .window = 256,
	    .sources = 8,
	};
	const char *sched = NULL, *token_file = NULL;
	struct shoal_err err;
	char host[64];
	uint16_t port;
	long stats_ms = 0;
	int c, level = LOG_WARNING;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sched = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'n':
			s.n = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'p':
			s.prefix = optarg;
			break;
		case 'c':
			s.cpu_millis = (int64_t)(strtod(optarg, NULL) * 1000);
			break;
		case 'm':
			if (util_parse_bytes(optarg, &s.memory_bytes, &err) == -1) {
				fprintf(stderr, "simagents: --memory: %s\n", err.msg);
				return 2;
			}
			break;
		case 'e':
			s.expect = strtoull(optarg, NULL, 10);
			break;
		case 'P':
			s.preparing = true;
			break;
		case 'w':
			s.window = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'S':
			s.sources = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'i':
			stats_ms = strtol(optarg, NULL, 10);
			break;
		case 'L':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "simagents: unknown log level %s\n", optarg);
				return 2;
			}
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return 2;
		}
	}
	if (sched == NULL || token_file == NULL || s.n == 0 || s.window == 0 || optind != argc) {
		fputs(usage_text, stderr);
		return 2;
	}
	if (s.sources > 250)
		s.sources = 250;
	if (sodium_init() < 0) {
		fputs("simagents: cannot initialise libsodium\n", stderr);
		return 1;
	}
	log_init("sim", level);
	if (util_parse_hostport(sched, host, sizeof(host), &port, &err) == -1 ||
	    token_load(token_file, &s.token, &err) == -1) {
		fprintf(stderr, "simagents: %s\n", err.msg);
		return 1;
	}
	if (host[0] == '\0')
		snprintf(host, sizeof(host), "127.0.0.1");
	s.dst.sin_family = AF_INET;
	s.dst.sin_port = htons(port);
	if (inet_pton(AF_INET, host, &s.dst.sin_addr) != 1) {
		fprintf(stderr, "simagents: --scheduler %s: host must be an IPv4 address\n", sched);
		return 1;
	}
	snprintf(s.peer, sizeof(s.peer), "%s:%u", host, port);
	raise_nofile(s.n);
	signal(SIGPIPE, SIG_IGN);

	s.base = event_base_new();
	if (s.base == NULL) {
		fputs("simagents: cannot create an event loop\n", stderr);
		return 1;
	}
	s.nodes = xcalloc(s.n, sizeof(*s.nodes));
	for (uint32_t i = 0; i < s.n; i++) {
		s.nodes[i].sim = &s;
		s.nodes[i].idx = i + 1;
		crypto_sign_keypair(s.nodes[i].key.pk, s.nodes[i].key.sk);
		s.nodes[i].timer = evtimer_new(s.base, on_timer, &s.nodes[i]);
	}
	s.sig_int = evsignal_new(s.base, SIGINT, on_signal, &s);
	s.sig_term = evsignal_new(s.base, SIGTERM, on_signal, &s);
	s.sig_usr1 = evsignal_new(s.base, SIGUSR1, on_signal, &s);
	s.sig_usr2 = evsignal_new(s.base, SIGUSR2, on_signal, &s);
	event_add(s.sig_usr2, NULL);
	event_add(s.sig_int, NULL);
	event_add(s.sig_term, NULL);
	event_add(s.sig_usr1, NULL);
	if (stats_ms > 0) {
		struct timeval tv = {stats_ms / 1000, (stats_ms % 1000) * 1000};
		s.stats_ev = event_new(s.base, -1, EV_PERSIST, on_stats, &s);
		event_add(s.stats_ev, &tv);
	}
	ramp(&s);
	event_base_dispatch(s.base);

	say_stats(&s);
	for (uint32_t i = 0; i < s.n; i++) {
		rpc_free(s.nodes[i].conn);
		event_free(s.nodes[i].timer);
		free(s.nodes[i].ids);
	}
	free(s.nodes);
	event_free(s.sig_int);
	event_free(s.sig_term);
	event_free(s.sig_usr1);
	event_free(s.sig_usr2);
	if (s.stats_ev)
		event_free(s.stats_ev);
	event_base_free(s.base);
	token_wipe(&s.token);
	return 0;
}
