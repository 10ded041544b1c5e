#ifndef SHOAL_RUNTIME_NETNS_H
#define SHOAL_RUNTIME_NETNS_H

#include <net/if.h>
#include <netinet/in.h>
#include <sys/types.h>

struct shoal_err;

/*
 * A container's network: its own namespace with only loopback up (none), the host's (host),
 * a namespace the caller already made and wired (join), or its own namespace wired to a bridge
 * of the host by a veth pair (bridge): eth0 inside with an address and a default route via the
 * bridge's address, the host end enslaved to the bridge.
 */
enum netns_mode {
	NETNS_NONE = 0,
	NETNS_HOST,
	NETNS_JOIN,
	NETNS_BRIDGE,
};

/* NETNS_BRIDGE: where the container plugs in and what it is. */
struct netns_bridge {
	char bridge[IFNAMSIZ];  /* an existing bridge of the starter's namespace */
	char host_if[IFNAMSIZ]; /* the veth end on the host (netns_host_ifname) */
	struct in_addr addr;    /* the container's eth0 */
	int prefix;
	struct in_addr gateway; /* its default route: the bridge's address */
};

struct netns_config {
	enum netns_mode mode;
	const char *path; /* NETNS_JOIN: /proc/PID/ns/net or a bind-mounted nsfs file */
	int fd;           /* NETNS_JOIN: an open namespace fd, used when >= 0 (else path) */
	struct netns_bridge br;
};

/* The alias marking host veth ends the runtime made (IFLA_IFALIAS), so a sweep removes only
 * its own. */
#define NETNS_VETH_ALIAS "shoal container"

/* "none" / "host" / "bridge" -> mode. */
int netns_parse_mode(const char *s, enum netns_mode *mode, struct shoal_err *err);
const char *netns_mode_name(enum netns_mode mode);

/* Fill b from strings: bridge name, "a.b.c.d/len" and the gateway; the gateway must be in the
 * container's subnet and differ from its address. host_if is left to the caller. */
int netns_bridge_parse(struct netns_bridge *b, const char *bridge, const char *cidr,
                       const char *gateway, struct shoal_err *err);

/* The host end's name for container id: "vs" + 12 hex digits (IFNAMSIZ holds 15). */
void netns_host_ifname(const char *id, char out[IFNAMSIZ]);

/* The clone flag the mode needs (CLONE_NEWNET for none and bridge, 0 otherwise). */
int netns_clone_flags(const struct netns_config *c);

/* Does the child wait for its starter (netns_attach) before netns_configure? */
int netns_needs_attach(const struct netns_config *c);

/* In the container's child, early: join the given namespace or bring lo up. */
int netns_enter(const struct netns_config *c, struct shoal_err *err);

/*
 * NETNS_BRIDGE, in the starter (the shim), once the child exists: create the veth pair with the
 * host end on the bridge and up, and its peer made directly in pid's namespace as eth0.
 */
int netns_attach(const struct netns_config *c, pid_t pid, struct shoal_err *err);

/* NETNS_BRIDGE, in the child after netns_attach and before pivot_root (it still holds
 * CAP_NET_ADMIN): address on eth0, eth0 up, default route via the gateway. */
int netns_configure(const struct netns_config *c, struct shoal_err *err);

/* Delete the host end host_if of a container's veth, if it still exists in the caller's
 * namespace and carries NETNS_VETH_ALIAS (the peer dies with the container's namespace anyway;
 * this removes the pair at once). */
int netns_detach(const char *host_if, struct shoal_err *err);

/* Set IFF_UP on the loopback interface of the current namespace (an ioctl: no netlink socket,
 * no `ip` process). */
int netns_lo_up(struct shoal_err *err);

#endif
