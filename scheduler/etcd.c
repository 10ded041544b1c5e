#include "etcd.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>

#include "err.h"
#include "util.h"

/* A unary reply above this is refused (a hostile endpoint must not exhaust memory); ranges
 * are read in pages (store_etcd) far below it. */
#define ETCD_MAX_REPLY (64u << 20)

enum req_kind {
	REQ_TXN,
	REQ_RANGE,
	REQ_LEASE,
	REQ_WATCH,
};

struct etcd {
	struct event_base *base; /* NULL: synchronous calls only */
	CURLM *multi;
	struct event *timer; /* curl's timeout, as a libevent timer */
	char **endpoints;    /* "http://H:P" */
	size_t nendpoints;
	size_t cur; /* the endpoint requests go to; moves on after a connection failure */
	char *cacert, *cert, *key;
	int64_t timeout_ms, connect_timeout_ms;
	struct etcd_req *reqs; /* in flight, for etcd_free */
	/* Requests started but not handed to curl yet: a request may be started from a watch's
	 * callback, inside curl's write callback, where curl refuses new handles; the kick
	 * event hands them over from the loop. */
	struct etcd_req *pending;
	struct event *kick;
};

struct etcd_req {
	struct etcd *e;
	struct etcd_req *prev, *next;
	struct etcd_req *pending_next; /* in e->pending while is_pending */
	int is_pending;
	enum req_kind kind;
	CURL *easy;
	struct curl_slist *hdr;
	const char *path;
	char *body;
	char *resp;
	size_t resp_len, resp_cap;
	size_t tries;              /* endpoints tried */
	int last_failed;           /* the last attempt was not an answer */
	char attempts[200];        /* what each failed attempt said, for the error */
	struct etcd_stream stream; /* REQ_WATCH */
	struct shoal_err werr;     /* REQ_WATCH: why the stream ended */
	int werr_set;
	int delivered; /* REQ_WATCH: a message reached the callback (no silent restart) */
	int in_cb;     /* a watch callback runs inside curl's write callback */
	int cancelled; /* etcd_cancel() during it: drop at completion */
	union {
		etcd_txn_cb txn;
		etcd_range_cb range;
		etcd_lease_cb lease;
		etcd_watch_cb watch;
	} cb;
	void *arg;
};

/* --- client ------------------------------------------------------------------------------ */

static int
parse_endpoints(struct etcd *e, const char *list, int tls, struct shoal_err *err)
{
	cleanup_free char *copy = xstrdup(list);
	char *save = NULL;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *scheme = tls ? "https" : "http";
		char host[256];
		uint16_t port;

		while (*tok == ' ')
			tok++;
		if (strncmp(tok, "etcd://", 7) == 0) {
			tok += 7;
		} else if (strncmp(tok, "http://", 7) == 0) {
			tok += 7;
			scheme = "http";
		} else if (strncmp(tok, "https://", 8) == 0) {
			tok += 8;
			scheme = "https";
		}
		if (util_parse_hostport(tok, host, sizeof(host), &port, err) == -1 || port == 0)
			return err_set(err, 0, "etcd: bad endpoint '%.100s' (want HOST:PORT)", tok);
		if (host[0] == '\0')
			snprintf(host, sizeof(host), "127.0.0.1");
		e->endpoints = xrealloc(e->endpoints, (e->nendpoints + 1) * sizeof(char *));
		e->endpoints[e->nendpoints++] = xasprintf("%s://%s:%u", scheme, host, port);
	}
	if (e->nendpoints == 0)
		return err_set(err, 0, "etcd: no endpoint in '%.100s'", list);
	return 0;
}

static void on_curl_timer(evutil_socket_t fd, short what, void *arg);
static void on_kick(evutil_socket_t fd, short what, void *arg);
static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
static int timer_cb(CURLM *multi, long timeout_ms, void *userp);

