#include "netnode.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "addr.h"
#include "err.h"
#include "log.h"
#include "runtime/netlink.h"
#include "runtime/netns.h"
#include "shoal.pb-c.h"
#include "util.h"

#define MASQ_CHAIN   "SHOAL-MASQ"
#define MASQ_COMMENT "shoal masquerade"

/* ---- addresses ---- */

static uint32_t
host_count(int prefix)
{
	return prefix >= 32 ? 1 : (uint32_t)1 << (32 - prefix);
}

static struct in_addr
addr_at(struct in_addr net, uint32_t host)
{
	struct in_addr a = {htonl(ntohl(net.s_addr) + host)};
	return a;
}

/* Parse a subnet: a CIDR whose host bits are 0, /8 to /30. */
static int
parse_subnet(const char *cidr, struct in_addr *net, int *prefix, struct shoal_err *err)
{
	uint32_t mask;

	if (netlink_parse_cidr(cidr, net, prefix, err) == -1)
		return -1;
	if (*prefix < 8 || *prefix > 30)
		return err_set(err, 0, "subnet %s: prefix must be 8 to 30", cidr);
	mask = ~0U << (32 - *prefix);
	if ((ntohl(net->s_addr) & ~mask) != 0)
		return err_set(err, 0, "subnet %s: host bits are set", cidr);
	return 0;
}

static void
fmt_cidr(struct in_addr a, int prefix, char *buf, size_t len)
{
	char s[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, s, sizeof(s));
	snprintf(buf, len, "%s/%d", s, prefix);
}

/* ---- IPAM ---- */

static int
ipam_save(const struct netnode_ipam *ip, struct shoal_err *err)
{
	json_t *o = json_object(), *leases = json_object();
	char cidr[32], a[INET_ADDRSTRLEN];
	char *text;
	int rc;

	if (ip->net.s_addr) {
		fmt_cidr(ip->net, ip->prefix, cidr, sizeof(cidr));
		json_object_set_new(o, "subnet", json_string(cidr));
	}
	json_object_set_new(o, "next", json_integer(ip->next));
	for (size_t i = 0; i < ip->n; i++) {
		inet_ntop(AF_INET, &ip->v[i].addr, a, sizeof(a));
		json_object_set_new(leases, ip->v[i].owner, json_string(a));
	}
	json_object_set_new(o, "leases", leases);
	text = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	json_decref(o);
	rc = util_write_file_atomic(ip->path, text, strlen(text), 0600, err);
	free(text);
	return rc;
}

static void
lease_add(struct netnode_ipam *ip, const char *owner, struct in_addr a)
{
	if (ip->n == ip->cap) {
		ip->cap = ip->cap ? ip->cap * 2 : 32;
		ip->v = xrealloc(ip->v, ip->cap * sizeof(*ip->v));
	}
	snprintf(ip->v[ip->n].owner, sizeof(ip->v[ip->n].owner), "%s", owner);
	ip->v[ip->n].addr = a;
	ip->n++;
}

static void
lease_remove_at(struct netnode_ipam *ip, size_t i)
{
	ip->v[i] = ip->v[--ip->n];
}

static ssize_t
lease_of(const struct netnode_ipam *ip, const char *owner)
{
	for (size_t i = 0; i < ip->n; i++)
		if (strcmp(ip->v[i].owner, owner) == 0)
			return (ssize_t)i;
	return -1;
}

int
netnode_ipam_load(struct netnode_ipam *ip, const char *path, struct shoal_err *err)
{
	json_error_t jerr;
	json_t *o, *leases, *v;
	const char *owner, *subnet;

	memset(ip, 0, sizeof(*ip));
	ip->path = xstrdup(path);
	if (access(path, F_OK) == -1 && errno == ENOENT)
		return 0;
	o = json_load_file(path, 0, &jerr);
	if (o == NULL)
		return err_set(err, 0, "%s: %s", path, jerr.text);
	subnet = json_string_value(json_object_get(o, "subnet"));
	if (subnet && parse_subnet(subnet, &ip->net, &ip->prefix, err) == -1) {
		json_decref(o);
		return err_prefix(err, "%s", path);
	}
	ip->next = (uint32_t)json_integer_value(json_object_get(o, "next"));
	leases = json_object_get(o, "leases");
	json_object_foreach(leases, owner, v)
	{
		struct in_addr a;
		if (!json_is_string(v) || inet_pton(AF_INET, json_string_value(v), &a) != 1 ||
		    strlen(owner) >= sizeof(ip->v[0].owner)) {
			err_set(err, 0, "%s: bad lease of %s", path, owner);
			json_decref(o); /* owns owner */
			return -1;
		}
		lease_add(ip, owner, a);
	}
	json_decref(o);
	return 0;
}

