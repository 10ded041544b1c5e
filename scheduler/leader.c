#include "leader.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "err.h"
#include "etcd.h"
#include "log.h"
#include "util.h"

struct leader {
	struct etcd *e;          /* borrowed */
	struct event_base *base; /* borrowed */
	const struct leader_ops *ops;
	void *arg;
	char *key;   /* PREFIX "leader" */
	char *value; /* {"id","address"} of this contender */
	int64_t ttl_ms;
	int64_t lease;      /* 0: none granted (or known to be gone) */
	int64_t renewed_ms; /* monotonic send time of the last grant/keepalive etcd confirmed */
	int leading;
	int64_t fence;          /* the leader key's create revision while leading */
	int64_t deadline_ms;    /* leading: step down at this monotonic time */
	int64_t watch_rev;      /* the next revision the watch starts from (0: not known yet) */
	char *seen;             /* the leader key's value last seen, NULL when absent/unknown */
	struct event *tick;     /* every TTL/3: keepalive, retry the campaign and the watch */
	struct event *stepdown; /* at deadline_ms */
	struct etcd_req *grant_req, *ka_req, *campaign_req, *watch_req;
	int64_t ka_sent_ms, campaign_sent_ms;
};

static void campaign(struct leader *l);

char *
leader_value_encode(const char *id, const char *address)
{
	json_t *o = json_pack("{s:s, s:s}", "id", id, "address", address ? address : "");
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	json_decref(o);
	SHOAL_ASSERT(s != NULL);
	return s;
}

int
leader_value_parse(const char *value, char *id, size_t idlen, char *address, size_t addrlen)
{
	json_t *o = json_loads(value, 0, NULL);
	const json_t *i = json_object_get(o, "id"), *a = json_object_get(o, "address");
	int rc = -1;

	id[0] = address[0] = '\0';
	if (json_is_string(i) && (a == NULL || json_is_string(a))) {
		snprintf(id, idlen, "%s", json_string_value(i));
		snprintf(address, addrlen, "%s", a ? json_string_value(a) : "");
		rc = 0;
	}
	json_decref(o);
	return rc;
}

void
leader_fence_cmp(struct etcd_cmp *cmp, const char *key, int64_t fence, const char *value)
{
	memset(cmp, 0, 2 * sizeof(*cmp));
	cmp[0].key = key;
	cmp[0].target = ETCD_CMP_CREATE;
	cmp[0].result = ETCD_EQUAL;
	cmp[0].revision = fence;
	cmp[1].key = key;
	cmp[1].target = ETCD_CMP_VALUE;
	cmp[1].result = ETCD_EQUAL;
	cmp[1].value = value;
	cmp[1].value_len = strlen(value);
}

/* Margin below the TTL for a leader's own deadline: the lease's clock in etcd started when
 * etcd received the keepalive, after we sent it, but clocks may run at slightly other rates. */
static int64_t
margin_ms(const struct leader *l)
{
	return l->ttl_ms / 10 < 500 ? l->ttl_ms / 10 : 500;
}

static void
tell_leader(struct leader *l, const char *value)
{
	char id[128], addr[256];

	if ((value == NULL && l->seen == NULL) || (value && l->seen && strcmp(value, l->seen) == 0))
		return;
	free(l->seen);
	l->seen = value ? xstrdup(value) : NULL;
	if (value == NULL || leader_value_parse(value, id, sizeof(id), addr, sizeof(addr)) == -1)
		id[0] = addr[0] = '\0';
	if (l->ops->leader_is)
		l->ops->leader_is(id, addr, l->arg);
}

static void
step_down(struct leader *l, const char *why)
{
	if (!l->leading)
		return;
	l->leading = 0;
	l->fence = 0;
	evtimer_del(l->stepdown);
	shoal_log(LOG_WARNING, "leader: stepped down: %s", why);
	if (l->ops->deposed)
		l->ops->deposed(why, l->arg);
}

static void
arm_deadline(struct leader *l)
{
	int64_t left = l->deadline_ms - util_now_ms();
	struct timeval tv;

	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	evtimer_add(l->stepdown, &tv);
}

static void
on_stepdown(evutil_socket_t fd, short what, void *arg)
{
	struct leader *l = arg;

	(void)fd;
	(void)what;
	if (l->leading && util_now_ms() >= l->deadline_ms) {
		/* The lease may have expired in etcd and a successor may act: stop now, and
		 * campaign again with a new lease (the old key goes with the old lease). */
		l->lease = 0;
		step_down(l, "lease not renewed within its TTL");
	} else if (l->leading) {
		arm_deadline(l);
	}
}

static void
on_grant(int64_t id, int64_t ttl, const struct shoal_err *err, void *arg)
{
	struct leader *l = arg;

	l->grant_req = NULL;
	if (err) {
		shoal_log(LOG_WARNING, "leader: lease grant: %s", err->msg);
		return;
	}
	(void)ttl;
	l->lease = id;
	l->renewed_ms = l->ka_sent_ms;
	campaign(l);
}