struct etcd *
etcd_new(struct event_base *base, const struct etcd_config *cfg, struct shoal_err *err)
{
	static int curl_ready;
	struct etcd *e = xcalloc(1, sizeof(*e));
	int tls = cfg->cacert || cfg->cert;

	if (!curl_ready) {
		/* Not thread-safe, like every global init: the scheduler has one thread. */
		curl_global_init(CURL_GLOBAL_DEFAULT);
		curl_ready = 1;
	}
	if (cfg->endpoints == NULL || parse_endpoints(e, cfg->endpoints, tls, err) == -1)
		goto fail;
	if ((cfg->cert == NULL) != (cfg->key == NULL)) {
		err_set(err, 0, "etcd: a client certificate needs its key and the other way round");
		goto fail;
	}
	e->cacert = cfg->cacert ? xstrdup(cfg->cacert) : NULL;
	e->cert = cfg->cert ? xstrdup(cfg->cert) : NULL;
	e->key = cfg->key ? xstrdup(cfg->key) : NULL;
	e->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
	e->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 1000;
	e->base = base;
	if (base) {
		e->multi = curl_multi_init();
		e->timer = evtimer_new(base, on_curl_timer, e);
		e->kick = event_new(base, -1, 0, on_kick, e);
		if (e->multi == NULL || e->timer == NULL || e->kick == NULL) {
			err_set(err, 0, "etcd: cannot create the curl multi handle");
			goto fail;
		}
		curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
		curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
		curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	}
	return e;
fail:
	etcd_free(e);
	return NULL;
}

const char *
etcd_endpoint(const struct etcd *e)
{
	return e->endpoints[e->cur];
}

static void
req_free(struct etcd_req *r)
{
	struct etcd *e = r->e;

	if (r->prev)
		r->prev->next = r->next;
	else if (e->reqs == r)
		e->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->is_pending) {
		struct etcd_req **pp = &e->pending;
		while (*pp != r)
			pp = &(*pp)->pending_next;
		*pp = r->pending_next;
	}
	if (r->easy) {
		if (e->multi)
			curl_multi_remove_handle(e->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->hdr);
	etcd_stream_clear(&r->stream);
	free(r->body);
	free(r->resp);
	free(r);
}

void
etcd_free(struct etcd *e)
{
	if (e == NULL)
		return;
	while (e->reqs)
		req_free(e->reqs);
	if (e->multi)
		curl_multi_cleanup(e->multi);
	if (e->timer)
		event_free(e->timer);
	if (e->kick)
		event_free(e->kick);
	for (size_t i = 0; i < e->nendpoints; i++)
		free(e->endpoints[i]);
	free(e->endpoints);
	free(e->cacert);
	free(e->cert);
	free(e->key);
	free(e);
}

/* --- transport ---------------------------------------------------------------------------- */

static int watch_obj(json_t *obj, void *arg);

static size_t
on_write(char *data, size_t size, size_t nmemb, void *userp)
{
	struct etcd_req *r = userp;
	size_t n = size * nmemb;

	if (r->kind == REQ_WATCH) {
		struct shoal_err err = {0};
		int rc;

		r->in_cb = 1;
		rc = etcd_stream_feed(&r->stream, data, n, watch_obj, r, &err);
		r->in_cb = 0;
		if (r->cancelled)
			return 0;
		if (rc == -1) {
			if (!r->werr_set) {
				r->werr = err;
				r->werr_set = 1;
			}
			return 0; /* curl ends the transfer: CURLE_WRITE_ERROR */
		}
		return n;
	}
	if (r->resp_len + n + 1 > ETCD_MAX_REPLY)
		return 0;
	if (r->resp_len + n + 1 > r->resp_cap) {
		r->resp_cap = (r->resp_len + n + 1) * 2;
		r->resp = xrealloc(r->resp, r->resp_cap);
	}
	memcpy(r->resp + r->resp_len, data, n);
	r->resp_len += n;
	r->resp[r->resp_len] = '\0';
	return n;
}

/* Point the request's handle at the current endpoint, fresh. */
static int
req_prepare(struct etcd_req *r, struct shoal_err *err)
{
	struct etcd *e = r->e;
	char url[512];

	if (r->easy == NULL && (r->easy = curl_easy_init()) == NULL)
		return err_set(err, 0, "etcd: cannot create a curl handle");
	if (r->hdr == NULL)
		r->hdr = curl_slist_append(NULL, "Content-Type: application/json");
	r->resp_len = 0;
	etcd_stream_clear(&r->stream);
	snprintf(url, sizeof(url), "%s%s", e->endpoints[e->cur], r->path);
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdr);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->connect_timeout_ms);
	/* A watch lives as long as it is wanted; every other request is bounded. */
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS,
	                 r->kind == REQ_WATCH ? 0L : (long)e->timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 2L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 2L);
	if (e->cacert)
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, e->cacert);
	if (e->cert) {
		curl_easy_setopt(r->easy, CURLOPT_SSLCERT, e->cert);
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY, e->key);
	}
	return 0;
}

