/*
 * Unit tests for agent/netnode: the address manager (leases, persistence, exhaustion, never two
 * holders of one address), the route diff, and, as root, the whole node network (bridge,
 * routes, cleanup) in a private network namespace of this test process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/netnode.h"
#include "err.h"
#include "runtime/netlink.h"
#include "runtime/netns.h"
#include "shoal.pb-c.h"
#include "util.h"

static char tmpdir[64];

static int
setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/netnode_test.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
remove_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
ipam_path(void)
{
	return xasprintf("%s/ipam.json", tmpdir);
}

/* A fresh IPAM at PATH (no record yet) handing out addresses of SUBNET. */
static void
ipam_open(struct netnode_ipam *ip, const char *path, const char *subnet)
{
	struct shoal_err err;

	assert_int_equal(netnode_ipam_load(ip, path, &err), 0);
	assert_int_equal(netnode_ipam_set_subnet(ip, subnet, &err), 0);
}

static const char *
ntoa(struct in_addr a)
{
	static char buf[4][INET_ADDRSTRLEN];
	static int k;

	k = (k + 1) % 4;
	return inet_ntop(AF_INET, &a, buf[k], sizeof(buf[k]));
}

static struct in_addr
aton(const char *s)
{
	struct in_addr a;
	assert_int_equal(inet_pton(AF_INET, s, &a), 1);
	return a;
}

