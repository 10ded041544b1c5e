#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "err.h"
#include "events.h"
#include "httpd.h"
#include "identity.h"
#include "log.h"
#include "page.h"
#include "prom.h"
#include "rpc.h"
#include "server-t.h"
#include "service.h"
#include "task.h"
#include "update_text.h"
#include "service.h"
#include "task.h"
#include "token.h"
#include "util.h"

/* Tasks /api/state lists at most: a page of a million tasks helps nobody, and the JSON
 * would cost the loop a second. */
#define HTTP_STATE_MAX_TASKS 2000
/* Proxy counter lines likewise (nodes x services x backends grows fast). */
#define HTTP_STATE_MAX_PROXY 2000
/* Events one /api/events answer carries at most: the page asks again a second later. */
#define HTTP_EVENTS_MAX 500

struct sched_http {
	struct evhttp *http;
	bool open;         /* bound to loopback: no token asked */
	uint16_t port;     /* where it listens */
	struct token read; /* DATA_DIR/read.token */
};

static const char *const node_status_names[] = {"down", "ready", "unknown"};

static const char *
update_state_name(enum update_state s)
{
	switch (s) {
	case UPDATE_NONE:
		return "none";
	case UPDATE_UPDATING:
		return "updating";
	case UPDATE_PAUSED:
		return "paused";
	case UPDATE_ROLLING_BACK:
		return "rolling_back";
	case UPDATE_ROLLED_BACK:
		return "rolled_back";
	case UPDATE_COMPLETED:
		return "completed";
	}
	return "none";
}

static const enum update_state update_states[] = {
    UPDATE_NONE,         UPDATE_UPDATING,    UPDATE_PAUSED,
    UPDATE_ROLLING_BACK, UPDATE_ROLLED_BACK, UPDATE_COMPLETED,
};

/* ---- auth ---- */

