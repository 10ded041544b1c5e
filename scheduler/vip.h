#ifndef SHOAL_SCHEDULER_VIP_H
#define SHOAL_SCHEDULER_VIP_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/*
 * Services' virtual IPs: a cluster-internal address per service without a published port,
 * which every node's proxy serves on the service's target ports and every node's DNS names
 * (Swarm's VIP). Derived, not stored: a hash of the name picks the address in VIP_NET/VIP_PREFIX,
 * and services are taken oldest first (then by name), a clash moving the younger one to the
 * next free address. So a service keeps its address across scheduler restarts and while others
 * come and go; only a service that clashed may move when the older one it clashed with goes.
 */

#define VIP_NET    ADDR_VIP_NET /* 10.96.0.0 */
#define VIP_PREFIX ADDR_VIP_PREFIX

struct vip_input {
	const char *name;
	int64_t created_ms;
};

/* Addresses (host byte order) for the n services in in, into out[i] for in[i]. Pure. */
void vip_assign(const struct vip_input *in, size_t n, uint32_t *out);

#endif
