#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include "err.h"
#include "util.h"

/* Requests are small and fixed in shape: one buffer holds any of them. */
#define REQ_SIZE 1024
/* A dump answer arrives in datagrams of up to a few pages each. */
#define DUMP_BUF 65536

union req {
	struct nlmsghdr h;
	char buf[REQ_SIZE];
};

int
netlink_open(struct netlink *nl, struct shoal_err *err)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};

	nl->seq = 0;
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (nl->fd == -1)
		return err_set(err, errno, "netlink socket");
	if (bind(nl->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		err_set(err, errno, "bind netlink socket");
		close(nl->fd);
		nl->fd = -1;
		return -1;
	}
	return 0;
}

void
netlink_close(struct netlink *nl)
{
	if (nl->fd >= 0)
		close(nl->fd);
	nl->fd = -1;
}

/* ---- message building ---- */

static struct nlmsghdr *
req_init(union req *r, uint16_t type, uint16_t flags, size_t hdrlen)
{
	memset(r, 0, sizeof(*r));
	r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(hdrlen);
	r->h.nlmsg_type = type;
	r->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
	return &r->h;
}

static struct rtattr *
attr_put(struct nlmsghdr *h, uint16_t type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));
	size_t total = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(RTA_LENGTH(len));

	/* Messages are built from bounded inputs (names < IFNAMSIZ): overflow is a bug. */
	SHOAL_ASSERT(total <= REQ_SIZE);
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	h->nlmsg_len = (uint32_t)total;
	return a;
}

static void
attr_str(struct nlmsghdr *h, uint16_t type, const char *s)
{
	attr_put(h, type, s, strlen(s) + 1);
}

static void
attr_u32(struct nlmsghdr *h, uint16_t type, uint32_t v)
{
	attr_put(h, type, &v, sizeof(v));
}

static struct rtattr *
nest_begin(struct nlmsghdr *h, uint16_t type)
{
	return attr_put(h, type, NULL, 0);
}

static void
nest_end(struct nlmsghdr *h, struct rtattr *nest)
{
	nest->rta_len = (unsigned short)((char *)h + h->nlmsg_len - (char *)nest);
}

/* Reserve len zeroed bytes (a nested ifinfomsg) at the end of the message. */
static void *
body_put(struct nlmsghdr *h, size_t len)
{
	char *p = (char *)h + NLMSG_ALIGN(h->nlmsg_len);

	SHOAL_ASSERT(NLMSG_ALIGN(h->nlmsg_len) + NLMSG_ALIGN(len) <= REQ_SIZE);
	memset(p, 0, NLMSG_ALIGN(len));
	h->nlmsg_len = (uint32_t)(NLMSG_ALIGN(h->nlmsg_len) + NLMSG_ALIGN(len));
	return p;
}

/* ---- exchange ---- */

typedef int (*msg_cb)(const struct nlmsghdr *h, void *arg);

/*
 * Send h and read answers until its acknowledgement (or, for a dump, NLMSG_DONE), handing every
 * data message to cb. Returns 0, or -1 with the kernel's errno.
 */