int
netnode_ipam_set_subnet(struct netnode_ipam *ip, const char *cidr, struct shoal_err *err)
{
	struct in_addr net;
	int prefix;

	if (parse_subnet(cidr, &net, &prefix, err) == -1)
		return -1;
	if (net.s_addr == ip->net.s_addr && prefix == ip->prefix)
		return 0;
	ip->net = net;
	ip->prefix = prefix;
	ip->next = 2;
	return ipam_save(ip, err);
}

const char *
netnode_ipam_owner(const struct netnode_ipam *ip, struct in_addr addr)
{
	for (size_t i = 0; i < ip->n; i++)
		if (ip->v[i].addr.s_addr == addr.s_addr)
			return ip->v[i].owner;
	return NULL;
}

int
netnode_ipam_alloc(struct netnode_ipam *ip, const char *owner, struct in_addr *out,
                   struct shoal_err *err)
{
	uint32_t size, first = 2, last, span, h;
	ssize_t have = lease_of(ip, owner);
	char cidr[32];

	if (have >= 0) {
		*out = ip->v[have].addr;
		return 0;
	}
	if (ip->net.s_addr == 0)
		return err_set(err, 0, "no subnet to allocate from yet");
	if (strlen(owner) >= sizeof(ip->v[0].owner))
		return err_set(err, 0, "lease owner %s: too long", owner);
	/* .0 is the network, .1 the gateway on the bridge, the last one the broadcast. */
	size = host_count(ip->prefix);
	last = size - 2;
	span = last - first + 1;
	h = ip->next < first || ip->next > last ? first : ip->next;
	for (uint32_t k = 0; k < span; k++, h = h == last ? first : h + 1) {
		struct in_addr a = addr_at(ip->net, h);
		if (netnode_ipam_owner(ip, a) != NULL)
			continue;
		lease_add(ip, owner, a);
		ip->next = h == last ? first : h + 1;
		if (ipam_save(ip, err) == -1) {
			ip->n--;
			return -1;
		}
		*out = a;
		return 0;
	}
	fmt_cidr(ip->net, ip->prefix, cidr, sizeof(cidr));
	return err_set(err, 0, "no free address in %s: all %u are held", cidr, span);
}

int
netnode_ipam_hold(struct netnode_ipam *ip, const char *owner, struct in_addr addr,
                  struct shoal_err *err)
{
	ssize_t mine = lease_of(ip, owner);

	if (mine >= 0 && ip->v[mine].addr.s_addr == addr.s_addr)
		return 0;
	if (strlen(owner) >= sizeof(ip->v[0].owner))
		return err_set(err, 0, "lease owner %s: too long", owner);
	for (size_t i = 0; i < ip->n;) {
		if (strcmp(ip->v[i].owner, owner) == 0 || ip->v[i].addr.s_addr == addr.s_addr)
			lease_remove_at(ip, i);
		else
			i++;
	}
	lease_add(ip, owner, addr);
	return ipam_save(ip, err);
}

int
netnode_ipam_release(struct netnode_ipam *ip, const char *owner, struct shoal_err *err)
{
	ssize_t i = lease_of(ip, owner);

	if (i < 0)
		return 0;
	lease_remove_at(ip, (size_t)i);
	return ipam_save(ip, err);
}

void
netnode_ipam_free(struct netnode_ipam *ip)
{
	free(ip->path);
	free(ip->v);
	memset(ip, 0, sizeof(*ip));
}

/* ---- route diff ---- */

static const struct netnode_route *
route_find(const struct netnode_route *v, size_t n, const struct netnode_route *r)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].dst.s_addr == r->dst.s_addr && v[i].prefix == r->prefix)
			return &v[i];
	return NULL;
}

