#ifndef SHOAL_AGENT_VIPPROXY_H
#define SHOAL_AGENT_VIPPROXY_H

#include <stddef.h>

struct proxy_service_spec;
struct proxy_backend_spec;
typedef struct Shoal__Endpoints Shoal__Endpoints;

/*
 * The proxy listeners of services' virtual IPs (scheduler/vip.h): for each service with a VIP,
 * one listener per target port on VIP:port, balancing over its healthy tasks on that port.
 * The node routes the whole VIP range to itself (agent/netnode.c), so any VIP can be bound,
 * and a container reaches it through its gateway. Same proxy, same rotation and benching as a
 * published port.
 */
struct vipproxy_specs {
	struct proxy_backend_spec **bes; /* per appended service */
	size_t n;
};

/* Append the VIP listeners of ep to *svcs (n entries, reallocated); borrowed strings point into
 * ep. Free with vipproxy_specs_free after proxy_set_services. Backends the proxy must refuse
 * are skipped (refuse returns why, or NULL). */
void vipproxy_append(struct vipproxy_specs *vs, const Shoal__Endpoints *ep,
                     struct proxy_service_spec **svcs, size_t *n,
                     const char *(*refuse)(const char *ip));
void vipproxy_specs_free(struct vipproxy_specs *vs);

#endif
