#include "evstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "err.h"
#include "events.h"
#include "log.h"
#include "rpc.h"
#include "server-t.h"
#include "shoal.pb-c.h"
#include "util.h"

/* Events per EventBatch of history: well under the frame limit (an event is < 700 bytes). */
#define EVSTREAM_BATCH 256

struct evstream_client {
	struct sched_server *srv;
	struct sched_conn *cli; /* borrowed; the stream goes with it */
	uint64_t id;            /* the request's id */
	struct events_filter filter;
	char **values; /* the filter's strings (owned) */
	size_t nvalues;
	struct events_sub *sub;
	struct evstream_client *next;
};

static void
to_wire(const struct events_entry *e, Shoal__Event *w)
{
	shoal__event__init(w);
	w->seq = e->seq;
	w->time_ms = e->time_ms;
	w->type = (char *)events_type_name(e->type);
	w->action = (char *)e->action;
	w->service = (char *)e->service;
	w->node = (char *)e->node;
	w->task_id = (char *)e->task_id;
	w->task = (char *)e->task;
	w->slot = e->slot;
	w->version = e->version;
	w->message = (char *)e->message;
}

static void
send_batch(struct evstream_client *c, Shoal__Event **v, size_t n, bool eof)
{
	Shoal__Envelope env = SHOAL__ENVELOPE__INIT;
	Shoal__EventBatch b = SHOAL__EVENT_BATCH__INIT;
	struct shoal_err err;

	b.events = v;
	b.n_events = n;
	b.eof = eof;
	b.first_seq = events_first_seq(&c->srv->events);
	env.id = c->id;
	env.body_case = SHOAL__ENVELOPE__BODY_EVENT_BATCH;
	env.event_batch = &b;
	/* A client that stopped reading is dropped by rpc (its closed callback ends this). */
	if (rpc_send(c->cli->rpc, &env, &err) == -1)
		shoal_log(LOG_DEBUG, "events: %s: %s", rpc_conn_peer(c->cli->rpc), err.msg);
}

static void
on_event(const struct events_entry *e, void *arg)
{
	struct evstream_client *c = arg;
	Shoal__Event w, *v = &w;

	if (c->filter.until_ms && e->time_ms > c->filter.until_ms)
		return;
	if (!events_filter_match(&c->filter, e))
		return;
	to_wire(e, &w);
	send_batch(c, &v, 1, false);
}

static void
client_free(struct evstream_client *c)
{
	if (c->sub)
		events_unsubscribe(&c->srv->events, c->sub);
	for (size_t i = 0; i < c->nvalues; i++)
		free(c->values[i]);
	free(c->values);
	free(c);
}

void
evstream_start(struct sched_conn *cli, const Shoal__Envelope *env)
{
	struct sched_server *srv = cli->srv;
	const Shoal__EventsRequest *req = env->events;
	struct evstream_client *c = xcalloc(1, sizeof(*c));
	Shoal__Event *wire = xcalloc(EVSTREAM_BATCH, sizeof(*wire));
	Shoal__Event **ptrs = xcalloc(EVSTREAM_BATCH, sizeof(*ptrs));
	struct shoal_err err;
	size_t n = 0;
	bool follow;

	c->srv = srv;
	c->cli = cli;
	c->id = env->id;
	c->values = xcalloc(req->n_filters + 1, sizeof(*c->values));
	for (size_t i = 0; i < req->n_filters; i++) {
		c->values[c->nvalues] = xstrdup(req->filters[i]);
		if (events_filter_add(&c->filter, c->values[c->nvalues++], &err) == -1) {
			reply_error(cli, env->id, EINVAL, "%s", err.msg);
			goto out;
		}
	}
	c->filter.since_ms = req->since_ms;
	c->filter.until_ms = req->until_ms;
	/* Follow only into a future that the bound leaves open. */
	follow = req->follow && (req->until_ms == 0 || req->until_ms > util_wall_ms());
	for (const struct events_entry *e = events_next(&srv->events, req->since_seq); e;
	     e = events_next(&srv->events, e->seq)) {
		if (!events_filter_match(&c->filter, e))
			continue;
		to_wire(e, &wire[n]);
		ptrs[n] = &wire[n];
		if (++n == EVSTREAM_BATCH) {
			send_batch(c, ptrs, n, false);
			n = 0;
		}
	}
	/* An empty first batch still tells a follower that it is streaming (and from where). */
	send_batch(c, ptrs, n, !follow);
	if (!follow)
		goto out;
	/* What happens from now on is after any since, whatever the client's clock says. */
	c->filter.since_ms = 0;
	c->sub = events_subscribe(&srv->events, on_event, c);
	c->next = srv->evstreams;
	srv->evstreams = c;
	c = NULL;
out:
	if (c)
		client_free(c);
	free(ptrs);
	free(wire);
}

void
evstream_conn_closed(struct sched_server *srv, struct sched_conn *sc)
{
	for (struct evstream_client **p = &srv->evstreams; *p;) {
		struct evstream_client *c = *p;
		if (c->cli == sc) {
			*p = c->next;
			client_free(c);
		} else {
			p = &c->next;
		}
	}
}

void
evstream_free(struct sched_server *srv)
{
	while (srv->evstreams) {
		struct evstream_client *c = srv->evstreams;
		srv->evstreams = c->next;
		client_free(c);
	}
}