static bool
token_matches(const char *text, size_t len, const struct token *want)
{
	char buf[TOKEN_STRLEN + 8];
	struct shoal_err err;
	struct token t;
	bool ok;

	if (want->role == TOKEN_ROLE_NONE || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	ok = token_parse(buf, &t, &err) == 0 && t.role == want->role &&
	     sodium_memcmp(t.secret, want->secret, sizeof(t.secret)) == 0 &&
	     sodium_memcmp(t.ca_hash, want->ca_hash, sizeof(t.ca_hash)) == 0;
	sodium_memzero(buf, sizeof(buf));
	token_wipe(&t);
	return ok;
}

bool
http_authorized(const struct sched_server *srv, const char *auth)
{
	const struct sched_http *h = srv->http;
	const struct token *read = h ? &h->read : NULL;
	char dec[TOKEN_STRLEN + 256];
	size_t declen = 0;
	const char *tok;
	size_t toklen;
	bool ok;

	if (auth == NULL)
		return false;
	if (strncasecmp(auth, "Bearer ", 7) == 0) {
		tok = auth + 7;
		toklen = strlen(tok);
		return token_matches(tok, toklen, &srv->id.admin) ||
		       (read && token_matches(tok, toklen, read));
	}
	if (strncasecmp(auth, "Basic ", 6) != 0)
		return false;
	/* A browser's login prompt: any user name, the token as the password. */
	if (sodium_base642bin((unsigned char *)dec, sizeof(dec) - 1, auth + 6, strlen(auth + 6),
	                      " ", &declen, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return false;
	dec[declen] = '\0';
	tok = memchr(dec, ':', declen);
	if (tok == NULL)
		return false;
	tok++;
	toklen = declen - (size_t)(tok - dec);
	ok = token_matches(tok, toklen, &srv->id.admin) ||
	     (read && token_matches(tok, toklen, read));
	sodium_memzero(dec, sizeof(dec));
	return ok;
}

/* Loopback serves without a token: only to a Host that names loopback, so that a page of
 * another site cannot read it through a name that resolves to 127.0.0.1 (DNS rebinding). */
static bool
host_is_loopback(const char *host)
{
	size_t n;

	if (host == NULL)
		return true; /* HTTP/1.0 without Host: not a browser */
	if (host[0] == '[')
		return strncmp(host, "[::1]", 5) == 0;
	n = strcspn(host, ":");
	if (n == 9 && strncasecmp(host, "localhost", 9) == 0)
		return true;
	if (n >= 4 && strncmp(host, "127.", 4) == 0) {
		struct in_addr a;
		char ip[16];
		if (n >= sizeof(ip))
			return false;
		memcpy(ip, host, n);
		ip[n] = '\0';
		return inet_pton(AF_INET, ip, &a) == 1;
	}
	return false;
}

/* ---- /metrics ---- */

static void
count_task(const struct task *t, uint64_t *by_state)
{
	if (t && (unsigned)t->state <= TASK_STATE_FAILED)
		by_state[t->state]++;
}

void
http_metrics(struct sched_server *srv, struct evbuffer *out)
{
	const struct rpc_counters *rc = rpc_counters_get();
	uint64_t nodes[3] = {0}, tasks[TASK_STATE_FAILED + 1] = {0}, draining = 0;
	int64_t now = util_now_ms();

	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *n = srv->nodes.v[i];
		if ((unsigned)n->status < 3)
			nodes[n->status]++;
		draining += n->drain;
	}
	prom_family(out, "shoal_nodes", "gauge", "Nodes known to the scheduler, by status.");
	for (int s = 0; s < 3; s++) {
		const char *l[] = {"status", node_status_names[s], NULL};
		prom_sample_u64(out, "shoal_nodes", l, nodes[s]);
	}
	prom_family(out, "shoal_nodes_draining", "gauge",
	            "Nodes whose availability is drain (no new tasks).");
	prom_sample_u64(out, "shoal_nodes_draining", NULL, draining);

	prom_family(out, "shoal_node_heartbeat_age_seconds", "gauge",
	            "Time since each node's last message (heartbeat lag); a node is down after "
	            "3 heartbeat intervals.");
	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *n = srv->nodes.v[i];
		const char *l[] = {"node", n->name, NULL};
		if (n->last_seen > 0)
			prom_sample(out, "shoal_node_heartbeat_age_seconds", l,
			            (double)(now - n->last_seen) / 1000.0);
	}

	for (size_t i = 0; i < srv->services.n; i++) {
		const struct service *s = srv->services.v[i];
		for (size_t k = 0; k < s->nslots; k++) {
			const struct slot *sl = &s->slots[k];
			count_task(sl->cur, tasks);
			count_task(sl->next, tasks);
			for (size_t j = 0; j < sl->nstopping; j++)
				count_task(sl->stopping[j], tasks);
		}
	}
	prom_family(out, "shoal_tasks", "gauge",
	            "Current tasks of every slot (replacements and stopping ones included, "
	            "history not), by observed state.");
	for (int st = 0; st <= TASK_STATE_FAILED; st++) {
		const char *l[] = {"state", task_state_name(st), NULL};
		prom_sample_u64(out, "shoal_tasks", l, tasks[st]);
	}

	prom_family(out, "shoal_services", "gauge", "Services in the desired state.");
	prom_sample_u64(out, "shoal_services", NULL, srv->services.n);
	prom_family(out, "shoal_service_replicas_desired", "gauge", "Replicas a service asks for.");
	for (size_t i = 0; i < srv->services.n; i++) {
		const char *l[] = {"service", srv->services.v[i]->name, NULL};
		prom_sample_u64(out, "shoal_service_replicas_desired", l,
		                srv->services.v[i]->spec.replicas);
	}
	prom_family(out, "shoal_service_replicas_running", "gauge",
	            "Tasks of a service that count as replicas now.");
	for (size_t i = 0; i < srv->services.n; i++) {
		const char *l[] = {"service", srv->services.v[i]->name, NULL};
		prom_sample_u64(out, "shoal_service_replicas_running", l,
		                service_running(srv->services.v[i]));
	}
	prom_family(out, "shoal_service_update_state", "gauge",
	            "1 for the state a service's rolling update is in.");
	for (size_t i = 0; i < srv->services.n; i++) {
		const struct service *s = srv->services.v[i];
		for (size_t k = 0; k < ARRAY_SIZE(update_states); k++) {
			const char *l[] = {"service", s->name, "state",
			                   update_state_name(update_states[k]), NULL};
			prom_sample_u64(out, "shoal_service_update_state", l,
			                s->update.state == update_states[k]);
		}
	}
	prom_family(out, "shoal_service_update_slots_done", "gauge",
	            "Slots the current (or last) rolling update has moved to its version.");
	for (size_t i = 0; i < srv->services.n; i++) {
		const char *l[] = {"service", srv->services.v[i]->name, NULL};
		prom_sample_u64(out, "shoal_service_update_slots_done", l,
		                srv->services.v[i]->update.done);
	}
	prom_family(out, "shoal_service_update_slots", "gauge",
	            "Slots the current (or last) rolling update has to move.");
	for (size_t i = 0; i < srv->services.n; i++) {
		const char *l[] = {"service", srv->services.v[i]->name, NULL};
		prom_sample_u64(out, "shoal_service_update_slots", l,
		                srv->services.v[i]->update.total);
	}

	prom_family(out, "shoal_reconcile_pass_duration_seconds", "histogram",
	            "Time one reconcile pass held the scheduler's loop.");
	prom_hist_write(out, "shoal_reconcile_pass_duration_seconds", NULL, &srv->pass_seconds);

	prom_family(out, "shoal_rpc_connections", "gauge",
	            "Open RPC connections (agents and CLI calls).");
	prom_sample_u64(out, "shoal_rpc_connections", NULL, srv->nconns);
	prom_family(out, "shoal_rpc_frames_received_total", "counter", "RPC frames received.");
	prom_sample_u64(out, "shoal_rpc_frames_received_total", NULL, rc->frames_in);
	prom_family(out, "shoal_rpc_frames_sent_total", "counter", "RPC frames queued to send.");
	prom_sample_u64(out, "shoal_rpc_frames_sent_total", NULL, rc->frames_out);
	prom_family(out, "shoal_rpc_received_bytes_total", "counter",
	            "Bytes of RPC frames received (on the wire, encrypted).");
	prom_sample_u64(out, "shoal_rpc_received_bytes_total", NULL, rc->bytes_in);
	prom_family(out, "shoal_rpc_sent_bytes_total", "counter",
	            "Bytes of RPC frames queued to send (on the wire, encrypted).");
	prom_sample_u64(out, "shoal_rpc_sent_bytes_total", NULL, rc->bytes_out);

	prom_family(out, "shoal_events_total", "counter",
	            "Events emitted to the event stream, by type.");
	for (int t = 0; t < EVENTS_NTYPES; t++) {
		const char *l[] = {"type", events_type_name(t), NULL};
		prom_sample_u64(out, "shoal_events_total", l, srv->events.total[t]);
	}
	prom_family(out, "shoal_scheduler_uptime_seconds", "gauge",
	            "Time since this scheduler process started.");
	prom_sample(out, "shoal_scheduler_uptime_seconds", NULL,
	            (double)(now - srv->started) / 1000.0);
}

/* ---- /api/state ---- */

static json_t *
task_json(const struct task *t, const char *role)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:s}",
	                 "id", t->id, "name", t->name ? t->name : "", "service", t->svc->name,
	                 "slot", (json_int_t)t->slot, "version", (json_int_t)t->version, "node",
	                 t->node ? t->node->name : "", "desired",
	                 task_desired_name(task_desired(t)), "state", task_state_name(t->state),
	                 "health", t->health ? t->health : "", "message",
	                 t->message ? t->message : "", "ip", t->ip, "exit_code", (int)t->exit_code,
	                 "state_since_ms", (json_int_t)t->state_since, "role", role);
}

