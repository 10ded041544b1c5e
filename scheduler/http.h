#ifndef SHOAL_SCHEDULER_HTTP_H
#define SHOAL_SCHEDULER_HTTP_H

#include <stdbool.h>
#include <stdint.h>

struct sched_server;
struct shoal_err;
struct evbuffer;

/*
 * The scheduler's HTTP port (--http, default 127.0.0.1:7180), served by libevent's evhttp on
 * the scheduler's loop, read-only, GET and HEAD only:
 *   /            the status page (scheduler/page.c): one self-contained HTML document
 *   /api/state   nodes, services, tasks, rollouts and proxy traffic as JSON (the page polls it)
 *   /api/events  the event stream after ?since=SEQ as JSON, when the scheduler keeps one
 *   /metrics     Prometheus text exposition 0.0.4
 * Bound to loopback it asks for no token (but only answers a Host naming loopback, so a web
 * page cannot reach it through DNS rebinding); bound to any other address every request
 * needs the admin or the read token, as "Authorization: Bearer TOKEN" (or Basic with the
 * token as password, which a browser prompts for). Anything else is a 401.
 */

/* Listen on spec ("ADDR:PORT"; "off" serves nothing). -1 with err if it cannot. */
int http_start(struct sched_server *srv, const char *spec, struct shoal_err *err);
void http_free(struct sched_server *srv);
/* The port it listens on (what port 0 became), 0 when off. */
uint16_t http_port(const struct sched_server *srv);

/* Write the scheduler's metrics (exposed for tests). */
void http_metrics(struct sched_server *srv, struct evbuffer *out);
/* Write /api/state's JSON (exposed for tests). */
void http_state(struct sched_server *srv, struct evbuffer *out);
/*
 * Write /api/events' JSON for a query "since=SEQ": {"events":[...], "next":SEQ, "last":SEQ,
 * "missed":BOOL}, at most 500 entries after SEQ in order; the page asks again with next.
 * missed says that the ring moved past SEQ (entries were lost to this reader).
 */
void http_events(struct sched_server *srv, const char *query, struct evbuffer *out);

/*
 * Is the Authorization header value good for the admin or read token of srv? Accepts
 * "Bearer TOKEN" and "Basic base64(ANY:TOKEN)". Never logs the value.
 */
bool http_authorized(const struct sched_server *srv, const char *authorization);

#endif
