#ifndef SHOAL_AGENT_METRICS_H
#define SHOAL_AGENT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct agent_server;
struct evbuffer;
struct shoal_err;

/*
 * The agent's /metrics (--http, default 127.0.0.1:7181): Prometheus text 0.0.4 served by
 * evhttp on the agent's loop, GET and HEAD only, no token (like a node exporter: counts, no
 * secrets, no names beyond services and task ids). Container starts and their latency, health
 * check results, the tasks by state, and the proxy's counters per service and per backend,
 * read with proxy_stats() as the heartbeat reads them.
 *
 * The counters are kept here, per process, because the modules that count (tasks.c, health.c)
 * run on the loop but do not see the server struct; the loop is one thread.
 */

/* A container start finished (ok: it runs), seconds after its start was queued. */
void metrics_container_started(bool ok, double seconds);
/* One health check result; kind is the manifest's enum manifest_health_kind. */
void metrics_health_result(int kind, bool ok);

/* Listen on spec ("ADDR:PORT", or "off"). -1 with err when it cannot. */
int metrics_start(struct agent_server *a, const char *spec, struct shoal_err *err);
void metrics_free(struct agent_server *a);
/* The port it listens on (what port 0 became), 0 when off. */
uint16_t metrics_port(const struct agent_server *a);

/* Write the agent's metrics (exposed for tests). */
void metrics_write(struct agent_server *a, struct evbuffer *out);

#endif