void
http_state(struct sched_server *srv, struct evbuffer *out)
{
	json_t *root = json_object(), *nodes = json_array(), *svcs = json_array();
	json_t *tasks = json_array(), *proxy = json_array();
	int64_t now = util_now_ms();
	size_t ntasks = 0, nproxy = 0;
	char *text;

	for (size_t i = 0; i < srv->nodes.n; i++) {
		const struct node *n = srv->nodes.v[i];
		json_array_append_new(
		    nodes,
		    json_pack(
		        "{s:s, s:s, s:s, s:s, s:b, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:f}",
		        "id", n->id, "name", n->name, "address", n->address ? n->address : "",
		        "status", (unsigned)n->status < 3 ? node_status_names[n->status] : "?",
		        "drain", n->drain, "labels", n->labels ? n->labels : "", "cpu_millis",
		        (json_int_t)n->cpu_millis, "memory_bytes", (json_int_t)n->memory_bytes,
		        "used_cpu_millis", (json_int_t)n->used_cpu_millis, "used_memory_bytes",
		        (json_int_t)n->used_memory_bytes, "reserved_cpu_millis",
		        (json_int_t)n->reserved_cpu_millis, "reserved_memory_bytes",
		        (json_int_t)n->reserved_memory_bytes, "tasks", (int)n->ntasks,
		        "heartbeat_age_s",
		        n->last_seen > 0 ? (double)(now - n->last_seen) / 1000.0 : -1.0));
		for (size_t k = 0; k < n->npstats && nproxy < HTTP_STATE_MAX_PROXY; k++, nproxy++) {
			const struct node_stat *p = &n->pstats[k];
			json_array_append_new(
			    proxy,
			    json_pack(
			        "{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "node",
			        n->name, "service", p->service, "backend", p->backend, "task_id",
			        p->task_id, "connections", (json_int_t)p->connections, "active",
			        (json_int_t)p->active, "bytes_in", (json_int_t)p->bytes_in,
			        "bytes_out", (json_int_t)p->bytes_out, "connect_failures",
			        (json_int_t)p->connect_failures, "retries", (json_int_t)p->retries,
			        "queue_len", (json_int_t)p->queue_len));
		}
	}
	for (size_t i = 0; i < srv->services.n; i++) {
		const struct service *s = srv->services.v[i];
		char *upd = update_text(s);
		json_array_append_new(
		    svcs,
		    json_pack("{s:s, s:s, s:I, s:i, s:i, s:{s:s, s:s, s:i, s:i}, s:s, s:b}", "name",
		              s->name, "image", s->spec.image ? s->spec.image : "", "version",
		              (json_int_t)s->version, "replicas", (int)s->spec.replicas, "running",
		              (int)service_running(s), "update", "state",
		              update_state_name(s->update.state), "text", upd, "done",
		              (int)s->update.done, "total", (int)s->update.total, "pending_reason",
		              s->pending_reason ? s->pending_reason : "", "removed", s->removed));
		free(upd);
		for (size_t k = 0; k < s->nslots; k++) {
			const struct slot *sl = &s->slots[k];
			if (sl->cur && ntasks++ < HTTP_STATE_MAX_TASKS)
				json_array_append_new(tasks, task_json(sl->cur, "current"));
			if (sl->next && ntasks++ < HTTP_STATE_MAX_TASKS)
				json_array_append_new(tasks, task_json(sl->next, "replacement"));
			for (size_t j = 0; j < sl->nstopping; j++)
				if (ntasks++ < HTTP_STATE_MAX_TASKS)
					json_array_append_new(
					    tasks, task_json(sl->stopping[j], "stopping"));
		}
	}
	json_object_set_new(root, "now_ms", json_integer(util_wall_ms()));
	json_object_set_new(root, "uptime_s", json_real((double)(now - srv->started) / 1000.0));
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "services", svcs);
	json_object_set_new(root, "tasks", tasks);
	json_object_set_new(root, "tasks_total", json_integer((json_int_t)ntasks));
	json_object_set_new(root, "proxy", proxy);
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (text) {
		evbuffer_add(out, text, strlen(text));
		free(text);
	}
}

