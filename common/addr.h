#ifndef SHOAL_COMMON_ADDR_H
#define SHOAL_COMMON_ADDR_H

#include <stdbool.h>
#include <stdint.h>

/*
 * IPv4 address checks shared by the scheduler (which addresses an agent may report for its
 * tasks) and the agent (which backends its proxy may dial). A backend address comes from a
 * peer holding the worker token: it must never make a proxy dial the host it runs on
 * (loopback, 0.0.0.0), the link (link-local, e.g. a cloud metadata service), or a group
 * (multicast, broadcast, the reserved 240/4).
 */

/* Parse a dotted-quad IPv4 literal into host byte order. false if s is not one. */
bool addr_parse4(const char *s, uint32_t *out);

/*
 * Why a is never a usable backend ("loopback", "link-local", "multicast", "unspecified",
 * "broadcast", "reserved"), or NULL when it may be one.
 */
const char *addr_backend_refusal(uint32_t a);

/* The same for text: "not an IPv4 address" when s does not parse. NULL when usable. */
const char *addr_backend_refusal_text(const char *s);

/* Services' virtual IPs (scheduler/vip.h) come from 10.96.0.0/12, which every node routes to
 * itself (agent/netnode.c) so that its proxy can listen on any of them. */
#define ADDR_VIP_NET    0x0a600000u
#define ADDR_VIP_PREFIX 12

#endif