static void
on_keepalive(int64_t id, int64_t ttl, const struct shoal_err *err, void *arg)
{
	struct leader *l = arg;

	(void)id;
	l->ka_req = NULL;
	if (err) {
		shoal_log(LOG_WARNING, "leader: lease keepalive: %s", err->msg);
		return;
	}
	if (ttl <= 0) {
		l->lease = 0;
		step_down(l, "lease expired");
		return;
	}
	/* A synchronous renewal (leader_renew_sync) may have confirmed a later send. */
	if (l->ka_sent_ms < l->renewed_ms)
		return;
	l->renewed_ms = l->ka_sent_ms;
	if (l->leading) {
		l->deadline_ms = l->renewed_ms + ttl * 1000 - margin_ms(l);
		arm_deadline(l);
	}
}

static void
on_watch(const struct etcd_watch_msg *m, const struct shoal_err *err, void *arg)
{
	struct leader *l = arg;
	int run = 0;

	if (err) {
		l->watch_req = NULL;
		shoal_log(LOG_INFO, "leader: watch ended: %s", err->msg);
		/* Its start revision is gone: from now on (a follower's next campaign tells
		 * it the current revision anyway). */
		if (strstr(err->msg, "compacted"))
			l->watch_rev = 0;
		return;
	}
	for (size_t i = 0; i < m->n; i++) {
		const struct etcd_event *ev = &m->events[i];

		if (strcmp(ev->kv.key, l->key) != 0)
			continue;
		if (ev->kv.mod_revision >= l->watch_rev)
			l->watch_rev = ev->kv.mod_revision + 1;
		if (ev->type == ETCD_EVENT_DELETE) {
			step_down(l, "leader key deleted");
			tell_leader(l, NULL);
			run = 1;
		} else {
			if (l->leading && ev->kv.create_revision != l->fence)
				step_down(l, "leader key replaced");
			tell_leader(l, ev->kv.value);
		}
	}
	if (run)
		campaign(l);
}

static void
start_watch(struct leader *l)
{
	struct shoal_err err;

	/* A follower waits for its campaign's revision; a leader whose watch start was
	 * compacted away watches from now. */
	if (l->watch_req || (l->watch_rev == 0 && !l->leading))
		return;
	l->watch_req = etcd_watch(l->e, l->key, 0, l->watch_rev, on_watch, l, &err);
	if (l->watch_req == NULL)
		shoal_log(LOG_WARNING, "leader: watch: %s", err.msg);
}

static void
on_campaign(const struct etcd_txn_result *r, const struct shoal_err *err, void *arg)
{
	struct leader *l = arg;
	const struct etcd_kv *kv = NULL;

	l->campaign_req = NULL;
	if (err) {
		shoal_log(LOG_WARNING, "leader: campaign: %s", err->msg);
		return;
	}
	if (l->watch_rev <= r->revision)
		l->watch_rev = r->revision + 1;
	if (!r->succeeded && r->n == 1 && r->ops[0].kind == ETCD_OP_RANGE && r->ops[0].range.n == 1)
		kv = &r->ops[0].range.kvs[0];
	if (r->succeeded || (kv && l->lease && kv->lease == l->lease)) {
		/* Won, or won by an earlier attempt whose reply was lost (same lease). */
		if (!l->leading && l->lease) {
			l->leading = 1;
			l->fence = r->succeeded ? r->revision : kv->create_revision;
			l->deadline_ms = l->renewed_ms + l->ttl_ms - margin_ms(l);
			arm_deadline(l);
			shoal_log(LOG_NOTICE, "leader: elected fence=%lld", (long long)l->fence);
			tell_leader(l, l->value);
			if (l->ops->elected)
				l->ops->elected(l->fence, l->arg);
		}
	} else if (kv) {
		tell_leader(l, kv->value);
	} else {
		tell_leader(l, NULL);
	}
	start_watch(l);
}

static void
campaign(struct leader *l)
{
	struct etcd_cmp cmp = {.key = l->key, .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL};
	struct etcd_op put = {.kind = ETCD_OP_PUT,
	                      .key = l->key,
	                      .value = l->value,
	                      .value_len = strlen(l->value),
	                      .lease = l->lease};
	struct etcd_op get = {.kind = ETCD_OP_RANGE, .key = l->key};
	struct etcd_txn t = {
	    .cmp = &cmp, .ncmp = 1, .success = &put, .nsuccess = 1, .failure = &get, .nfailure = 1};
	struct shoal_err err;

	if (l->leading || l->lease == 0 || l->campaign_req)
		return;
	l->campaign_sent_ms = util_now_ms();
	l->campaign_req = etcd_txn(l->e, &t, on_campaign, l, &err);
	if (l->campaign_req == NULL)
		shoal_log(LOG_WARNING, "leader: campaign: %s", err.msg);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct leader *l = arg;
	struct shoal_err err;

	(void)fd;
	(void)what;
	if (l->leading && util_now_ms() >= l->deadline_ms)
		on_stepdown(-1, 0, l);
	if (l->lease == 0) {
		if (l->grant_req == NULL) {
			l->ka_sent_ms = util_now_ms();
			l->grant_req = etcd_lease_grant(l->e, l->ttl_ms / 1000, on_grant, l, &err);
			if (l->grant_req == NULL)
				shoal_log(LOG_WARNING, "leader: lease grant: %s", err.msg);
		}
		return;
	}
	if (l->ka_req == NULL) {
		l->ka_sent_ms = util_now_ms();
		l->ka_req = etcd_lease_keepalive(l->e, l->lease, on_keepalive, l, &err);
		if (l->ka_req == NULL)
			shoal_log(LOG_WARNING, "leader: lease keepalive: %s", err.msg);
	}
	campaign(l);
	start_watch(l);
}