static void
test_ipam_allocates_after_the_gateway_and_is_idempotent(void **state)
{
	cleanup_free char *path = ipam_path();
	struct netnode_ipam ip;
	struct shoal_err err;
	struct in_addr a;

	(void)state;
	assert_int_equal(netnode_ipam_load(&ip, path, &err), 0);
	/* No subnet yet: a clear refusal. */
	assert_int_equal(netnode_ipam_alloc(&ip, "t1", &a, &err), -1);
	assert_string_equal(err.msg, "no subnet to allocate from yet");
	assert_int_equal(netnode_ipam_set_subnet(&ip, "10.244.1.0/24", &err), 0);
	assert_int_equal(netnode_ipam_alloc(&ip, "t1", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.1.2");
	assert_int_equal(netnode_ipam_alloc(&ip, "t2", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.1.3");
	/* The same owner asking again keeps its address. */
	assert_int_equal(netnode_ipam_alloc(&ip, "t1", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.1.2");
	assert_string_equal(netnode_ipam_owner(&ip, aton("10.244.1.3")), "t2");
	assert_null(netnode_ipam_owner(&ip, aton("10.244.1.1")));
	/* A subnet with host bits is refused. */
	assert_int_equal(netnode_ipam_set_subnet(&ip, "10.244.1.7/24", &err), -1);
	assert_non_null(strstr(err.msg, "host bits"));
	netnode_ipam_free(&ip);
	unlink(path);
}

static void
test_ipam_persists_and_reloads(void **state)
{
	cleanup_free char *path = ipam_path();
	struct netnode_ipam ip, again;
	struct shoal_err err;
	struct in_addr a;

	(void)state;
	ipam_open(&ip, path, "10.244.7.0/24");
	for (int i = 0; i < 3; i++) {
		char owner[16];
		snprintf(owner, sizeof(owner), "t%d", i);
		assert_int_equal(netnode_ipam_alloc(&ip, owner, &a, &err), 0);
	}
	assert_int_equal(netnode_ipam_release(&ip, "t1", &err), 0);
	assert_int_equal(netnode_ipam_release(&ip, "nobody", &err), 0);
	netnode_ipam_free(&ip);

	/* A restarted agent: same leases, and the released address is not handed out next. */
	assert_int_equal(netnode_ipam_load(&again, path, &err), 0);
	assert_int_equal(again.n, 2);
	assert_string_equal(netnode_ipam_owner(&again, aton("10.244.7.2")), "t0");
	assert_null(netnode_ipam_owner(&again, aton("10.244.7.3")));
	assert_string_equal(netnode_ipam_owner(&again, aton("10.244.7.4")), "t2");
	assert_int_equal(netnode_ipam_alloc(&again, "t3", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.7.5");
	/* Setting the same subnet again changes nothing. */
	assert_int_equal(netnode_ipam_set_subnet(&again, "10.244.7.0/24", &err), 0);
	assert_int_equal(again.n, 3);
	netnode_ipam_free(&again);
	unlink(path);
}

static void
test_ipam_exhaustion_and_never_a_held_address(void **state)
{
	cleanup_free char *path = ipam_path();
	struct netnode_ipam ip;
	struct shoal_err err;
	struct in_addr a;
	bool seen[256] = {false};

	(void)state;
	ipam_open(&ip, path, "10.244.3.0/24");
	for (int i = 0; i < 253; i++) {
		char owner[16];
		snprintf(owner, sizeof(owner), "t%d", i);
		assert_int_equal(netnode_ipam_alloc(&ip, owner, &a, &err), 0);
		unsigned host = ntohl(a.s_addr) & 0xff;
		/* .0, .1 (gateway) and .255 are never handed out, nothing twice. */
		assert_true(host >= 2 && host <= 254);
		assert_false(seen[host]);
		seen[host] = true;
	}
	assert_int_equal(netnode_ipam_alloc(&ip, "late", &a, &err), -1);
	assert_string_equal(err.msg, "no free address in 10.244.3.0/24: all 253 are held");
	/* One freed: exactly that one comes back, to the next asker only. */
	assert_int_equal(netnode_ipam_release(&ip, "t98", &err), 0);
	assert_int_equal(netnode_ipam_alloc(&ip, "late", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.3.100");
	assert_int_equal(netnode_ipam_alloc(&ip, "later", &a, &err), -1);
	netnode_ipam_free(&ip);
	unlink(path);
}

static void
test_ipam_hold_wins_over_the_record(void **state)
{
	cleanup_free char *path = ipam_path();
	struct netnode_ipam ip, again;
	struct shoal_err err;
	struct in_addr a;

	(void)state;
	ipam_open(&ip, path, "10.244.2.0/24");
	assert_int_equal(netnode_ipam_alloc(&ip, "a", &a, &err), 0); /* .2 */
	assert_int_equal(netnode_ipam_alloc(&ip, "b", &a, &err), 0); /* .3 */
	/* A re-adopted container holds .2 for task c (ipam.json was stale): c gets it, a not. */
	assert_int_equal(netnode_ipam_hold(&ip, "c", aton("10.244.2.2"), &err), 0);
	assert_string_equal(netnode_ipam_owner(&ip, aton("10.244.2.2")), "c");
	/* A held address outside the allocation order is never handed out. */
	assert_int_equal(netnode_ipam_hold(&ip, "d", aton("10.244.2.4"), &err), 0);
	assert_int_equal(netnode_ipam_alloc(&ip, "e", &a, &err), 0);
	assert_string_equal(ntoa(a), "10.244.2.5");
	netnode_ipam_free(&ip);
	assert_int_equal(netnode_ipam_load(&again, path, &err), 0);
	assert_string_equal(netnode_ipam_owner(&again, aton("10.244.2.2")), "c");
	assert_string_equal(netnode_ipam_owner(&again, aton("10.244.2.4")), "d");
	netnode_ipam_free(&again);
	unlink(path);
}

static void
test_ipam_corrupt_file_is_an_error(void **state)
{
	cleanup_free char *path = ipam_path();
	struct netnode_ipam ip;
	struct shoal_err err;
	FILE *f = fopen(path, "w");

	(void)state;
	fputs("{\"leases\": {\"t1\": \"not an address\"}}", f);
	fclose(f);
	assert_int_equal(netnode_ipam_load(&ip, path, &err), -1);
	assert_non_null(strstr(err.msg, "bad lease of t1"));
	netnode_ipam_free(&ip);
	f = fopen(path, "w");
	fputs("{not json", f);
	fclose(f);
	assert_int_equal(netnode_ipam_load(&ip, path, &err), -1);
	assert_non_null(strstr(err.msg, "ipam.json"));
	netnode_ipam_free(&ip);
	unlink(path);
}

/* ---- routes ---- */

static struct netnode_route
R(const char *dst, const char *via) {
	return (struct netnode_route){aton(dst), 24, aton(via)};
}

static void
test_route_diff_adds_changes_deletes(void **state)
{
	struct netnode_route cur[] = {R("10.244.2.0", "192.168.56.12"),
	                              R("10.244.3.0", "192.168.56.13"),
	                              R("10.244.4.0", "192.168.56.14")};
	struct netnode_route want[] = {R("10.244.2.0", "192.168.56.12"),
	                               R("10.244.3.0", "192.168.56.33"),
	                               R("10.244.5.0", "192.168.56.15")};
	struct netnode_route_op ops[6];
	size_t n;

	(void)state;
	n = netnode_route_diff(cur, 3, want, 3, ops);
	assert_int_equal(n, 3);
	assert_int_equal(ops[0].action, NETNODE_ROUTE_DEL);
	assert_string_equal(ntoa(ops[0].r.dst), "10.244.4.0");
	assert_int_equal(ops[1].action, NETNODE_ROUTE_CHANGE);
	assert_string_equal(ntoa(ops[1].r.dst), "10.244.3.0");
	assert_string_equal(ntoa(ops[1].r.via), "192.168.56.33");
	assert_int_equal(ops[2].action, NETNODE_ROUTE_ADD);
	assert_string_equal(ntoa(ops[2].r.dst), "10.244.5.0");
	/* Nothing to do when equal; everything goes when nothing is wanted. */
	assert_int_equal(netnode_route_diff(cur, 3, cur, 3, ops), 0);
	n = netnode_route_diff(cur, 3, NULL, 0, ops);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ops[i].action, NETNODE_ROUTE_DEL);
	n = netnode_route_diff(NULL, 0, want, 3, ops);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ops[i].action, NETNODE_ROUTE_ADD);
}

static void
test_route_diff_first_of_duplicates_wins(void **state)
{
	struct netnode_route want[] = {R("10.244.2.0", "192.168.56.12"),
	                               R("10.244.2.0", "192.168.56.99")};
	struct netnode_route_op ops[4];

	(void)state;
	assert_int_equal(netnode_route_diff(NULL, 0, want, 2, ops), 1);
	assert_string_equal(ntoa(ops[0].r.via), "192.168.56.12");
}

/* ---- the real thing, in a private network namespace ---- */

static size_t
count_routes(struct netlink *nl, uint8_t proto, const char *dst, const char *via)
{
	struct netlink_route *v = NULL;
	size_t n = 0, hits = 0;
	struct shoal_err err;

	assert_int_equal(netlink_route_list(nl, proto, &v, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		if ((!dst || strcmp(ntoa(v[i].dst), dst) == 0) &&
		    (!via || strcmp(ntoa(v[i].gw), via) == 0))
			hits++;
	free(v);
	return hits;
}

static Shoal__NodeRoute *
node(Shoal__NodeRoute *r, char *name, char *address, char *subnet)
{
	shoal__node_route__init(r);
	r->name = name;
	r->address = address;
	r->subnet = subnet;
	return r;
}

static void
test_setup_routes_cleanup_in_a_private_netns(void **state)
{
	struct netlink nl;
	struct netlink_link l;
	struct netnode nn;
	struct shoal_err err;
	struct netlink_veth v = {.name = "lab0", .peer = "lab1", .peer_netns_fd = -1, .up = true};
	struct netlink_route foreign = {
	    .dst = aton("10.244.9.0"), .prefix = 24, .gw = aton("192.168.56.19"), .protocol = 4};
	Shoal__NodeRoute r[4], *list[4];
	char ip[16], cidr[20], gw[16];

	(void)state;
	if (geteuid() != 0 || unshare(CLONE_NEWNET) == -1)
		skip();
	/* The "lab network": a veth with the node's address, so gateways are reachable. */
	assert_int_equal(netlink_open(&nl, &err), 0);
	assert_int_equal(netlink_veth_create(&nl, &v, &err), 0);
	assert_int_equal(netlink_link_get(&nl, "lab0", &l, &err), 0);
	assert_int_equal(netlink_addr_add(&nl, l.index, aton("192.168.56.11"), 24, &err), 0);

	assert_int_equal(netnode_init(&nn, tmpdir, "node1", false, &err), 0);
	assert_int_equal(netnode_alloc(&nn, "t1", ip, cidr, gw, &err), -1);
	assert_non_null(strstr(err.msg, "not set up"));
	assert_int_equal(netnode_setup(&nn, "10.244.1.0/24", &err), 0);
	assert_int_equal(netnode_setup(&nn, "10.244.1.0/24", &err), 0); /* idempotent */
	assert_int_equal(netlink_link_get(&nl, "shoal0", &l, &err), 0);
	assert_string_equal(l.kind, "bridge");
	assert_string_equal(l.alias, NETNODE_BRIDGE_ALIAS);
	assert_true(l.flags & IFF_UP);
	assert_int_equal(count_routes(&nl, 2 /* kernel */, "10.244.1.0", NULL), 1);
	assert_int_equal(netnode_alloc(&nn, "t1", ip, cidr, gw, &err), 0);
	assert_string_equal(ip, "10.244.1.2");
	assert_string_equal(cidr, "10.244.1.2/24");
	assert_string_equal(gw, "10.244.1.1");

	/* Routes to the others, not to ourselves. */
	list[0] = node(&r[0], "node1", "192.168.56.11", "10.244.1.0/24");
	list[1] = node(&r[1], "node2", "192.168.56.12", "10.244.2.0/24");
	list[2] = node(&r[2], "node3", "192.168.56.13", "10.244.3.0/24");
	assert_int_equal(netnode_sync_routes(&nn, list, 3, &err), 0);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, NULL, NULL), 2);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, "10.244.2.0", "192.168.56.12"), 1);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, "10.244.3.0", "192.168.56.13"), 1);
	/* No node list: nothing changes. */
	assert_int_equal(netnode_sync_routes(&nn, list, 0, &err), 0);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, NULL, NULL), 2);

	/* node2 leaves, node3 moves, node9 claims a subnet someone else routes: that one is
	 * refused and left alone, the rest applied. */
	assert_int_equal(netlink_route_add(&nl, &foreign, false, &err), 0);
	list[1] = node(&r[1], "node3", "192.168.56.23", "10.244.3.0/24");
	list[2] = node(&r[2], "node9", "192.168.56.19", "10.244.9.0/24");
	assert_int_equal(netnode_sync_routes(&nn, list, 3, &err), -1);
	assert_non_null(strstr(err.msg, "shoal did not make"));
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, NULL, NULL), 1);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, "10.244.3.0", "192.168.56.23"), 1);
	assert_int_equal(count_routes(&nl, 4, "10.244.9.0", "192.168.56.19"), 1);

	/* Cleanup: ours gone, the foreign route and the lab veth stay. */
	netnode_free(&nn);
	assert_int_equal(netnode_cleanup(tmpdir, &err), 0);
	assert_int_equal(netlink_link_get(&nl, "shoal0", &l, &err), -1);
	assert_int_equal(err.code, ENODEV);
	assert_int_equal(count_routes(&nl, NETNODE_RTPROT, NULL, NULL), 0);
	assert_int_equal(count_routes(&nl, 4, "10.244.9.0", NULL), 1);
	assert_int_equal(netlink_link_get(&nl, "lab0", &l, &err), 0);
	cleanup_free char *path = ipam_path();
	assert_int_equal(access(path, F_OK), -1);
	netlink_close(&nl);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipam_allocates_after_the_gateway_and_is_idempotent),
	    cmocka_unit_test(test_ipam_persists_and_reloads),
	    cmocka_unit_test(test_ipam_exhaustion_and_never_a_held_address),
	    cmocka_unit_test(test_ipam_hold_wins_over_the_record),
	    cmocka_unit_test(test_ipam_corrupt_file_is_an_error),
	    cmocka_unit_test(test_route_diff_adds_changes_deletes),
	    cmocka_unit_test(test_route_diff_first_of_duplicates_wins),
	    cmocka_unit_test(test_setup_routes_cleanup_in_a_private_netns),
	};
	return cmocka_run_group_tests_name("netnode", tests, setup_dir, remove_dir);
}