/* ---- /api/events ---- */

void
http_events(struct sched_server *srv, const char *query, struct evbuffer *out)
{
	const struct events *ev = &srv->events;
	const struct events_entry *e;
	struct evkeyvalq q;
	uint64_t since = 0, next;
	char line[1024];
	size_t n = 0;

	TAILQ_INIT(&q);
	if (query && evhttp_parse_query_str(query, &q) == 0) {
		const char *v = evhttp_find_header(&q, "since");
		char *end;
		if (v) {
			unsigned long long x = strtoull(v, &end, 10);
			if (end != v && *end == '\0')
				since = x;
		}
	}
	evhttp_clear_headers(&q);
	/* A seq from before a restart of the scheduler (a new stream): read it from the start. */
	if (since > ev->last_seq)
		since = 0;
	next = since;
	evbuffer_add_printf(out, "{\"events\":[");
	for (e = events_next(ev, since); e && n < HTTP_EVENTS_MAX; e = events_next(ev, e->seq)) {
		events_format_json(e, line, sizeof(line));
		evbuffer_add_printf(out, "%s%s", n ? "," : "", line);
		next = e->seq;
		n++;
	}
	evbuffer_add_printf(out, "],\"next\":%llu,\"last\":%llu,\"missed\":%s}",
	                    (unsigned long long)next, (unsigned long long)ev->last_seq,
	                    since + 1 < events_first_seq(ev) ? "true" : "false");
}

