#ifndef SHOAL_AGENT_INGRESS_HOST_H
#define SHOAL_AGENT_INGRESS_HOST_H

#include <stdbool.h>

#include "proxy.h"
#include "vipproxy.h"

/* `shoal-agent ingress`: the node's proxy in a process of its own (agent/ingress.h says why
 * and how the agent talks to it). */
struct ingress_host_options {
	const char *data_dir;
	struct proxy_options po; /* main_base and on_failure are set by the host */
	int sync_fd;             /* closed once listening; an error is written to it first */
	bool take_over;          /* take the listeners of the ingress running now (upgrade) */
};

/* Serve until SIGTERM/SIGINT, or until retired by a successor: 0, or 1 on a start failure. */
int ingress_host_run(const struct ingress_host_options *o);

/* The proxy's services for an Endpoints table on the node's address (the backends the proxy
 * must never dial left out, with one log line per table). Frees with ingress_specs_free. */
struct ingress_specs {
	struct proxy_service_spec *svcs; /* total: the published services, then VIP listeners */
	struct proxy_backend_spec **bes; /* n: those of the published services */
	size_t n, total;
	struct vipproxy_specs vip; /* the backends of the VIP listeners (agent/vipproxy.h) */
};
typedef struct Shoal__Endpoints Shoal__Endpoints;
void ingress_specs_build(const Shoal__Endpoints *ep, const char *address,
                         struct ingress_specs *out);
void ingress_specs_free(struct ingress_specs *s);

/* The next retry delay of a port that cannot listen: 500 ms doubling to 5 s. */
int64_t ingress_bind_backoff_ms(int attempts);

#endif
