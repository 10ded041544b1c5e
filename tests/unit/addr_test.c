/*
 * Unit tests for common/addr, and the two places that use it: which task addresses the
 * scheduler accepts from a node (scheduler/nodes) and which backends an agent's proxy takes
 * from an Endpoints table (agent/session). A worker-token holder chooses these strings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "addr.h"
#include "agent/session.h"
#include "err.h"
#include "scheduler/nodes.h"

static void
test_parse(void **state)
{
	uint32_t a;

	(void)state;
	assert_true(addr_parse4("10.244.1.7", &a));
	assert_int_equal(a, 0x0af40107);
	/* Only dotted quads: the short and octal spellings resolvers accept are refused. */
	assert_false(addr_parse4("127.1", &a));
	assert_false(addr_parse4("0x7f.0.0.1", &a));
	assert_false(addr_parse4("10.244.1.7 ", &a));
	assert_false(addr_parse4("", &a));
	assert_false(addr_parse4("::1", &a));
	assert_false(addr_parse4(NULL, &a));
}

static void
test_backend_refusal(void **state)
{
	(void)state;
	assert_null(addr_backend_refusal_text("10.244.1.7"));
	assert_null(addr_backend_refusal_text("192.168.56.11"));
	assert_null(addr_backend_refusal_text("8.8.8.8"));
	assert_string_equal(addr_backend_refusal_text("127.0.0.1"), "loopback");
	assert_string_equal(addr_backend_refusal_text("127.255.0.9"), "loopback");
	assert_string_equal(addr_backend_refusal_text("169.254.169.254"), "link-local");
	assert_string_equal(addr_backend_refusal_text("224.0.0.1"), "multicast");
	assert_string_equal(addr_backend_refusal_text("239.255.255.250"), "multicast");
	assert_string_equal(addr_backend_refusal_text("0.0.0.0"), "unspecified");
	assert_string_equal(addr_backend_refusal_text("0.1.2.3"), "unspecified");
	assert_string_equal(addr_backend_refusal_text("255.255.255.255"), "broadcast");
	assert_string_equal(addr_backend_refusal_text("240.0.0.1"), "reserved");
	assert_string_equal(addr_backend_refusal_text("localhost"), "not an IPv4 address");
	/* The agent's filter of Endpoints is the same table. */
	assert_string_equal(session_backend_refusal("127.0.0.1"), "loopback");
	assert_string_equal(session_backend_refusal("169.254.1.1"), "link-local");
	assert_null(session_backend_refusal("10.244.2.5"));
}

/* Node n1 holds 10.244.1.0/24, n2 10.244.2.0/24 (no store needed: nothing is persisted). */
static void
two_nodes(struct nodes *ns, struct node *n1, struct node *n2)
{
	struct shoal_err err;

	assert_int_equal(nodes_init(ns, "10.244.0.0/16", &err), 0);
	memset(n1, 0, sizeof(*n1));
	memset(n2, 0, sizeof(*n2));
	n1->name = "node1";
	n1->address = "192.168.56.11";
	n1->subnet_index = 1;
	n2->name = "node2";
	n2->address = "192.168.56.12";
	n2->subnet_index = 2;
}

static void
test_task_ip(void **state)
{
	struct nodes ns;
	struct node n1, n2;
	struct shoal_err err;

	(void)state;
	two_nodes(&ns, &n1, &n2);
	/* Its own /24, from .2 (.1 is its bridge) to .254. */
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.2", &err), 0);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.254", &err), 0);
	assert_int_equal(nodes_check_task_ip(&ns, &n2, false, "10.244.2.77", &err), 0);
	/* No address in a report changes nothing. */
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "", &err), 0);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, NULL, &err), 0);

	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "127.0.0.1", &err), -1);
	assert_string_equal(err.msg, "container_ip 127.0.0.1 is a loopback address");
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "169.254.169.254", &err), -1);
	assert_string_equal(err.msg, "container_ip 169.254.169.254 is a link-local address");
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "224.0.0.5", &err), -1);
	/* Another node's containers. */
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.2.5", &err), -1);
	assert_string_equal(
	    err.msg, "container_ip 10.244.2.5 is outside node node1's containers 10.244.1.0/24");
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.0", &err), -1);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.1", &err), -1);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.255", &err), -1);
	/* Anywhere else, even another node's address. */
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "192.168.56.12", &err), -1);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "8.8.8.8", &err), -1);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "10.244.1.7:80", &err), -1);
	assert_string_equal(err.msg, "container_ip \"10.244.1.7:80\" is not an IPv4 address");
	/* The node's own address: for a host-network task only. */
	assert_int_equal(nodes_check_task_ip(&ns, &n1, false, "192.168.56.11", &err), -1);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, true, "192.168.56.11", &err), 0);
	assert_int_equal(nodes_check_task_ip(&ns, &n1, true, "192.168.56.12", &err), -1);
	assert_string_equal(err.msg, "container_ip 192.168.56.12 is outside node node1's "
	                             "containers 10.244.1.0/24 (and not its address)");
	nodes_free(&ns);
}

/* A node that registered a loopback address gets no loopback backend out of it either. */
static void
test_task_ip_loopback_node(void **state)
{
	struct nodes ns;
	struct node n1, n2;
	struct shoal_err err;

	(void)state;
	two_nodes(&ns, &n1, &n2);
	n1.address = "127.0.0.1";
	assert_int_equal(nodes_check_task_ip(&ns, &n1, true, "127.0.0.1", &err), -1);
	assert_string_equal(err.msg, "container_ip 127.0.0.1 is a loopback address");
	nodes_free(&ns);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_backend_refusal),
	    cmocka_unit_test(test_task_ip),
	    cmocka_unit_test(test_task_ip_loopback_node),
	};
	return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