size_t
netnode_route_diff(const struct netnode_route *cur, size_t ncur, const struct netnode_route *want,
                   size_t nwant, struct netnode_route_op *ops)
{
	size_t k = 0;

	for (size_t i = 0; i < ncur; i++)
		if (route_find(want, nwant, &cur[i]) == NULL)
			ops[k++] = (struct netnode_route_op){NETNODE_ROUTE_DEL, cur[i]};
	for (size_t i = 0; i < nwant; i++) {
		const struct netnode_route *c = route_find(cur, ncur, &want[i]);
		/* A destination listed twice: the first one wins. */
		if (route_find(want, i, &want[i]) != NULL)
			continue;
		if (c == NULL)
			ops[k++] = (struct netnode_route_op){NETNODE_ROUTE_ADD, want[i]};
		else if (c->via.s_addr != want[i].via.s_addr)
			ops[k++] = (struct netnode_route_op){NETNODE_ROUTE_CHANGE, want[i]};
	}
	return k;
}

/* ---- processes (masquerade only) ---- */

static bool
in_path(const char *name)
{
	const char *path = getenv("PATH");

	if (path == NULL || path[0] == '\0')
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		const char *colon = strchrnul(p, ':');
		cleanup_free char *f = xasprintf("%.*s/%s", (int)(colon - p), p, name);
		if (access(f, X_OK) == 0)
			return true;
		p = *colon ? colon + 1 : colon;
	}
	return false;
}

/* Run argv (PATH lookup), feeding input on stdin when not NULL; 0 when it exits 0. Output goes
 * to /dev/null: callers test the status. */