/* ---- the server ---- */

static void
reply(struct evhttp_request *req, int code, const char *reason, const char *type,
      struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "X-Frame-Options", "DENY");
	evhttp_add_header(h, "Content-Security-Policy",
	                  "default-src 'none'; script-src 'unsafe-inline'; style-src "
	                  "'unsafe-inline'; connect-src 'self'; img-src data:; "
	                  "frame-ancestors 'none'");
	evhttp_send_reply(req, code, reason, body);
}

static void
reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(b, "%s\n", text);
	reply(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct sched_server *srv = arg;
	struct sched_http *h = srv->http;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *b;

	if (h->open) {
		if (!host_is_loopback(evhttp_find_header(in, "Host"))) {
			reply_text(req, 403, "Forbidden", "this port answers loopback names only");
			return;
		}
	} else if (!http_authorized(srv, evhttp_find_header(in, "Authorization"))) {
		struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
		evhttp_add_header(oh, "WWW-Authenticate", "Bearer realm=\"shoal\"");
		evhttp_add_header(oh, "WWW-Authenticate",
		                  "Basic realm=\"shoal\", charset=\"UTF-8\"");
		reply_text(req, 401, "Unauthorized",
		           "needs Authorization: Bearer <admin or read token>");
		return;
	}
	if (path == NULL || path[0] == '\0')
		path = "/";
	b = evbuffer_new();
	if (strcmp(path, "/metrics") == 0) {
		http_metrics(srv, b);
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	} else if (strcmp(path, "/api/state") == 0) {
		http_state(srv, b);
		reply(req, 200, "OK", "application/json", b);
	} else if (strcmp(path, "/api/events") == 0) {
		http_events(srv, uri ? evhttp_uri_get_query(uri) : NULL, b);
		reply(req, 200, "OK", "application/json", b);
	} else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
		evbuffer_add_reference(b, page_html, page_html_len, NULL, NULL);
		reply(req, 200, "OK", "text/html; charset=utf-8", b);
	} else {
		evbuffer_add_printf(b, "no such page: try /, /metrics or /api/state\n");
		reply(req, 404, "Not Found", "text/plain; charset=utf-8", b);
	}
	evbuffer_free(b);
}

int
http_start(struct sched_server *srv, const char *spec, struct shoal_err *err)
{
	struct sched_http *h;
	struct httpd_addr addr;
	bool made;

	if (strcmp(spec, "off") == 0)
		return 0;
	if (httpd_parse(spec, &addr, err) == -1)
		return -1;
	h = xcalloc(1, sizeof(*h));
	srv->http = h;
	h->open = addr.loopback;
	if (identity_read_token(srv->data_dir, srv->id.sign_pk, &h->read, &made, err) == -1)
		goto fail;
	if (made)
		shoal_log(LOG_NOTICE, "made a read-only token for the status page: %s/read.token",
		          srv->data_dir);
	h->http = httpd_new(srv->base, on_request, srv, err);
	if (h->http == NULL || httpd_bind(h->http, &addr, spec, &h->port, err) == -1)
		goto fail;
	shoal_log(LOG_INFO, "http: status page and /metrics on %s:%u%s", addr.host, h->port,
	          h->open ? "" : " (token required)");
	return 0;
fail:
	http_free(srv);
	return -1;
}

uint16_t
http_port(const struct sched_server *srv)
{
	return srv->http ? srv->http->port : 0;
}

void
http_free(struct sched_server *srv)
{
	struct sched_http *h = srv->http;

	if (h == NULL)
		return;
	if (h->http)
		evhttp_free(h->http);
	token_wipe(&h->read);
	free(h);
	srv->http = NULL;
}