/*
 * After an attempt: 1 when it should be tried on the next endpoint (the member is down,
 * unreachable, too slow, or says it cannot serve), 0 when the attempt is the answer.
 */
static int
attempt_failed(struct etcd_req *r, CURLcode code)
{
	struct etcd *e = r->e;
	long status = 0;
	size_t used = strlen(r->attempts);
	const char *why = NULL;
	char buf[64];

	r->last_failed = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (code == CURLE_WRITE_ERROR && r->kind == REQ_WATCH)
		return 0;
	if (code != CURLE_OK) {
		why = curl_easy_strerror(code);
	} else if (status == 503 || status == 504) {
		snprintf(buf, sizeof(buf), "http %ld", status);
		why = buf;
	}
	if (why == NULL)
		return 0;
	snprintf(r->attempts + used, sizeof(r->attempts) - used, "%s%s: %s", used ? "; " : "",
	         e->endpoints[e->cur] + (strncmp(e->endpoints[e->cur], "https", 5) == 0 ? 8 : 7),
	         why);
	r->tries++;
	r->last_failed = 1;
	/* The next request starts at the next member, this one too if any is left. */
	e->cur = (e->cur + 1) % e->nendpoints;
	return 1;
}

/* The reply of a finished unary request as a JSON object (new reference), or NULL with err. */
static json_t *
req_reply(struct etcd_req *r, CURLcode code, struct shoal_err *err)
{
	long status = 0;
	json_error_t je;
	json_t *body;

	/* Earlier attempts may have failed; only the last one's answer counts. */
	if (code != CURLE_OK || r->last_failed) {
		if (code == CURLE_WRITE_ERROR)
			err_set(err, 0, "etcd %s: reply above %u bytes", r->path, ETCD_MAX_REPLY);
		else
			err_set(err, 0, "etcd %s: no member answered (%s)", r->path, r->attempts);
		return NULL;
	}
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	body = json_loadb(r->resp ? r->resp : "", r->resp_len, 0, &je);
	if (etcd_parse_status(status, body, err) == -1) {
		json_decref(body);
		err_prefix(err, "%s", r->path);
		return NULL;
	}
	return body;
}

static struct etcd_req *
req_new(struct etcd *e, enum req_kind kind, const char *path, json_t *body, void *arg)
{
	struct etcd_req *r = xcalloc(1, sizeof(*r));

	r->e = e;
	r->kind = kind;
	r->path = path;
	r->body = json_dumps(body, JSON_COMPACT);
	SHOAL_ASSERT(r->body != NULL);
	json_decref(body);
	r->arg = arg;
	return r;
}

/* --- synchronous --------------------------------------------------------------------------- */

/* Run a unary request to its end on the calling thread; the reply object or NULL with err. */
static json_t *
sync_run(struct etcd *e, const char *path, json_t *body, struct shoal_err *err)
{
	struct etcd_req *r = req_new(e, REQ_TXN, path, body, NULL);
	CURLcode code;
	json_t *reply;

	for (;;) {
		if (req_prepare(r, err) == -1) {
			req_free(r);
			return NULL;
		}
		code = curl_easy_perform(r->easy);
		if (!attempt_failed(r, code) || r->tries >= e->nendpoints)
			break;
	}
	reply = req_reply(r, code, err);
	req_free(r);
	return reply;
}

/* Runs the range request REQ (taken) and parses its reply into out. */
static int
sync_range(struct etcd *e, json_t *req, struct etcd_range *out, struct shoal_err *err)
{
	json_t *reply = sync_run(e, "/v3/kv/range", req, err);
	int rc;

	memset(out, 0, sizeof(*out));
	if (reply == NULL)
		return -1;
	rc = etcd_parse_range(reply, out, err);
	json_decref(reply);
	return rc;
}

int
etcd_sync_range(struct etcd *e, const char *key, int prefix, int64_t revision, int64_t limit,
                struct etcd_range *out, struct shoal_err *err)
{
	return sync_range(e, etcd_json_range(key, prefix, revision, limit), out, err);
}

