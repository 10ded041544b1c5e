#ifndef SHOAL_RUNTIME_NETLINK_H
#define SHOAL_RUNTIME_NETLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/types.h>

struct shoal_err;

/*
 * In-process rtnetlink: links (veth, bridge), IPv4 addresses and routes, in the network
 * namespace the socket was opened in. One `ip` process costs ~10 ms (measured); a netlink
 * request costs microseconds. Written on the raw socket API rather than libmnl because the
 * shim links statically and Debian ships no libmnl.a.
 *
 * Every request waits for the kernel's acknowledgement, so a returned 0 means done. Errors
 * carry the kernel's errno in err->code (EEXIST, ENODEV, ESRCH... callers test it).
 */
struct netlink {
	int fd;
	uint32_t seq;
};

int netlink_open(struct netlink *nl, struct shoal_err *err);
void netlink_close(struct netlink *nl);

/* What RTM_GETLINK tells about one interface. */
struct netlink_link {
	int index;
	unsigned flags; /* IFF_* */
	int master;     /* ifindex of the bridge it is enslaved to, 0 if none */
	char name[IFNAMSIZ];
	char kind[16];        /* "veth", "bridge", "" when the kernel gives none */
	char alias[64];       /* IFLA_IFALIAS: how Shoal marks the links it made */
	unsigned char mac[6]; /* IFLA_ADDRESS of an Ethernet link (zeros otherwise) */
};

/* Look name up: 0 and *out filled, or -1 with err->code ENODEV when it does not exist. */
int netlink_link_get(struct netlink *nl, const char *name, struct netlink_link *out,
                     struct shoal_err *err);

/* Every link of the namespace (for cleanup sweeps). Caller frees *out. */
int netlink_link_list(struct netlink *nl, struct netlink_link **out, size_t *n,
                      struct shoal_err *err);

/*
 * Set link index's MAC address to mac. Setting a bridge's address, even to the one it has,
 * pins it: left unset, a bridge takes the lowest MAC of its ports and changes it whenever a
 * port with a lower one joins or that port leaves.
 */
int netlink_link_set_mac(struct netlink *nl, int index, const unsigned char mac[6],
                         struct shoal_err *err);

/* Create a bridge (down). EEXIST when name exists. */
int netlink_bridge_create(struct netlink *nl, const char *name, struct shoal_err *err);

/*
 * A veth pair: `name` here, `peer` created directly in another namespace (peer_netns_fd, else
 * peer_pid's, else this one). Creating the peer where it belongs costs ~0.5 ms, moving it
 * afterwards ~17 ms (measured). master > 0 enslaves `name` to that bridge, up brings `name`
 * up, alias marks it: all in the one request.
 */
struct netlink_veth {
	const char *name;
	const char *peer;
	int peer_netns_fd; /* -1: use peer_pid */
	pid_t peer_pid;    /* 0: this namespace */
	int master;
	bool up;
	const char *alias; /* NULL: none */
};
int netlink_veth_create(struct netlink *nl, const struct netlink_veth *v, struct shoal_err *err);

/* Change a link: up (1) / down (0) / keep (-1); master ifindex (0 detaches, -1 keeps); alias
 * (NULL keeps). */
int netlink_link_set(struct netlink *nl, int index, int up, int master, const char *alias,
                     struct shoal_err *err);

/* Delete a link by index; a veth takes its peer with it. */
int netlink_link_del(struct netlink *nl, int index, struct shoal_err *err);

/* Add (EEXIST when present) or delete an IPv4 address on a link. */
int netlink_addr_add(struct netlink *nl, int index, struct in_addr addr, int prefix,
                     struct shoal_err *err);
int netlink_addr_del(struct netlink *nl, int index, struct in_addr addr, int prefix,
                     struct shoal_err *err);

/* An IPv4 route in the main table. prefix 0 is the default route. gw 0.0.0.0: none (a link
 * route via oif). protocol marks who made it (RTPROT_*, or a private number), so a sweep can
 * remove exactly its own. */
struct netlink_route {
	struct in_addr dst;
	int prefix;
	struct in_addr gw;
	int oif; /* 0: let the kernel pick from gw */
	uint8_t protocol;
	/* A route of the local table (`ip route add local DST dev OIF`): every address of
	 * dst/prefix is this host's, so a socket may bind any of them (AnyIP). */
	bool local;
};

/* Add (EEXIST when a route for dst/prefix exists), or replace in place (NLM_F_REPLACE). */
int netlink_route_add(struct netlink *nl, const struct netlink_route *r, bool replace,
                      struct shoal_err *err);
/* Delete the route for dst/prefix, only if it carries r->protocol (the kernel matches it). */
int netlink_route_del(struct netlink *nl, const struct netlink_route *r, struct shoal_err *err);

/* The main table's IPv4 unicast routes made with protocol. Caller frees *out. */
int netlink_route_list(struct netlink *nl, uint8_t protocol, struct netlink_route **out, size_t *n,
                       struct shoal_err *err);

/* Write value to /proc/sys/<key with dots as slashes> (e.g. net.ipv4.ip_forward), in the
 * caller's network namespace. */
int netlink_sysctl_set(const char *key, const char *value, struct shoal_err *err);
/* Read it into buf (trailing newline removed). */
int netlink_sysctl_get(const char *key, char *buf, size_t len, struct shoal_err *err);

/* Parse "a.b.c.d/len" (len 0..32). */
int netlink_parse_cidr(const char *s, struct in_addr *addr, int *prefix, struct shoal_err *err);

#endif
