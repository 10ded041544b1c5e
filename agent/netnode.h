#ifndef SHOAL_AGENT_NETNODE_H
#define SHOAL_AGENT_NETNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

struct shoal_err;
typedef struct Shoal__NodeRoute Shoal__NodeRoute;

/*
 * The node's container network: bridge shoal0 holding the first address of the node's /24 (the
 * containers' gateway), IPv4 forwarding, an address manager (IPAM) for the /24, host-gateway
 * routes to every other node's /24, and optionally masquerade for traffic leaving the cluster.
 *
 * What it makes carries a mark so that cleanup removes exactly that: the bridge has the alias
 * NETNODE_BRIDGE_ALIAS, host veth ends NETNS_VETH_ALIAS (runtime/netns.h), routes the protocol
 * number NETNODE_RTPROT. State lives in the agent's data dir: ipam.json (leases) and
 * netnode.json (subnet, what setup changed).
 */

#define NETNODE_BRIDGE       "shoal0"
#define NETNODE_BRIDGE_ALIAS "shoal node bridge"
/* rtm_protocol of the routes netnode adds (iproute2 shows "proto 84"); unassigned in
 * /etc/iproute2/rt_protos. */
#define NETNODE_RTPROT 84

/* One lease: owner (a task id) holds addr. */
struct netnode_lease {
	char owner[32];
	struct in_addr addr;
};

/*
 * Addresses of one subnet: .0 and the broadcast address are reserved, the first host address
 * is the gateway; leases are handed out next-fit (after the last one handed out, wrapping), so
 * a released address is reused as late as possible. Every change is written to path
 * atomically before it is reported.
 */
struct netnode_ipam {
	char *path;
	struct in_addr net; /* 0.0.0.0 until a subnet is set */
	int prefix;
	uint32_t next; /* host part to try first */
	struct netnode_lease *v;
	size_t n, cap;
};

/* Load path (a missing file is an empty IPAM). */
int netnode_ipam_load(struct netnode_ipam *ip, const char *path, struct shoal_err *err);
/* The subnet to allocate from ("10.244.1.0/24"). Leases outside it stay until released. */
int netnode_ipam_set_subnet(struct netnode_ipam *ip, const char *cidr, struct shoal_err *err);
/* Lease an address to owner (the one it holds already, if any) and persist. */
int netnode_ipam_alloc(struct netnode_ipam *ip, const char *owner, struct in_addr *out,
                       struct shoal_err *err);
/* Record that owner holds addr (a re-adopted container): taken from any other owner, as a
 * container that holds an address wins over a record that says otherwise. */
int netnode_ipam_hold(struct netnode_ipam *ip, const char *owner, struct in_addr addr,
                      struct shoal_err *err);
/* Release owner's lease, if any, and persist. */
int netnode_ipam_release(struct netnode_ipam *ip, const char *owner, struct shoal_err *err);
/* The owner of addr, or NULL. */
const char *netnode_ipam_owner(const struct netnode_ipam *ip, struct in_addr addr);
void netnode_ipam_free(struct netnode_ipam *ip);

/* A host-gateway route: dst/prefix via a node's address. */
struct netnode_route {
	struct in_addr dst;
	int prefix;
	struct in_addr via;
};

enum netnode_route_action {
	NETNODE_ROUTE_ADD,
	NETNODE_ROUTE_CHANGE, /* same destination, another gateway */
	NETNODE_ROUTE_DEL,
};

struct netnode_route_op {
	enum netnode_route_action action;
	struct netnode_route r;
};

/*
 * What turns cur (the routes we made) into want: a pure function. ops must hold ncur + nwant
 * entries; returns how many it wrote: deletions first, then changes and additions.
 */
size_t netnode_route_diff(const struct netnode_route *cur, size_t ncur,
                          const struct netnode_route *want, size_t nwant,
                          struct netnode_route_op *ops);

struct netnode {
	char *data_dir;
	char *node_name;    /* ours: skipped in route lists */
	bool masquerade;    /* --masquerade */
	bool ready;         /* bridge and forwarding set up for subnet */
	char subnet[32];    /* "10.244.1.0/24", "" until registration */
	struct in_addr net; /* subnet's network address */
	int prefix;
	struct in_addr gateway; /* subnet's first address, on the bridge */
	char error[256];        /* why setup failed, while !ready */
	struct netnode_ipam ipam;
	char *masq_subnets; /* masquerade: the subnets excluded last time (to skip a no-op) */
};

/* Load the IPAM. With masquerade, fails at once when iptables is missing. */
int netnode_init(struct netnode *nn, const char *data_dir, const char *node_name, bool masquerade,
                 struct shoal_err *err);
void netnode_free(struct netnode *nn);

/* On (re-)registration: bridge with the gateway address, up; ip_forward=1; masquerade. Idempotent.
 */
int netnode_setup(struct netnode *nn, const char *subnet, struct shoal_err *err);

/* An address for owner (a task id): ip gets "a.b.c.d", cidr "a.b.c.d/len", gateway "a.b.c.d". */
int netnode_alloc(struct netnode *nn, const char *owner, char ip[16], char cidr[20],
                  char gateway[16], struct shoal_err *err);
/* The bridge parameters for an address owner already holds (ip "a.b.c.d"). */
int netnode_hold(struct netnode *nn, const char *owner, const char *ip, struct shoal_err *err);
void netnode_release(struct netnode *nn, const char *owner);

/*
 * Make this node route every other node's /24 via that node's address: add what is missing,
 * change what moved, delete routes (ours only) of nodes that left. nodes is the scheduler's
 * list (Endpoints.nodes), ours included. Logs what it changes; returns -1 when some route could
 * not be set (the rest still is).
 */
int netnode_sync_routes(struct netnode *nn, Shoal__NodeRoute *const *nodes, size_t n,
                        struct shoal_err *err);

/* `shoal-agent cleanup`: remove the bridge, routes, leftover veths and masquerade rule the
 * agent made in this namespace, restore ip_forward if setup changed it, and the state files. */
int netnode_cleanup(const char *data_dir, struct shoal_err *err);

#endif