int
etcd_sync_range_end(struct etcd *e, const char *key, const char *range_end, int64_t revision,
                    int64_t limit, struct etcd_range *out, struct shoal_err *err)
{
	return sync_range(e, etcd_json_range_end(key, range_end, revision, limit), out, err);
}

int
etcd_sync_txn(struct etcd *e, const struct etcd_txn *t, struct etcd_txn_result *out,
              struct shoal_err *err)
{
	json_t *reply = sync_run(e, "/v3/kv/txn", etcd_json_txn(t), err);
	int rc;

	memset(out, 0, sizeof(*out));
	if (reply == NULL)
		return -1;
	rc = etcd_parse_txn(reply, out, err);
	json_decref(reply);
	return rc;
}

int
etcd_sync_put(struct etcd *e, const char *key, const char *value, size_t value_len, int64_t lease,
              struct shoal_err *err)
{
	struct etcd_op op = {.kind = ETCD_OP_PUT,
	                     .key = key,
	                     .value = value,
	                     .value_len = value_len,
	                     .lease = lease};
	struct etcd_txn t = {.success = &op, .nsuccess = 1};
	struct etcd_txn_result res;

	if (etcd_sync_txn(e, &t, &res, err) == -1)
		return -1;
	etcd_txn_result_clear(&res);
	return 0;
}

int
etcd_sync_delete(struct etcd *e, const char *key, int prefix, int64_t *deleted,
                 struct shoal_err *err)
{
	struct etcd_op op = {.kind = ETCD_OP_DELETE, .key = key, .prefix = prefix};
	struct etcd_txn t = {.success = &op, .nsuccess = 1};
	struct etcd_txn_result res;

	if (etcd_sync_txn(e, &t, &res, err) == -1)
		return -1;
	if (deleted)
		*deleted = res.n == 1 ? res.ops[0].deleted : 0;
	etcd_txn_result_clear(&res);
	return 0;
}

static int
sync_lease(struct etcd *e, const char *path, const char *field, int64_t v, int64_t *id,
           int64_t *ttl, struct shoal_err *err)
{
	json_t *body = json_object(), *reply;
	int rc;

	json_object_set_new(body, field, etcd_json_i64(v));
	reply = sync_run(e, path, body, err);
	if (reply == NULL)
		return -1;
	rc = etcd_parse_lease(reply, id, ttl, err);
	json_decref(reply);
	return rc;
}

int
etcd_sync_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, struct shoal_err *err)
{
	int64_t ttl;

	if (sync_lease(e, "/v3/lease/grant", "TTL", ttl_s, id, &ttl, err) == -1)
		return -1;
	if (*id == 0)
		return err_set(err, 0, "etcd: lease grant returned no lease");
	return 0;
}

int
etcd_sync_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, struct shoal_err *err)
{
	int64_t got;

	return sync_lease(e, "/v3/lease/keepalive", "ID", id, &got, ttl, err);
}

int
etcd_sync_lease_revoke(struct etcd *e, int64_t id, struct shoal_err *err)
{
	int64_t a, b;

	return sync_lease(e, "/v3/lease/revoke", "ID", id, &a, &b, err);
}

/* --- asynchronous: curl multi on libevent ---------------------------------------------------- */

struct sock_ctx {
	struct event *ev;
};

static void check_done(struct etcd *e);

static void
on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct etcd *e = arg;
	int running, flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(e->multi, fd, flags, &running);
	check_done(e);
}

static void
on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct etcd *e = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(e);
}

/* curl says which events a socket needs: one persistent libevent event per socket. */
static int
sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct etcd *e = userp;
	struct sock_ctx *c = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (c) {
			event_free(c->ev);
			free(c);
			curl_multi_assign(e->multi, s, NULL);
		}
		return 0;
	}
	kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
	       ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
	if (c == NULL) {
		c = xcalloc(1, sizeof(*c));
		curl_multi_assign(e->multi, s, c);
	} else {
		event_free(c->ev);
	}
	c->ev = event_new(e->base, s, kind, on_sock, e);
	event_add(c->ev, NULL);
	return 0;
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct etcd *e = userp;
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(e->timer);
	else
		evtimer_add(e->timer, &tv);
	return 0;
}