static int
request(struct netlink *nl, struct nlmsghdr *h, msg_cb cb, void *arg, struct shoal_err *err)
{
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	bool dump = (h->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
	cleanup_free char *buf = xmalloc(dump ? DUMP_BUF : 8192);
	size_t cap = dump ? DUMP_BUF : 8192;
	uint32_t seq = ++nl->seq;
	ssize_t n;

	h->nlmsg_seq = seq;
	if (!dump)
		h->nlmsg_flags |= NLM_F_ACK;
	do
		n = sendto(nl->fd, h, h->nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa));
	while (n == -1 && errno == EINTR);
	if (n == -1)
		return err_set(err, errno, "netlink send");
	for (;;) {
		struct nlmsghdr *m;
		size_t len;

		n = recv(nl->fd, buf, cap, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return err_set(err, errno, "netlink receive");
		len = (size_t)n;
		for (m = (struct nlmsghdr *)buf; NLMSG_OK(m, len); m = NLMSG_NEXT(m, len)) {
			if (m->nlmsg_seq != seq)
				continue; /* an answer to an earlier, abandoned request */
			if (m->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(m);
				if (e->error == 0)
					return 0;
				return err_set(err, -e->error, "netlink");
			}
			if (m->nlmsg_type == NLMSG_DONE) {
				int e = m->nlmsg_len >= NLMSG_LENGTH(sizeof(int))
				            ? *(const int *)NLMSG_DATA(m)
				            : 0;
				return e < 0 ? err_set(err, -e, "netlink dump") : 0;
			}
			if (cb && cb(m, arg) == -1)
				return err_set(err, EPROTO, "netlink: unexpected answer");
		}
	}
}

/* Name the operation: "create bridge shoal0: File exists" (the errno stays in err->code). */
static int __attribute__((format(printf, 2, 3))) fail(struct shoal_err *err, const char *fmt, ...)
{
	char what[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (err == NULL)
		return -1;
	if (err->code == 0)
		return err_prefix(err, "%s", what);
	return err_set(err, err->code, "%s", what);
}

/* ---- links ---- */

static void
parse_link(const struct nlmsghdr *h, struct netlink_link *l)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));

	memset(l, 0, sizeof(*l));
	l->index = ifi->ifi_index;
	l->flags = ifi->ifi_flags;
	for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		switch (a->rta_type) {
		case IFLA_IFNAME:
			snprintf(l->name, sizeof(l->name), "%.*s", (int)RTA_PAYLOAD(a),
			         (const char *)RTA_DATA(a));
			break;
		case IFLA_MASTER:
			l->master = *(const int *)RTA_DATA(a);
			break;
		case IFLA_ADDRESS:
			if (RTA_PAYLOAD(a) == sizeof(l->mac))
				memcpy(l->mac, RTA_DATA(a), sizeof(l->mac));
			break;
		case IFLA_IFALIAS:
			snprintf(l->alias, sizeof(l->alias), "%.*s", (int)RTA_PAYLOAD(a),
			         (const char *)RTA_DATA(a));
			break;
		case IFLA_LINKINFO: {
			int nl = (int)RTA_PAYLOAD(a);
			for (const struct rtattr *b = RTA_DATA(a); RTA_OK(b, nl);
			     b = RTA_NEXT(b, nl))
				if (b->rta_type == IFLA_INFO_KIND)
					snprintf(l->kind, sizeof(l->kind), "%.*s",
					         (int)RTA_PAYLOAD(b), (const char *)RTA_DATA(b));
			break;
		}
		}
	}
}

static int
on_link(const struct nlmsghdr *h, void *arg)
{
	if (h->nlmsg_type == RTM_NEWLINK)
		parse_link(h, arg);
	return 0;
}

/* A link request (RTM_*LINK): its ifinfomsg addresses link index (0: none, by name or new). */
static struct nlmsghdr *
link_req(union req *r, uint16_t type, uint16_t flags, int index)
{
	struct nlmsghdr *h = req_init(r, type, flags, sizeof(struct ifinfomsg));
	struct ifinfomsg *ifi = NLMSG_DATA(h);

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	return h;
}

int
netlink_link_get(struct netlink *nl, const char *name, struct netlink_link *out,
                 struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_GETLINK, 0, 0);

	if (strlen(name) >= IFNAMSIZ)
		return err_set(err, ENODEV, "link %s", name);
	attr_str(h, IFLA_IFNAME, name);
	memset(out, 0, sizeof(*out));
	if (request(nl, h, on_link, out, err) == -1)
		return fail(err, "link %s", name);
	if (out->index == 0)
		return err_set(err, ENODEV, "link %s", name);
	return 0;
}

struct link_vec {
	struct netlink_link *v;
	size_t n, cap;
};

static int
on_link_list(const struct nlmsghdr *h, void *arg)
{
	struct link_vec *lv = arg;

	if (h->nlmsg_type != RTM_NEWLINK)
		return 0;
	if (lv->n == lv->cap) {
		lv->cap = lv->cap ? lv->cap * 2 : 16;
		lv->v = xrealloc(lv->v, lv->cap * sizeof(*lv->v));
	}
	parse_link(h, &lv->v[lv->n++]);
	return 0;
}

