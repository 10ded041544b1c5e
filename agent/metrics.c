#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "err.h"
#include "httpd.h"
#include "log.h"
#include "manifest_spec.h"
#include "prom.h"
#include "proxy.h"
#include "rpc.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"

struct agent_metrics {
	struct evhttp *http;
	uint16_t port;
};

static const double start_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const char *const health_kinds[] = {"none", "http", "tcp", "cmd"};

static struct {
	bool init;
	uint64_t starts[2]; /* failed, started */
	struct prom_hist start_seconds;
	uint64_t health[4][2]; /* [kind][ok] */
} counts;

static void
counts_init(void)
{
	if (!counts.init) {
		prom_hist_init(&counts.start_seconds, start_bounds, ARRAY_SIZE(start_bounds));
		counts.init = true;
	}
}

void
metrics_container_started(bool ok, double seconds)
{
	counts_init();
	counts.starts[ok]++;
	prom_hist_observe(&counts.start_seconds, seconds < 0 ? 0 : seconds);
}

void
metrics_health_result(int kind, bool ok)
{
	if (kind >= 0 && kind < (int)ARRAY_SIZE(health_kinds))
		counts.health[kind][ok]++;
}

static const char *
task_state_text(int st)
{
	static const char *const names[] = {"pending", "assigned", "preparing", "starting",
	                                    "running", "stopping", "stopped",   "failed"};
	return st >= 0 && st < (int)ARRAY_SIZE(names) ? names[st] : "unknown";
}

/* A service total's or a backend's counters as one family's samples. */
struct proxy_metric {
	const char *name, *type, *help;
	size_t off; /* offsetof(struct proxy_counters, field) */
	bool signed_value;
};

#define PM(field, name, type, help, s)                                                             \
	{                                                                                          \
		name, type, help, offsetof(struct proxy_counters, field), s                        \
	}

static const struct proxy_metric service_metrics[] = {
    PM(conns, "shoal_proxy_connections_total", "counter",
       "Client connections a published service accepted.", false),
    PM(active, "shoal_proxy_active_connections", "gauge", "Client connections open now.", true),
    PM(connect_failures, "shoal_proxy_connect_failures_total", "counter",
       "Backend connects refused, reset or timed out.", false),
    PM(retries, "shoal_proxy_retries_total", "counter",
       "Clients moved to another backend after a failed connect.", false),
    PM(rejected, "shoal_proxy_rejected_total", "counter",
       "Clients refused: over max connections, no backend left, or queue timeout.", false),
    PM(busy_timeouts, "shoal_proxy_busy_timeouts_total", "counter",
       "Connects timed out on a backend that answered recently (busy, not benched).", false),
    PM(queued, "shoal_proxy_queued_total", "counter",
       "Clients that waited in the queue for a backend slot.", false),
    PM(queue_timeouts, "shoal_proxy_queue_timeouts_total", "counter",
       "Clients closed after waiting queue_timeout for a slot.", false),
};

static const struct proxy_metric backend_metrics[] = {
    PM(conns, "shoal_proxy_backend_connections_total", "counter",
       "Connections established to a backend.", false),
    PM(active, "shoal_proxy_backend_active_connections", "gauge",
       "Connections open to a backend now.", true),
    PM(connect_failures, "shoal_proxy_backend_connect_failures_total", "counter",
       "Connects to a backend refused, reset or timed out.", false),
    PM(retries, "shoal_proxy_backend_retries_total", "counter",
       "Clients moved off a backend after its connect failed.", false),
    PM(busy_timeouts, "shoal_proxy_backend_busy_timeouts_total", "counter",
       "Connects to a backend that timed out while it answered recently.", false),
};