static int
req_start(struct etcd_req *r, struct shoal_err *err)
{
	if (req_prepare(r, err) == -1)
		return -1;
	if (curl_multi_add_handle(r->e->multi, r->easy) != CURLM_OK)
		return err_set(err, 0, "etcd: cannot start a request");
	return 0;
}

static int
watch_obj(json_t *obj, void *arg)
{
	struct etcd_req *r = arg;
	struct etcd_watch_msg m;

	if (r->cancelled)
		return -1;
	if (etcd_parse_watch(obj, &m, &r->werr) == -1) {
		r->werr_set = 1;
		return -1;
	}
	int canceled = m.canceled, compacted = m.compact_revision != 0;

	r->delivered = 1;
	r->cb.watch(&m, NULL, r->arg);
	etcd_watch_msg_clear(&m);
	if (!r->cancelled && canceled) {
		err_set(&r->werr, 0, "etcd: watch canceled by etcd%s",
		        compacted ? " (compacted)" : "");
		r->werr_set = 1;
		return -1;
	}
	return 0;
}

/* Call back with err alone and free the request. */
static void
req_fail(struct etcd_req *r, const struct shoal_err *err)
{
	switch (r->kind) {
	case REQ_TXN:
		r->cb.txn(NULL, err, r->arg);
		break;
	case REQ_RANGE:
		r->cb.range(NULL, err, r->arg);
		break;
	case REQ_LEASE:
		r->cb.lease(0, 0, err, r->arg);
		break;
	case REQ_WATCH:
		r->cb.watch(NULL, err, r->arg);
		break;
	}
	req_free(r);
}

/* A finished request: retry on the next member, or call back with its result and free it. */
static void
req_done(struct etcd_req *r, CURLcode code)
{
	struct etcd *e = r->e;
	struct shoal_err err = {0};
	json_t *reply;

	curl_multi_remove_handle(e->multi, r->easy);
	if (r->cancelled) {
		req_free(r);
		return;
	}
	if (attempt_failed(r, code) && r->tries < e->nendpoints && !r->werr_set &&
	    (r->kind != REQ_WATCH || !r->delivered)) {
		if (req_start(r, &err) == 0)
			return;
		req_fail(r, &err);
		return;
	}
	if (r->kind == REQ_WATCH) {
		if (r->werr_set)
			err = r->werr;
		else if (r->last_failed)
			err_set(&err, 0, "etcd watch: no member answered (%s)", r->attempts);
		else if (code != CURLE_OK)
			err_set(&err, 0, "etcd watch: %s", curl_easy_strerror(code));
		else
			err_set(&err, 0, "etcd watch: stream closed by %s", etcd_endpoint(e));
		r->cb.watch(NULL, &err, r->arg);
		req_free(r);
		return;
	}
	reply = req_reply(r, code, &err);
	switch (r->kind) {
	case REQ_TXN: {
		struct etcd_txn_result res;
		if (reply && etcd_parse_txn(reply, &res, &err) == 0) {
			r->cb.txn(&res, NULL, r->arg);
			etcd_txn_result_clear(&res);
		} else {
			r->cb.txn(NULL, &err, r->arg);
		}
		break;
	}
	case REQ_RANGE: {
		struct etcd_range res;
		if (reply && etcd_parse_range(reply, &res, &err) == 0) {
			r->cb.range(&res, NULL, r->arg);
			etcd_range_clear(&res);
		} else {
			r->cb.range(NULL, &err, r->arg);
		}
		break;
	}
	case REQ_LEASE: {
		int64_t id = 0, ttl = 0;
		if (reply && etcd_parse_lease(reply, &id, &ttl, &err) == 0)
			r->cb.lease(id, ttl, NULL, r->arg);
		else
			r->cb.lease(0, 0, &err, r->arg);
		break;
	}
	case REQ_WATCH:
		break;
	}
	json_decref(reply);
	req_free(r);
}

static void
check_done(struct etcd *e)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
		struct etcd_req *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r)
			req_done(r, msg->data.result);
	}
}

static struct etcd_req *
async_start(struct etcd *e, enum req_kind kind, const char *path, json_t *body, void *arg,
            struct shoal_err *err)
{
	struct etcd_req *r;