static int
run_quiet(char *const argv[], const char *input, struct shoal_err *err)
{
	int in[2] = {-1, -1}, status;
	pid_t pid;

	if (input && pipe2(in, O_CLOEXEC) == -1)
		return err_set(err, errno, "pipe");
	pid = fork();
	if (pid == -1) {
		err_set(err, errno, "fork");
		goto out;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null == -1 || dup2(input ? in[0] : null, 0) == -1 || dup2(null, 1) == -1 ||
		    dup2(null, 2) == -1)
			_exit(126);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (input) {
		close(in[0]);
		in[0] = -1;
		(void)!write(in[1], input, strlen(input));
		close(in[1]);
		in[1] = -1;
	}
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			return err_set(err, errno, "wait for %s", argv[0]);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return err_set(err, 0, "%s %s %s exited with %d", argv[0], argv[1] ? argv[1] : "",
	               argv[1] && argv[2] ? argv[2] : "",
	               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
out:
	if (in[0] >= 0)
		close(in[0]);
	if (in[1] >= 0)
		close(in[1]);
	return -1;
}

/* The POSTROUTING rule sending the node's containers' traffic to our chain. */
static int
masq_jump(const char *op, const char *subnet, struct shoal_err *err)
{
	char *argv[] = {"iptables",    "-w",         "-t",           "nat",      (char *)op,
	                "POSTROUTING", "-s",         (char *)subnet, "-m",       "comment",
	                "--comment",   MASQ_COMMENT, "-j",           MASQ_CHAIN, NULL};
	return run_quiet(argv, NULL, err);
}

/* Fill our chain: traffic to any container subnet goes out unchanged (no NAT inside the
 * cluster), the rest is masqueraded. One iptables-restore: one process, atomic. */
static int
masq_fill(const char *excluded, struct shoal_err *err)
{
	char *argv[] = {"iptables-restore", "-w", "--noflush", NULL};
	size_t len = 64 + strlen(excluded) * 4;
	cleanup_free char *in = xmalloc(len + 256);
	char *p = in;
	cleanup_free char *copy = xstrdup(excluded);
	char *save = NULL;

	/* Declaring a user chain with --noflush flushes it. */
	p += sprintf(p, "*nat\n:" MASQ_CHAIN " - [0:0]\n");
	for (char *s = strtok_r(copy, " ", &save); s; s = strtok_r(NULL, " ", &save))
		p += sprintf(p, "-A " MASQ_CHAIN " -d %s -j RETURN\n", s);
	sprintf(p, "-A " MASQ_CHAIN " -j MASQUERADE\nCOMMIT\n");
	return run_quiet(argv, in, err);
}

static int
masq_setup(struct netnode *nn, struct shoal_err *err)
{
	struct shoal_err ignore;
	char *check_argv[] = {"iptables", "-w", "-t", "nat", "-N", MASQ_CHAIN, NULL};

	(void)run_quiet(check_argv, NULL, &ignore); /* exists already: fine */
	if (masq_jump("-C", nn->subnet, &ignore) == -1 && masq_jump("-A", nn->subnet, err) == -1)
		return err_prefix(err, "masquerade");
	if (masq_fill(nn->masq_subnets ? nn->masq_subnets : nn->subnet, err) == -1)
		return err_prefix(err, "masquerade");
	return 0;
}

static void
masq_cleanup(const char *subnet)
{
	struct shoal_err ignore;
	char *flush[] = {"iptables", "-w", "-t", "nat", "-F", MASQ_CHAIN, NULL};
	char *del[] = {"iptables", "-w", "-t", "nat", "-X", MASQ_CHAIN, NULL};

	for (int i = 0; i < 16 && masq_jump("-D", subnet, &ignore) == 0; i++)
		;
	(void)run_quiet(flush, NULL, &ignore);
	(void)run_quiet(del, NULL, &ignore);
}

/* ---- node state (netnode.json) ---- */

struct node_state {
	char subnet[32];
	bool forward_changed; /* ip_forward was 0 before setup */
	bool masquerade;
};

static char *
state_path(const char *data_dir)
{
	return xasprintf("%s/netnode.json", data_dir);
}

static void
state_load(const char *data_dir, struct node_state *st)
{
	cleanup_free char *path = state_path(data_dir);
	json_t *o = json_load_file(path, 0, NULL);
	const char *s;

	memset(st, 0, sizeof(*st));
	if (o == NULL)
		return;
	s = json_string_value(json_object_get(o, "subnet"));
	snprintf(st->subnet, sizeof(st->subnet), "%s", s ? s : "");
	st->forward_changed = json_is_true(json_object_get(o, "forward_changed"));
	st->masquerade = json_is_true(json_object_get(o, "masquerade"));
	json_decref(o);
}

static int
state_save(const char *data_dir, const struct node_state *st, struct shoal_err *err)
{
	cleanup_free char *path = state_path(data_dir);
	json_t *o = json_pack("{s:s, s:b, s:b}", "subnet", st->subnet, "forward_changed",
	                      st->forward_changed, "masquerade", st->masquerade);
	char *text = json_dumps(o, JSON_INDENT(1));
	int rc = util_write_file_atomic(path, text, strlen(text), 0600, err);

	free(text);
	json_decref(o);
	return rc;
}

/* ---- the node ---- */

int
netnode_init(struct netnode *nn, const char *data_dir, const char *node_name, bool masquerade,
             struct shoal_err *err)
{
	cleanup_free char *path = xasprintf("%s/ipam.json", data_dir);

	memset(nn, 0, sizeof(*nn));
	if (masquerade && (!in_path("iptables") || !in_path("iptables-restore")))
		return err_set(err, 0,
		               "--masquerade needs iptables and iptables-restore, which are not "
		               "installed (not in PATH); install iptables or run without "
		               "--masquerade");
	nn->data_dir = xstrdup(data_dir);
	nn->node_name = xstrdup(node_name);
	nn->masquerade = masquerade;
	snprintf(nn->error, sizeof(nn->error), "the node is not registered yet");
	if (netnode_ipam_load(&nn->ipam, path, err) == -1) {
		netnode_free(nn);
		return err_prefix(err, "ipam");
	}
	return 0;
}

void
netnode_free(struct netnode *nn)
{
	free(nn->data_dir);
	free(nn->node_name);
	free(nn->masq_subnets);
	netnode_ipam_free(&nn->ipam);
	memset(nn, 0, sizeof(*nn));
}

/* The bridge, made (and marked as ours) when missing, with the gateway address, up. */
static int
setup_bridge(struct netlink *nl, struct netnode *nn, const struct node_state *old,
             struct shoal_err *err)
{
	struct netlink_link br;

	if (netlink_link_get(nl, NETNODE_BRIDGE, &br, err) == -1) {
		if (err->code != ENODEV)
			return -1;
		if (netlink_bridge_create(nl, NETNODE_BRIDGE, err) == -1 ||
		    netlink_link_get(nl, NETNODE_BRIDGE, &br, err) == -1 ||
		    netlink_link_set(nl, br.index, -1, -1, NETNODE_BRIDGE_ALIAS, err) == -1)
			return -1;
		shoal_log(LOG_INFO, "network: bridge %s created", NETNODE_BRIDGE);
	} else if (strcmp(br.kind, "bridge") != 0) {
		return err_set(err, 0, "%s exists and is not a bridge", NETNODE_BRIDGE);
	}
	/* A new subnet (the scheduler lost its store): the old gateway address goes. */
	if (old->subnet[0] && strcmp(old->subnet, nn->subnet) != 0) {
		struct in_addr onet;
		int oprefix;
		struct shoal_err ignore;
		if (parse_subnet(old->subnet, &onet, &oprefix, &ignore) == 0)
			(void)netlink_addr_del(nl, br.index, addr_at(onet, 1), oprefix, &ignore);
		shoal_log(LOG_WARNING, "network: subnet changed from %s to %s", old->subnet,
		          nn->subnet);
	}
	/* Pin the bridge's MAC (the gateway's, cached by every container): left to the kernel
	 * it follows the lowest MAC among the ports, so a container starting or stopping could
	 * change it, and the other containers' answers went to the old one until they
	 * re-resolved the gateway: requests through the proxy hung for seconds during updates. */
	if (netlink_link_set_mac(nl, br.index, br.mac, err) == -1)
		return -1;
	if (netlink_addr_add(nl, br.index, nn->gateway, nn->prefix, err) == -1 &&
	    err->code != EEXIST)
		return -1;
	if (netlink_link_set(nl, br.index, 1, -1, NULL, err) == -1)
		return -1;
	/* Every service VIP is this node's own address (the route goes with the bridge), so the
	 * proxy listens on it and a container reaches it through its gateway. */
	struct netlink_route vip = {.dst = {htonl(ADDR_VIP_NET)},
	                            .prefix = ADDR_VIP_PREFIX,
	                            .oif = br.index,
	                            .protocol = NETNODE_RTPROT,
	                            .local = true};
	if (netlink_route_add(nl, &vip, true, err) == -1)
		return err_prefix(err, "service addresses");
	return 0;
}

int
netnode_setup(struct netnode *nn, const char *subnet, struct shoal_err *err)
{
	struct netlink nl;
	struct node_state old, st;
	char fwd[8];
	int rc = -1;

	nn->ready = false;
	if (parse_subnet(subnet, &nn->net, &nn->prefix, err) == -1)
		goto fail;
	snprintf(nn->subnet, sizeof(nn->subnet), "%s", subnet);
	nn->gateway = addr_at(nn->net, 1);
	state_load(nn->data_dir, &old);
	st = old;
	snprintf(st.subnet, sizeof(st.subnet), "%s", subnet);
	if (netlink_open(&nl, err) == -1)
		goto fail;
	rc = setup_bridge(&nl, nn, &old, err);
	netlink_close(&nl);
	if (rc == -1) {
		err_prefix(err, "bridge %s", NETNODE_BRIDGE);
		goto fail;
	}
	rc = -1;
	if (netlink_sysctl_get("net.ipv4.ip_forward", fwd, sizeof(fwd), err) == -1)
		goto fail;
	if (strcmp(fwd, "1") != 0) {
		if (netlink_sysctl_set("net.ipv4.ip_forward", "1", err) == -1)
			goto fail;
		st.forward_changed = true;
	}
	st.masquerade = st.masquerade || nn->masquerade;
	/* Recorded before the rule exists: cleanup may then try to remove a missing rule, never
	 * miss one that exists. */
	if (state_save(nn->data_dir, &st, err) == -1)
		goto fail;
	if (nn->masquerade && masq_setup(nn, err) == -1)
		goto fail;
	if (netnode_ipam_set_subnet(&nn->ipam, subnet, err) == -1) {
		err_prefix(err, "ipam");
		goto fail;
	}
	nn->ready = true;
	nn->error[0] = '\0';
	return 0;
fail:
	snprintf(nn->error, sizeof(nn->error), "%s", err->msg);
	return -1;
}

int
netnode_alloc(struct netnode *nn, const char *owner, char ip[16], char cidr[20], char gateway[16],
              struct shoal_err *err)
{
	struct in_addr a;

	if (!nn->ready)
		return err_set(err, 0, "the node's container network is not set up: %s", nn->error);
	if (netnode_ipam_alloc(&nn->ipam, owner, &a, err) == -1)
		return -1;
	inet_ntop(AF_INET, &a, ip, 16);
	fmt_cidr(a, nn->prefix, cidr, 20);
	inet_ntop(AF_INET, &nn->gateway, gateway, 16);
	return 0;
}

int
netnode_hold(struct netnode *nn, const char *owner, const char *ip, struct shoal_err *err)
{
	struct in_addr a;

	if (inet_pton(AF_INET, ip, &a) != 1)
		return err_set(err, 0, "\"%s\" is not an IPv4 address", ip);
	return netnode_ipam_hold(&nn->ipam, owner, a, err);
}

void
netnode_release(struct netnode *nn, const char *owner)
{
	struct shoal_err err;

	if (netnode_ipam_release(&nn->ipam, owner, &err) == -1)
		shoal_log(LOG_ERR, "network: release the address of %s: %s", owner, err.msg);
}

/* ---- routes ---- */

static void
route_str(const struct netnode_route *r, char *buf, size_t len)
{
	char d[INET_ADDRSTRLEN], v[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &r->dst, d, sizeof(d));
	inet_ntop(AF_INET, &r->via, v, sizeof(v));
	snprintf(buf, len, "%s/%d via %s", d, r->prefix, v);
}

static int
apply_op(struct netlink *nl, const struct netnode_route_op *op, struct shoal_err *err)
{
	struct netlink_route r = {
	    .dst = op->r.dst, .prefix = op->r.prefix, .gw = op->r.via, .protocol = NETNODE_RTPROT};
	char what[64];

	route_str(&op->r, what, sizeof(what));
	switch (op->action) {
	case NETNODE_ROUTE_DEL:
		if (netlink_route_del(nl, &r, err) == -1 && err->code != ESRCH)
			return -1;
		shoal_log(LOG_INFO, "network: route %s removed (node left)", what);
		return 0;
	case NETNODE_ROUTE_CHANGE:
		if (netlink_route_add(nl, &r, true, err) == -1)
			return -1;
		shoal_log(LOG_INFO, "network: route changed to %s", what);
		return 0;
	case NETNODE_ROUTE_ADD:
		if (netlink_route_add(nl, &r, false, err) == -1) {
			if (err->code == EEXIST)
				err_set(
				    err, 0,
				    "route %s: a route for that subnet exists that shoal did not "
				    "make; left alone",
				    what);
			return -1;
		}
		shoal_log(LOG_INFO, "network: route %s added", what);
		return 0;
	}
	return 0;
}

int
netnode_sync_routes(struct netnode *nn, Shoal__NodeRoute *const *nodes, size_t n,
                    struct shoal_err *err)
{
	struct netlink nl;
	struct netlink_route *cur_nl = NULL;
	size_t ncur = 0, nwant = 0, nops;
	struct netnode_route *cur = NULL, *want = xcalloc(n + 1, sizeof(*want));
	struct netnode_route_op *ops = NULL;
	cleanup_free char *excluded = NULL;
	int rc = 0;

	/* A scheduler that sends no node list says nothing about routes (the list always holds
	 * the receiving node itself): keep what is there. */
	if (n == 0 || !nn->ready) {
		free(want);
		return 0;
	}
	excluded = xstrdup(nn->subnet);
	for (size_t i = 0; i < n; i++) {
		const Shoal__NodeRoute *r = nodes[i];
		struct netnode_route w;
		struct shoal_err e;
		if (r->name && strcmp(r->name, nn->node_name) == 0)
			continue;
		if (r->subnet == NULL || r->subnet[0] == '\0')
			continue; /* a node without a subnet yet */
		if (parse_subnet(r->subnet, &w.dst, &w.prefix, &e) == -1 || r->address == NULL ||
		    inet_pton(AF_INET, r->address, &w.via) != 1) {
			shoal_log(LOG_WARNING, "network: node %s: unusable route %s via %s",
			          r->name ? r->name : "?", r->subnet, r->address ? r->address : "");
			continue;
		}
		if (w.dst.s_addr == nn->net.s_addr)
			continue; /* our own subnet is on the bridge */
		want[nwant++] = w;
		char *x = xasprintf("%s %s", excluded, r->subnet);
		free(excluded);
		excluded = x;
	}
	if (netlink_open(&nl, err) == -1)
		goto out_err;
	if (netlink_route_list(&nl, NETNODE_RTPROT, &cur_nl, &ncur, err) == -1) {
		netlink_close(&nl);
		goto out_err;
	}
	cur = xcalloc(ncur + 1, sizeof(*cur));
	for (size_t i = 0; i < ncur; i++) {
		cur[i].dst = cur_nl[i].dst;
		cur[i].prefix = cur_nl[i].prefix;
		cur[i].via = cur_nl[i].gw;
	}
	ops = xcalloc(ncur + nwant + 1, sizeof(*ops));
	nops = netnode_route_diff(cur, ncur, want, nwant, ops);
	for (size_t i = 0; i < nops; i++) {
		struct shoal_err e;
		if (apply_op(&nl, &ops[i], &e) == -1) {
			/* Keep going: one bad route must not keep the others away. */
			shoal_log(LOG_WARNING, "network: %s", e.msg);
			if (rc == 0)
				*err = e;
			rc = -1;
		}
	}
	netlink_close(&nl);
	if (nn->masquerade && (nn->masq_subnets == NULL || strcmp(nn->masq_subnets, excluded))) {
		struct shoal_err e;
		if (masq_fill(excluded, &e) == -1) {
			shoal_log(LOG_WARNING, "network: masquerade: %s", e.msg);
		} else {
			free(nn->masq_subnets);
			nn->masq_subnets = steal_ptr(&excluded);
		}
	}
	goto out;
out_err:
	rc = -1;
out:
	free(cur_nl);
	free(cur);
	free(want);
	free(ops);
	return rc;
}

/* ---- cleanup ---- */

int
netnode_cleanup(const char *data_dir, struct shoal_err *err)
{
	struct netlink nl;
	struct node_state st;
	struct netlink_route *routes = NULL;
	struct netlink_link *links = NULL, br;
	size_t nr = 0, nlinks = 0;
	cleanup_free char *ipam = xasprintf("%s/ipam.json", data_dir);
	cleanup_free char *state = state_path(data_dir);
	struct shoal_err e;
	int rc = 0, bridge_index = 0;

#define KEEP_FIRST(e)                                                                              \
	do {                                                                                       \
		if (rc == 0)                                                                       \
			*err = (e);                                                                \
		rc = -1;                                                                           \
	} while (0)

	state_load(data_dir, &st);
	if (netlink_open(&nl, err) == -1)
		return -1;
	/* Routes: exactly those with our protocol number. */
	if (netlink_route_list(&nl, NETNODE_RTPROT, &routes, &nr, &e) == -1)
		KEEP_FIRST(e);
	for (size_t i = 0; i < nr; i++)
		if (netlink_route_del(&nl, &routes[i], &e) == -1 && e.code != ESRCH)
			KEEP_FIRST(e);
	free(routes);
	/* Links: the bridge if it carries our mark, and veth ends the runtime marked that are
	 * still plugged into it (containers of a killed shim). */
	if (netlink_link_get(&nl, NETNODE_BRIDGE, &br, &e) == 0 &&
	    strcmp(br.alias, NETNODE_BRIDGE_ALIAS) == 0)
		bridge_index = br.index;
	if (bridge_index && netlink_link_list(&nl, &links, &nlinks, &e) == -1)
		KEEP_FIRST(e);
	for (size_t i = 0; i < nlinks; i++)
		if (links[i].master == bridge_index &&
		    strcmp(links[i].alias, NETNS_VETH_ALIAS) == 0 &&
		    netlink_link_del(&nl, links[i].index, &e) == -1 && e.code != ENODEV)
			KEEP_FIRST(e);
	free(links);
	if (bridge_index && netlink_link_del(&nl, bridge_index, &e) == -1 && e.code != ENODEV)
		KEEP_FIRST(e);
	netlink_close(&nl);
	if (st.masquerade && st.subnet[0])
		masq_cleanup(st.subnet);
	if (st.forward_changed && netlink_sysctl_set("net.ipv4.ip_forward", "0", &e) == -1)
		KEEP_FIRST(e);
	if (unlink(ipam) == -1 && errno != ENOENT) {
		err_set(&e, errno, "remove %s", ipam);
		KEEP_FIRST(e);
	}
	if (unlink(state) == -1 && errno != ENOENT) {
		err_set(&e, errno, "remove %s", state);
		KEEP_FIRST(e);
	}
#undef KEEP_FIRST
	return rc;
}