int
netlink_link_list(struct netlink *nl, struct netlink_link **out, size_t *n, struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_GETLINK, NLM_F_DUMP, 0);
	struct link_vec lv = {0};

	if (request(nl, h, on_link_list, &lv, err) == -1) {
		free(lv.v);
		return fail(err, "list links");
	}
	*out = lv.v;
	*n = lv.n;
	return 0;
}

int
netlink_bridge_create(struct netlink *nl, const char *name, struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	struct rtattr *li;

	if (strlen(name) >= IFNAMSIZ)
		return err_set(err, EINVAL, "bridge name %s is too long", name);
	attr_str(h, IFLA_IFNAME, name);
	li = nest_begin(h, IFLA_LINKINFO);
	attr_str(h, IFLA_INFO_KIND, "bridge");
	nest_end(h, li);
	if (request(nl, h, NULL, NULL, err) == -1)
		return fail(err, "create bridge %s", name);
	return 0;
}

int
netlink_veth_create(struct netlink *nl, const struct netlink_veth *v, struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
	struct ifinfomsg *ifi = NLMSG_DATA(h), *peer;
	struct rtattr *li, *data, *pe;

	if (strlen(v->name) >= IFNAMSIZ || strlen(v->peer) >= IFNAMSIZ)
		return err_set(err, EINVAL, "veth %s: name too long", v->name);
	if (v->up) {
		ifi->ifi_flags = IFF_UP;
		ifi->ifi_change = IFF_UP;
	}
	attr_str(h, IFLA_IFNAME, v->name);
	if (v->master > 0)
		attr_u32(h, IFLA_MASTER, (uint32_t)v->master);
	li = nest_begin(h, IFLA_LINKINFO);
	attr_str(h, IFLA_INFO_KIND, "veth");
	data = nest_begin(h, IFLA_INFO_DATA);
	pe = nest_begin(h, VETH_INFO_PEER);
	/* The peer's attributes follow its own ifinfomsg. */
	peer = body_put(h, sizeof(*peer));
	peer->ifi_family = AF_UNSPEC;
	attr_str(h, IFLA_IFNAME, v->peer);
	if (v->peer_netns_fd >= 0)
		attr_u32(h, IFLA_NET_NS_FD, (uint32_t)v->peer_netns_fd);
	else if (v->peer_pid > 0)
		attr_u32(h, IFLA_NET_NS_PID, (uint32_t)v->peer_pid);
	nest_end(h, pe);
	nest_end(h, data);
	nest_end(h, li);
	if (request(nl, h, NULL, NULL, err) == -1)
		return fail(err, "create veth %s", v->name);
	/* The kernel ignores IFLA_IFALIAS when it creates a link: set it on the made one. */
	if (v->alias) {
		struct netlink_link l;
		if (netlink_link_get(nl, v->name, &l, err) == -1 ||
		    netlink_link_set(nl, l.index, -1, -1, v->alias, err) == -1)
			return err_prefix(err, "veth %s", v->name);
	}
	return 0;
}

int
netlink_link_set(struct netlink *nl, int index, int up, int master, const char *alias,
                 struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_NEWLINK, 0, index);
	struct ifinfomsg *ifi = NLMSG_DATA(h);

	if (up >= 0) {
		ifi->ifi_change = IFF_UP;
		ifi->ifi_flags = up ? IFF_UP : 0;
	}
	if (master >= 0)
		attr_u32(h, IFLA_MASTER, (uint32_t)master);
	if (alias)
		attr_str(h, IFLA_IFALIAS, alias);
	if (request(nl, h, NULL, NULL, err) == -1)
		return fail(err, "set link %d", index);
	return 0;
}

int
netlink_link_set_mac(struct netlink *nl, int index, const unsigned char mac[6],
                     struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_NEWLINK, 0, index);

	attr_put(h, IFLA_ADDRESS, mac, 6);
	if (request(nl, h, NULL, NULL, err) == -1)
		return fail(err, "set address of link %d", index);
	return 0;
}

int
netlink_link_del(struct netlink *nl, int index, struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = link_req(&r, RTM_DELLINK, 0, index);

	if (request(nl, h, NULL, NULL, err) == -1)
		return fail(err, "delete link %d", index);
	return 0;
}