static uint64_t
counter_at(const struct proxy_counters *c, const struct proxy_metric *m)
{
	const char *p = (const char *)c + m->off;
	if (m->signed_value) {
		int64_t v;
		memcpy(&v, p, sizeof(v));
		return v > 0 ? (uint64_t)v : 0;
	}
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static void
counters_from(struct proxy_counters *c, const Shoal__ServiceStats *r)
{
	c->conns = r->connections;
	c->active = (int64_t)r->active;
	c->bytes_in = r->bytes_in;
	c->bytes_out = r->bytes_out;
	c->connect_failures = r->connect_failures;
	c->retries = r->retries;
	c->rejected = r->rejected;
	c->busy_timeouts = r->busy_timeouts;
	c->queued = r->queued;
	c->queue_wait_ms = r->queue_wait_ms;
	c->queue_timeouts = r->queue_timeouts;
}

/* The proxy lives in the ingress process: its last report, rows of a service total ("" backend)
 * each followed by that service's backends, back into the proxy's own form. */
static void
stats_from_report(const Shoal__IngressReport *r, struct proxy_stats *out)
{
	struct proxy_service_stats *sv = NULL;

	out->services = xcalloc(r->n_stats + 1, sizeof(*out->services));
	for (size_t i = 0; i < r->n_stats; i++) {
		const Shoal__ServiceStats *row = r->stats[i];
		if (row->backend == NULL || row->backend[0] == '\0') {
			sv = &out->services[out->nservices++];
			snprintf(sv->name, sizeof(sv->name), "%s",
			         row->service ? row->service : "");
			counters_from(&sv->c, row);
			sv->queue_len = (int64_t)row->queue_len;
			sv->queue_max_wait = (int64_t)row->queue_max_wait_ms;
			sv->backends = xcalloc(r->n_stats - i, sizeof(*sv->backends));
		} else if (sv) {
			struct proxy_backend_stats *b = &sv->backends[sv->nbackends++];
			snprintf(b->id, sizeof(b->id), "%s", row->task_id ? row->task_id : "");
			snprintf(b->addr, sizeof(b->addr), "%s", row->backend);
			b->benched = row->benched;
			counters_from(&b->c, row);
		}
	}
}

static void
write_proxy(struct evbuffer *out, const struct proxy_stats *st)
{
	for (size_t m = 0; m < ARRAY_SIZE(service_metrics); m++) {
		const struct proxy_metric *pm = &service_metrics[m];
		prom_family(out, pm->name, pm->type, pm->help);
		for (size_t i = 0; i < st->nservices; i++) {
			const char *l[] = {"service", st->services[i].name, NULL};
			prom_sample_u64(out, pm->name, l, counter_at(&st->services[i].c, pm));
		}
	}
	prom_family(out, "shoal_proxy_bytes_total", "counter",
	            "Bytes a published service carried: direction=in from clients to backends, "
	            "out back to clients.");
	for (size_t i = 0; i < st->nservices; i++) {
		const struct proxy_service_stats *s = &st->services[i];
		const char *in[] = {"service", s->name, "direction", "in", NULL};
		const char *o[] = {"service", s->name, "direction", "out", NULL};
		prom_sample_u64(out, "shoal_proxy_bytes_total", in, s->c.bytes_in);
		prom_sample_u64(out, "shoal_proxy_bytes_total", o, s->c.bytes_out);
	}
	prom_family(out, "shoal_proxy_queue_wait_seconds_total", "counter",
	            "Time clients that got a slot spent waiting for it, summed.");
	for (size_t i = 0; i < st->nservices; i++) {
		const char *l[] = {"service", st->services[i].name, NULL};
		prom_sample(out, "shoal_proxy_queue_wait_seconds_total", l,
		            (double)st->services[i].c.queue_wait_ms / 1000.0);
	}
	prom_family(out, "shoal_proxy_queue_length", "gauge", "Clients waiting for a slot now.");
	for (size_t i = 0; i < st->nservices; i++) {
		const char *l[] = {"service", st->services[i].name, NULL};
		prom_sample_u64(out, "shoal_proxy_queue_length", l,
		                st->services[i].queue_len > 0 ? (uint64_t)st->services[i].queue_len
		                                              : 0);
	}
	prom_family(out, "shoal_proxy_queue_oldest_wait_seconds", "gauge",
	            "How long the oldest client waiting for a slot has waited (0: none waits).");
	for (size_t i = 0; i < st->nservices; i++) {
		const char *l[] = {"service", st->services[i].name, NULL};
		int64_t w = st->services[i].queue_len > 0 ? st->services[i].queue_max_wait : 0;
		prom_sample(out, "shoal_proxy_queue_oldest_wait_seconds", l,
		            w > 0 ? (double)w / 1000.0 : 0);
	}
	prom_family(out, "shoal_proxy_backends", "gauge", "Backends in a service's rotation.");
	for (size_t i = 0; i < st->nservices; i++) {
		const char *l[] = {"service", st->services[i].name, NULL};
		prom_sample_u64(out, "shoal_proxy_backends", l, st->services[i].nbackends);
	}
	prom_family(out, "shoal_proxy_benched_backends", "gauge",
	            "Backends benched now (skipped after a failed connect).");
	for (size_t i = 0; i < st->nservices; i++) {
		const char *l[] = {"service", st->services[i].name, NULL};
		uint64_t n = 0;
		for (size_t k = 0; k < st->services[i].nbackends; k++)
			n += st->services[i].backends[k].benched;
		prom_sample_u64(out, "shoal_proxy_benched_backends", l, n);
	}

	for (size_t m = 0; m < ARRAY_SIZE(backend_metrics); m++) {
		const struct proxy_metric *pm = &backend_metrics[m];
		prom_family(out, pm->name, pm->type, pm->help);
		for (size_t i = 0; i < st->nservices; i++)
			for (size_t k = 0; k < st->services[i].nbackends; k++) {
				const struct proxy_backend_stats *b = &st->services[i].backends[k];
				const char *l[] = {"service", st->services[i].name,
				                   "backend", b->addr,
				                   "task",    b->id,
				                   NULL};
				prom_sample_u64(out, pm->name, l, counter_at(&b->c, pm));
			}
	}
	prom_family(out, "shoal_proxy_backend_bytes_total", "counter",
	            "Bytes carried to (direction=in) and from (out) one backend.");
	for (size_t i = 0; i < st->nservices; i++)
		for (size_t k = 0; k < st->services[i].nbackends; k++) {
			const struct proxy_backend_stats *b = &st->services[i].backends[k];
			const char *in[] = {
			    "service", st->services[i].name, "backend", b->addr, "task",
			    b->id,     "direction",          "in",      NULL};
			const char *o[] = {
			    "service", st->services[i].name, "backend", b->addr, "task",
			    b->id,     "direction",          "out",     NULL};
			prom_sample_u64(out, "shoal_proxy_backend_bytes_total", in, b->c.bytes_in);
			prom_sample_u64(out, "shoal_proxy_backend_bytes_total", o, b->c.bytes_out);
		}
	prom_family(out, "shoal_proxy_backend_benched", "gauge",
	            "1 while a backend is benched after a failed connect.");
	for (size_t i = 0; i < st->nservices; i++)
		for (size_t k = 0; k < st->services[i].nbackends; k++) {
			const struct proxy_backend_stats *b = &st->services[i].backends[k];
			const char *l[] = {
			    "service", st->services[i].name, "backend", b->addr, "task", b->id,
			    NULL};
			prom_sample_u64(out, "shoal_proxy_backend_benched", l, b->benched);
		}
}

void
metrics_write(struct agent_server *a, struct evbuffer *out)
{
	const struct rpc_counters *rc = rpc_counters_get();
	uint64_t by_state[8] = {0};

	counts_init();
	prom_family(out, "shoal_agent_container_starts_total", "counter",
	            "Container starts finished, by result (started or failed).");
	{
		const char *ok[] = {"result", "started", NULL}, *bad[] = {"result", "failed", NULL};
		prom_sample_u64(out, "shoal_agent_container_starts_total", ok, counts.starts[1]);
		prom_sample_u64(out, "shoal_agent_container_starts_total", bad, counts.starts[0]);
	}
	prom_family(out, "shoal_agent_container_start_duration_seconds", "histogram",
	            "Time from a task's start being queued (image preparation included) until "
	            "its container ran or failed.");
	prom_hist_write(out, "shoal_agent_container_start_duration_seconds", NULL,
	                &counts.start_seconds);
	prom_family(out, "shoal_agent_health_checks_total", "counter",
	            "Health check results, by kind of check and result (success or failure).");
	for (size_t k = 1; k < ARRAY_SIZE(health_kinds); k++)
		for (int ok = 1; ok >= 0; ok--) {
			const char *l[] = {"kind", health_kinds[k], "result",
			                   ok ? "success" : "failure", NULL};
			prom_sample_u64(out, "shoal_agent_health_checks_total", l,
			                counts.health[k][ok]);
		}
	for (size_t i = 0; i < a->tasks.n; i++) {
		int st = (int)a->tasks.v[i]->state;
		if (st >= 0 && st < (int)ARRAY_SIZE(by_state))
			by_state[st]++;
	}
	prom_family(out, "shoal_agent_tasks", "gauge", "Tasks this agent holds, by state.");
	for (int st = 2; st < (int)ARRAY_SIZE(by_state); st++) {
		const char *l[] = {"state", task_state_text(st), NULL};
		prom_sample_u64(out, "shoal_agent_tasks", l, by_state[st]);
	}
	prom_family(out, "shoal_agent_scheduler_connected", "gauge",
	            "1 while the agent is registered with the scheduler.");
	prom_sample_u64(out, "shoal_agent_scheduler_connected", NULL,
	                a->session.state == SESSION_READY);
	prom_family(out, "shoal_rpc_frames_received_total", "counter", "RPC frames received.");
	prom_sample_u64(out, "shoal_rpc_frames_received_total", NULL, rc->frames_in);
	prom_family(out, "shoal_rpc_frames_sent_total", "counter", "RPC frames queued to send.");
	prom_sample_u64(out, "shoal_rpc_frames_sent_total", NULL, rc->frames_out);
	if (ingress_report(&a->ingress)) {
		struct proxy_stats pst = {0};
		stats_from_report(ingress_report(&a->ingress), &pst);
		write_proxy(out, &pst);
		proxy_stats_free(&pst);
	}
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct agent_server *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	if (path && strcmp(path, "/metrics") == 0) {
		metrics_write(a, b);
		evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", b);
	} else {
		evbuffer_add_printf(b, "the agent serves /metrics only\n");
		evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
		evhttp_send_reply(req, 404, "Not Found", b);
	}
	evbuffer_free(b);
}

int
metrics_start(struct agent_server *a, const char *spec, struct shoal_err *err)
{
	struct agent_metrics *m;
	struct httpd_addr addr;
	struct shoal_err berr;

	counts_init();
	if (strcmp(spec, "off") == 0)
		return 0;
	if (httpd_parse(spec, &addr, err) == -1)
		return -1;
	m = xcalloc(1, sizeof(*m));
	a->metrics = m;
	m->http = httpd_new(a->base, on_request, a, err);
	if (m->http == NULL) {
		metrics_free(a);
		return -1;
	}
	if (httpd_bind(m->http, &addr, spec, &m->port, &berr) == -1) {
		/* A node runs its tasks without metrics rather than not at all (a second agent on
		 * the host, or another exporter on the port): said once, loudly. */
		shoal_log(LOG_WARNING, "http: /metrics off: cannot listen on %s: %s", spec,
		          strerror(berr.code));
		metrics_free(a);
		return 0;
	}
	shoal_log(LOG_INFO, "http: /metrics on %s:%u", addr.host, m->port);
	return 0;
}

uint16_t
metrics_port(const struct agent_server *a)
{
	return a->metrics ? a->metrics->port : 0;
}

void
metrics_free(struct agent_server *a)
{
	if (a->metrics == NULL)
		return;
	if (a->metrics->http)
		evhttp_free(a->metrics->http);
	free(a->metrics);
	a->metrics = NULL;
}