int
leader_renew_sync(struct leader *l)
{
	struct shoal_err err;
	int64_t sent = util_now_ms(), ttl;

	if (!l->leading || l->lease == 0 || sent - l->renewed_ms < l->ttl_ms / 3)
		return 0;
	if (etcd_sync_lease_keepalive(l->e, l->lease, &ttl, &err) == -1) {
		shoal_log(LOG_WARNING, "leader: lease keepalive: %s", err.msg);
		return -1;
	}
	/* Gone: the loop's next keepalive or the fence of the next write finds out. */
	if (ttl <= 0)
		return -1;
	l->renewed_ms = sent;
	l->deadline_ms = sent + ttl * 1000 - margin_ms(l);
	arm_deadline(l);
	return 0;
}

struct leader *
leader_new(struct etcd *e, struct event_base *base, const struct leader_config *cfg,
           const struct leader_ops *ops, void *arg, struct shoal_err *err)
{
	struct leader *l;
	int64_t ttl = cfg->ttl_s > 0 ? cfg->ttl_s : 5;

	if (cfg->id == NULL || cfg->id[0] == '\0') {
		err_set(err, 0, "leader: no scheduler id");
		return NULL;
	}
	l = xcalloc(1, sizeof(*l));
	l->e = e;
	l->base = base;
	l->ops = ops;
	l->arg = arg;
	l->key = xasprintf("%sleader", cfg->prefix ? cfg->prefix : "/shoal/");
	l->value = leader_value_encode(cfg->id, cfg->address);
	l->ttl_ms = ttl * 1000;
	l->tick = event_new(base, -1, EV_PERSIST, on_tick, l);
	l->stepdown = evtimer_new(base, on_stepdown, l);
	return l;
}

void
leader_start(struct leader *l)
{
	struct timeval tv = {.tv_sec = l->ttl_ms / 3000, .tv_usec = (l->ttl_ms / 3 % 1000) * 1000};

	evtimer_add(l->tick, &tv);
	on_tick(-1, 0, l);
}

void
leader_resign(struct leader *l)
{
	struct shoal_err err;

	step_down(l, "resigned");
	if (l->lease && etcd_sync_lease_revoke(l->e, l->lease, &err) == -1)
		shoal_log(LOG_WARNING, "leader: revoke lease: %s", err.msg);
	l->lease = 0;
}

void
leader_free(struct leader *l)
{
	if (l == NULL)
		return;
	etcd_cancel(l->grant_req);
	etcd_cancel(l->ka_req);
	etcd_cancel(l->campaign_req);
	etcd_cancel(l->watch_req);
	event_free(l->tick);
	event_free(l->stepdown);
	free(l->key);
	free(l->value);
	free(l->seen);
	free(l);
}

int
leader_is_leader(const struct leader *l)
{
	return l->leading && util_now_ms() < l->deadline_ms;
}

int64_t
leader_fence(const struct leader *l)
{
	return leader_is_leader(l) ? l->fence : 0;
}

const char *
leader_key(const struct leader *l)
{
	return l->key;
}

const char *
leader_value(const struct leader *l)
{
	return l->value;
}

struct etcd_req *
leader_fenced_txn(struct leader *l, const struct etcd_txn *t,
                  void (*cb)(const struct etcd_txn_result *r, const struct shoal_err *err,
                             void *arg),
                  void *arg, struct shoal_err *err)
{
	struct etcd_cmp *cmp;
	struct etcd_txn ft = *t;
	struct etcd_req *r;

	if (!leader_is_leader(l)) {
		err_set(err, 0, "leader: not the leader");
		return NULL;
	}
	cmp = xcalloc(t->ncmp + 2, sizeof(*cmp));
	leader_fence_cmp(cmp, l->key, l->fence, l->value);
	if (t->ncmp)
		memcpy(cmp + 2, t->cmp, t->ncmp * sizeof(*cmp));
	ft.cmp = cmp;
	ft.ncmp = t->ncmp + 2;
	r = etcd_txn(l->e, &ft, cb, arg, err);
	free(cmp);
	return r;
}