/* ---- addresses ---- */

static int
addr_req(struct netlink *nl, uint16_t type, uint16_t flags, int index, struct in_addr addr,
         int prefix, struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = req_init(&r, type, flags, sizeof(struct ifaddrmsg));
	struct ifaddrmsg *ifa = NLMSG_DATA(h);

	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	attr_put(h, IFA_LOCAL, &addr, sizeof(addr));
	attr_put(h, IFA_ADDRESS, &addr, sizeof(addr));
	return request(nl, h, NULL, NULL, err);
}

int
netlink_addr_add(struct netlink *nl, int index, struct in_addr addr, int prefix,
                 struct shoal_err *err)
{
	char a[INET_ADDRSTRLEN + 8];

	if (addr_req(nl, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, addr, prefix, err) == 0)
		return 0;
	inet_ntop(AF_INET, &addr, a, sizeof(a));
	snprintf(a + strlen(a), sizeof(a) - strlen(a), "/%d", prefix);
	return fail(err, "add address %s", a);
}

int
netlink_addr_del(struct netlink *nl, int index, struct in_addr addr, int prefix,
                 struct shoal_err *err)
{
	char a[INET_ADDRSTRLEN + 8];

	if (addr_req(nl, RTM_DELADDR, 0, index, addr, prefix, err) == 0)
		return 0;
	inet_ntop(AF_INET, &addr, a, sizeof(a));
	snprintf(a + strlen(a), sizeof(a) - strlen(a), "/%d", prefix);
	return fail(err, "delete address %s", a);
}

/* ---- routes ---- */

static void
route_fmt(const struct netlink_route *rt, char *buf, size_t len)
{
	char d[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &rt->dst, d, sizeof(d));
	inet_ntop(AF_INET, &rt->gw, g, sizeof(g));
	if (rt->prefix == 0)
		snprintf(buf, len, "default via %s", g);
	else
		snprintf(buf, len, "%s/%d via %s", d, rt->prefix, g);
}

static struct nlmsghdr *
route_build(union req *r, uint16_t type, uint16_t flags, const struct netlink_route *rt)
{
	struct nlmsghdr *h = req_init(r, type, flags, sizeof(struct rtmsg));
	struct rtmsg *m = NLMSG_DATA(h);

	m->rtm_family = AF_INET;
	m->rtm_dst_len = (unsigned char)rt->prefix;
	m->rtm_table = rt->local ? RT_TABLE_LOCAL : RT_TABLE_MAIN;
	m->rtm_protocol = rt->protocol;
	if (type == RTM_NEWROUTE && rt->local) {
		m->rtm_scope = RT_SCOPE_HOST;
		m->rtm_type = RTN_LOCAL;
	} else if (type == RTM_NEWROUTE) {
		m->rtm_scope = rt->gw.s_addr ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
		m->rtm_type = RTN_UNICAST;
	} else {
		m->rtm_scope = RT_SCOPE_NOWHERE; /* match any scope */
	}
	if (rt->prefix > 0)
		attr_put(h, RTA_DST, &rt->dst, sizeof(rt->dst));
	if (type == RTM_NEWROUTE && rt->gw.s_addr)
		attr_put(h, RTA_GATEWAY, &rt->gw, sizeof(rt->gw));
	if (type == RTM_NEWROUTE && rt->oif > 0)
		attr_u32(h, RTA_OIF, (uint32_t)rt->oif);
	return h;
}

int
netlink_route_add(struct netlink *nl, const struct netlink_route *rt, bool replace,
                  struct shoal_err *err)
{
	union req r;
	char what[64];
	struct nlmsghdr *h = route_build(&r, RTM_NEWROUTE,
	                                 NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL), rt);

	if (request(nl, h, NULL, NULL, err) == 0)
		return 0;
	route_fmt(rt, what, sizeof(what));
	return fail(err, "add route %s", what);
}

int
netlink_route_del(struct netlink *nl, const struct netlink_route *rt, struct shoal_err *err)
{
	union req r;
	char d[INET_ADDRSTRLEN], what[64];
	struct nlmsghdr *h = route_build(&r, RTM_DELROUTE, 0, rt);

	if (request(nl, h, NULL, NULL, err) == 0)
		return 0;
	inet_ntop(AF_INET, &rt->dst, d, sizeof(d));
	snprintf(what, sizeof(what), "%s/%d", d, rt->prefix);
	return fail(err, "delete route %s", what);
}

