#include "netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/rtnetlink.h>

#include "err.h"
#include "netlink.h"
#include "util.h"

int
netns_parse_mode(const char *s, enum netns_mode *mode, struct shoal_err *err)
{
	if (strcmp(s, "none") == 0)
		*mode = NETNS_NONE;
	else if (strcmp(s, "host") == 0)
		*mode = NETNS_HOST;
	else if (strcmp(s, "bridge") == 0)
		*mode = NETNS_BRIDGE;
	else
		return err_set(err, 0, "invalid network \"%s\" (want none, host or bridge)", s);
	return 0;
}

const char *
netns_mode_name(enum netns_mode mode)
{
	switch (mode) {
	case NETNS_NONE:
		return "none";
	case NETNS_HOST:
		return "host";
	case NETNS_JOIN:
		return "join";
	case NETNS_BRIDGE:
		return "bridge";
	}
	return "?";
}

int
netns_clone_flags(const struct netns_config *c)
{
	return c->mode == NETNS_NONE || c->mode == NETNS_BRIDGE ? CLONE_NEWNET : 0;
}

int
netns_needs_attach(const struct netns_config *c)
{
	return c->mode == NETNS_BRIDGE;
}

int
netns_bridge_parse(struct netns_bridge *b, const char *bridge, const char *cidr,
                   const char *gateway, struct shoal_err *err)
{
	uint32_t mask, a, g;

	memset(b, 0, sizeof(*b));
	if (bridge == NULL || bridge[0] == '\0' || strlen(bridge) >= IFNAMSIZ)
		return err_set(err, 0, "bridge name \"%s\" must be 1 to %d characters",
		               bridge ? bridge : "", IFNAMSIZ - 1);
	snprintf(b->bridge, sizeof(b->bridge), "%s", bridge);
	if (cidr == NULL)
		return err_set(err, 0, "bridge network needs an address (ADDR/PREFIX)");
	if (netlink_parse_cidr(cidr, &b->addr, &b->prefix, err) == -1)
		return -1;
	if (b->prefix < 1 || b->prefix > 30)
		return err_set(err, 0, "address %s: prefix must be 1 to 30", cidr);
	if (gateway == NULL || inet_pton(AF_INET, gateway, &b->gateway) != 1)
		return err_set(err, 0, "gateway \"%s\" is not an IPv4 address",
		               gateway ? gateway : "");
	mask = htonl(~0U << (32 - b->prefix));
	a = b->addr.s_addr;
	g = b->gateway.s_addr;
	if ((a & ~mask) == 0 || (a & ~mask) == ~mask)
		return err_set(err, 0, "address %s is its subnet's network or broadcast address",
		               cidr);
	if ((a & mask) != (g & mask) || a == g)
		return err_set(err, 0, "gateway %s must be another address of %s's subnet", gateway,
		               cidr);
	return 0;
}

void
netns_host_ifname(const char *id, char out[IFNAMSIZ])
{
	snprintf(out, IFNAMSIZ, "vs%.12s", id);
}

int
netns_lo_up(struct shoal_err *err)
{
	cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;

	if (fd == -1)
		return err_set(err, errno, "socket");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == -1)
		return err_set(err, errno, "get flags of lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) == -1)
		return err_set(err, errno, "bring lo up");
	return 0;
}

int
netns_enter(const struct netns_config *c, struct shoal_err *err)
{
	switch (c->mode) {
	case NETNS_HOST:
		return 0;
	case NETNS_NONE:
	case NETNS_BRIDGE:
		return netns_lo_up(err);
	case NETNS_JOIN: {
		cleanup_close int own = -1;
		int fd = c->fd;
		if (fd < 0) {
			own = open(c->path, O_RDONLY | O_CLOEXEC);
			if (own == -1)
				return err_set(err, errno, "open network namespace %s", c->path);
			fd = own;
		}
		if (setns(fd, CLONE_NEWNET) == -1)
			return err_set(err, errno, "join network namespace %s",
			               c->path ? c->path : "(fd)");
		return 0;
	}
	}
	return err_set(err, EINVAL, "network mode %d", (int)c->mode);
}

int
netns_attach(const struct netns_config *c, pid_t pid, struct shoal_err *err)
{
	struct netlink nl;
	struct netlink_link br;
	struct netlink_veth v = {
	    .name = c->br.host_if,
	    .peer = "eth0",
	    .peer_netns_fd = -1,
	    .peer_pid = pid,
	    .up = true,
	    .alias = NETNS_VETH_ALIAS,
	};
	int rc = -1;

	if (netlink_open(&nl, err) == -1)
		return -1;
	if (netlink_link_get(&nl, c->br.bridge, &br, err) == -1) {
		if (err->code == ENODEV)
			err_set(err, 0, "bridge %s does not exist", c->br.bridge);
		goto out;
	}
	if (strcmp(br.kind, "bridge") != 0) {
		err_set(err, 0, "%s is not a bridge", c->br.bridge);
		goto out;
	}
	v.master = br.index;
	rc = netlink_veth_create(&nl, &v, err);
out:
	netlink_close(&nl);
	return rc;
}

int
netns_configure(const struct netns_config *c, struct shoal_err *err)
{
	struct netlink nl;
	struct netlink_link eth;
	struct netlink_route def = {.gw = c->br.gateway, .protocol = RTPROT_BOOT};
	int rc = -1;

	if (netlink_open(&nl, err) == -1)
		return -1;
	if (netlink_link_get(&nl, "eth0", &eth, err) == -1 ||
	    netlink_addr_add(&nl, eth.index, c->br.addr, c->br.prefix, err) == -1 ||
	    netlink_link_set(&nl, eth.index, 1, -1, NULL, err) == -1)
		goto out;
	def.oif = eth.index;
	rc = netlink_route_add(&nl, &def, false, err);
out:
	netlink_close(&nl);
	return rc == -1 ? err_prefix(err, "eth0") : 0;
}

int
netns_detach(const char *host_if, struct shoal_err *err)
{
	struct netlink nl;
	struct netlink_link l;
	struct shoal_err e;
	int rc = 0;

	if (netlink_open(&nl, &e) == -1)
		goto fail;
	/* ENODEV: gone already, with the container's namespace. */
	if (netlink_link_get(&nl, host_if, &l, &e) == -1)
		rc = e.code == ENODEV ? 0 : -1;
	else if (strcmp(l.alias, NETNS_VETH_ALIAS) == 0 && netlink_link_del(&nl, l.index, &e) == -1)
		rc = e.code == ENODEV ? 0 : -1;
	netlink_close(&nl);
	if (rc == 0)
		return 0;
fail:
	if (err)
		*err = e;
	return -1;
}