	if (e->multi == NULL) {
		json_decref(body);
		err_set(err, 0, "etcd: client has no event loop");
		return NULL;
	}
	r = req_new(e, kind, path, body, arg);
	r->next = e->reqs;
	if (e->reqs)
		e->reqs->prev = r;
	e->reqs = r;
	return r;
}

static void req_fail(struct etcd_req *r, const struct shoal_err *err);

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct etcd *e = arg;

	(void)fd;
	(void)what;
	while (e->pending) {
		struct etcd_req *r = e->pending;

		e->pending = r->pending_next;
		r->is_pending = 0;
		if (curl_multi_add_handle(e->multi, r->easy) != CURLM_OK) {
			struct shoal_err err;
			err_set(&err, 0, "etcd %s: cannot start the request", r->path);
			req_fail(r, &err);
		}
	}
}

static struct etcd_req *
async_go(struct etcd_req *r, struct shoal_err *err)
{
	struct etcd_req **pp = &r->e->pending;

	if (req_prepare(r, err) == -1) {
		req_free(r);
		return NULL;
	}
	while (*pp)
		pp = &(*pp)->pending_next;
	*pp = r;
	r->is_pending = 1;
	event_active(r->e->kick, 0, 0);
	return r;
}

struct etcd_req *
etcd_txn(struct etcd *e, const struct etcd_txn *t, etcd_txn_cb cb, void *arg, struct shoal_err *err)
{
	struct etcd_req *r = async_start(e, REQ_TXN, "/v3/kv/txn", etcd_json_txn(t), arg, err);

	if (r == NULL)
		return NULL;
	r->cb.txn = cb;
	return async_go(r, err);
}

struct etcd_req *
etcd_range(struct etcd *e, const char *key, int prefix, int64_t revision, int64_t limit,
           etcd_range_cb cb, void *arg, struct shoal_err *err)
{
	struct etcd_req *r = async_start(e, REQ_RANGE, "/v3/kv/range",
	                                 etcd_json_range(key, prefix, revision, limit), arg, err);

	if (r == NULL)
		return NULL;
	r->cb.range = cb;
	return async_go(r, err);
}

static struct etcd_req *
async_lease(struct etcd *e, const char *path, const char *field, int64_t v, etcd_lease_cb cb,
            void *arg, struct shoal_err *err)
{
	json_t *body = json_object();
	struct etcd_req *r;

	json_object_set_new(body, field, etcd_json_i64(v));
	if ((r = async_start(e, REQ_LEASE, path, body, arg, err)) == NULL)
		return NULL;
	r->cb.lease = cb;
	return async_go(r, err);
}

struct etcd_req *
etcd_lease_grant(struct etcd *e, int64_t ttl_s, etcd_lease_cb cb, void *arg, struct shoal_err *err)
{
	return async_lease(e, "/v3/lease/grant", "TTL", ttl_s, cb, arg, err);
}

struct etcd_req *
etcd_lease_keepalive(struct etcd *e, int64_t id, etcd_lease_cb cb, void *arg, struct shoal_err *err)
{
	return async_lease(e, "/v3/lease/keepalive", "ID", id, cb, arg, err);
}

struct etcd_req *
etcd_lease_revoke(struct etcd *e, int64_t id, etcd_lease_cb cb, void *arg, struct shoal_err *err)
{
	return async_lease(e, "/v3/lease/revoke", "ID", id, cb, arg, err);
}

struct etcd_req *
etcd_watch(struct etcd *e, const char *key, int prefix, int64_t start_revision, etcd_watch_cb cb,
           void *arg, struct shoal_err *err)
{
	struct etcd_req *r = async_start(e, REQ_WATCH, "/v3/watch",
	                                 etcd_json_watch(key, prefix, start_revision), arg, err);

	if (r == NULL)
		return NULL;
	r->cb.watch = cb;
	r->stream.max = ETCD_MAX_WATCH_MSG;
	return async_go(r, err);
}

void
etcd_cancel(struct etcd_req *r)
{
	if (r == NULL)
		return;
	/* Inside curl's write callback the handle must not be removed: mark it, and the
	 * transfer ends (the write callback returns 0) and is freed at completion. */
	if (r->in_cb) {
		r->cancelled = 1;
		return;
	}
	req_free(r);
}