struct route_vec {
	uint8_t protocol;
	struct netlink_route *v;
	size_t n, cap;
};

static int
on_route(const struct nlmsghdr *h, void *arg)
{
	struct route_vec *rv = arg;
	const struct rtmsg *m = NLMSG_DATA(h);
	int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));
	struct netlink_route rt = {.prefix = m->rtm_dst_len, .protocol = m->rtm_protocol};
	uint32_t table = m->rtm_table;

	if (h->nlmsg_type != RTM_NEWROUTE || m->rtm_family != AF_INET ||
	    m->rtm_protocol != rv->protocol || m->rtm_type != RTN_UNICAST)
		return 0;
	for (const struct rtattr *a = RTM_RTA(m); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		switch (a->rta_type) {
		case RTA_DST:
			memcpy(&rt.dst, RTA_DATA(a), sizeof(rt.dst));
			break;
		case RTA_GATEWAY:
			memcpy(&rt.gw, RTA_DATA(a), sizeof(rt.gw));
			break;
		case RTA_OIF:
			rt.oif = *(const int *)RTA_DATA(a);
			break;
		case RTA_TABLE:
			table = *(const uint32_t *)RTA_DATA(a);
			break;
		}
	}
	if (table != RT_TABLE_MAIN)
		return 0;
	if (rv->n == rv->cap) {
		rv->cap = rv->cap ? rv->cap * 2 : 16;
		rv->v = xrealloc(rv->v, rv->cap * sizeof(*rv->v));
	}
	rv->v[rv->n++] = rt;
	return 0;
}

int
netlink_route_list(struct netlink *nl, uint8_t protocol, struct netlink_route **out, size_t *n,
                   struct shoal_err *err)
{
	union req r;
	struct nlmsghdr *h = req_init(&r, RTM_GETROUTE, NLM_F_DUMP, sizeof(struct rtmsg));
	struct route_vec rv = {.protocol = protocol};

	((struct rtmsg *)NLMSG_DATA(h))->rtm_family = AF_INET;
	if (request(nl, h, on_route, &rv, err) == -1) {
		free(rv.v);
		return fail(err, "list routes");
	}
	*out = rv.v;
	*n = rv.n;
	return 0;
}

/* ---- sysctl, parsing ---- */

static void
sysctl_path(const char *key, char *path, size_t len)
{
	snprintf(path, len, "/proc/sys/%s", key);
	for (char *p = path + strlen("/proc/sys/"); *p; p++)
		if (*p == '.')
			*p = '/';
}

int
netlink_sysctl_set(const char *key, const char *value, struct shoal_err *err)
{
	char path[256];
	cleanup_close int fd = -1;
	size_t len = strlen(value);

	sysctl_path(key, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd == -1)
		return err_set(err, errno, "sysctl %s", key);
	if (write(fd, value, len) != (ssize_t)len)
		return err_set(err, errno, "sysctl %s=%s", key, value);
	return 0;
}

int
netlink_sysctl_get(const char *key, char *buf, size_t len, struct shoal_err *err)
{
	char path[256];
	cleanup_close int fd = -1;
	ssize_t n;

	sysctl_path(key, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return err_set(err, errno, "sysctl %s", key);
	n = read(fd, buf, len - 1);
	if (n < 0)
		return err_set(err, errno, "sysctl %s", key);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

int
netlink_parse_cidr(const char *s, struct in_addr *addr, int *prefix, struct shoal_err *err)
{
	char buf[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	char *end;
	long p;

	if (slash == NULL || (size_t)(slash - s) >= sizeof(buf))
		return err_set(err, 0, "\"%s\" is not an IPv4 CIDR (want a.b.c.d/len)", s);
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	p = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, buf, addr) != 1 || slash[1] == '\0' || *end || p < 0 || p > 32)
		return err_set(err, 0, "\"%s\" is not an IPv4 CIDR (want a.b.c.d/len)", s);
	*prefix = (int)p;
	return 0;
}
