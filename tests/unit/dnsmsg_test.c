/*
 * Unit tests for common/dnsmsg: what the agent's resolver answers, forwards and drops.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "dnsmsg.h"
#include "util.h"

/* A query for name (dotted) of type qtype, into q; returns its length. */
static size_t
query(uint8_t *q, const char *name, uint16_t qtype)
{
	size_t off = 12;
	const char *p = name;

	memset(q, 0, 12);
	q[0] = 0xab;
	q[1] = 0xcd;
	q[2] = 0x01; /* RD */
	q[5] = 1;
	while (*p) {
		size_t l = strcspn(p, ".");
		q[off++] = (uint8_t)l;
		memcpy(q + off, p, l);
		off += l;
		p += l;
		if (*p == '.')
			p++;
	}
	q[off++] = 0;
	q[off++] = (uint8_t)(qtype >> 8);
	q[off++] = (uint8_t)qtype;
	q[off++] = 0;
	q[off++] = 1;
	return off;
}

static struct dnsmsg_table
table(void)
{
	struct dnsmsg_table t = {xcalloc(2, sizeof(struct dnsmsg_service)), 2};

	t.v[0].name = xstrdup("web");
	inet_pton(AF_INET, "192.168.1.1", &t.v[0].addr);
	t.v[0].ntasks = 3;
	t.v[0].tasks = xcalloc(3, sizeof(struct in_addr));
	inet_pton(AF_INET, "10.244.1.2", &t.v[0].tasks[0]);
	inet_pton(AF_INET, "10.244.2.2", &t.v[0].tasks[1]);
	inet_pton(AF_INET, "10.244.3.2", &t.v[0].tasks[2]);
	t.v[1].name = xstrdup("db");
	inet_pton(AF_INET, "10.96.1.2", &t.v[1].addr);
	dnsmsg_table_sort(&t);
	return t;
}

static int
rcode(const uint8_t *r)
{
	return r[3] & 15;
}

static int
ancount(const uint8_t *r)
{
	return r[6] << 8 | r[7];
}

static void
test_service_name(void **state)
{
	struct dnsmsg_table t = table();
	uint8_t q[300], r[DNSMSG_UDP_MAX];
	size_t ql, rl;
	const char *names[] = {"web", "WEB", "web.shoal", "Web.Shoal"};

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		ql = query(q, names[i], 1);
		assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
		assert_int_equal(rcode(r), 0);
		assert_int_equal(ancount(r), 1);
		assert_int_equal(rl, ql + 16);
		/* id echoed, QR and AA set, the question as asked. */
		assert_memory_equal(r, q, 2);
		assert_true(r[2] & 0x80);
		assert_memory_equal(r + 12, q + 12, ql - 12);
		assert_memory_equal(r + rl - 4, "\xc0\xa8\x01\x01", 4);
	}
	dnsmsg_table_clear(&t);
}

static void
test_tasks_rotate(void **state)
{
	struct dnsmsg_table t = table();
	uint8_t q[300], r[DNSMSG_UDP_MAX];
	size_t ql = query(q, "tasks.web", 1), rl;

	(void)state;
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 1), DNSMSG_REPLY);
	assert_int_equal(ancount(r), 3);
	assert_memory_equal(r + ql + 12, "\x0a\xf4\x02\x02", 4);
	/* A service without tasks: the name exists, no address. */
	ql = query(q, "tasks.db", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_int_equal(rcode(r), 0);
	assert_int_equal(ancount(r), 0);
	/* Without an address of its own, NAME is its tasks. */
	struct dnsmsg_service *db = strcmp(t.v[0].name, "db") == 0 ? &t.v[0] : &t.v[1];
	db->addr.s_addr = 0;
	db->ntasks = 1;
	db->tasks = xcalloc(1, sizeof(struct in_addr));
	inet_pton(AF_INET, "192.168.56.12", &db->tasks[0]);
	ql = query(q, "db", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_int_equal(ancount(r), 1);
	assert_memory_equal(r + rl - 4, "\xc0\xa8\x38\x0c", 4);
	dnsmsg_table_clear(&t);
}

static void
test_unknown_and_other_types(void **state)
{
	struct dnsmsg_table t = table();
	uint8_t q[300], r[DNSMSG_UDP_MAX];
	size_t ql, rl;

	(void)state;
	ql = query(q, "web", 28); /* AAAA */
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_int_equal(rcode(r), 0);
	assert_int_equal(ancount(r), 0);
	ql = query(q, "nosuch.shoal", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_int_equal(rcode(r), 3);
	ql = query(q, "tasks.nosuch", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_int_equal(rcode(r), 3);
	ql = query(q, "nosuch", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_FORWARD);
	ql = query(q, "www.example.com", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_FORWARD);
	ql = query(q, "web.example.com", 1);
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_FORWARD);
	rl = dnsmsg_error(q, ql, 2, r, sizeof(r));
	assert_int_equal(rl, ql);
	assert_int_equal(rcode(r), 2);
	dnsmsg_table_clear(&t);
}

static void
test_garbage_dropped(void **state)
{
	struct dnsmsg_table t = table();
	uint8_t q[300], r[DNSMSG_UDP_MAX];
	size_t ql = query(q, "web", 1), rl;

	(void)state;
	/* Every truncation of a good query. */
	for (size_t n = 0; n < ql; n++)
		assert_int_equal(dnsmsg_answer(&t, q, n, r, sizeof(r), &rl, 0), DNSMSG_DROP);
	/* A reply is never answered. */
	q[2] |= 0x80;
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_DROP);
	q[2] &= 0x7f;
	/* A compression pointer in the question. */
	q[12] = 0xc0;
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_DROP);
	/* Two questions. */
	ql = query(q, "web", 1);
	q[5] = 2;
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_DROP);
	assert_int_equal(dnsmsg_error(q, ql, 2, r, sizeof(r)), 0);
	dnsmsg_table_clear(&t);
}

static void
test_truncation(void **state)
{
	struct dnsmsg_table t = {xcalloc(1, sizeof(struct dnsmsg_service)), 1};
	uint8_t q[300], r[DNSMSG_UDP_MAX], big[2048];
	size_t ql = query(q, "tasks.many", 1), rl;

	(void)state;
	t.v[0].name = xstrdup("many");
	t.v[0].ntasks = 100;
	t.v[0].tasks = xcalloc(100, sizeof(struct in_addr));
	assert_int_equal(dnsmsg_answer(&t, q, ql, r, sizeof(r), &rl, 0), DNSMSG_REPLY);
	assert_true(rl <= DNSMSG_UDP_MAX);
	assert_true(r[2] & 0x02); /* TC */
	assert_int_equal(ancount(r), (DNSMSG_UDP_MAX - ql) / 16);
	assert_int_equal(dnsmsg_answer(&t, q, ql, big, sizeof(big), &rl, 0), DNSMSG_REPLY);
	assert_false(big[2] & 0x02);
	assert_int_equal(ancount(big), 100);
	dnsmsg_table_clear(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_service_name),
	    cmocka_unit_test(test_tasks_rotate),
	    cmocka_unit_test(test_unknown_and_other_types),
	    cmocka_unit_test(test_garbage_dropped),
	    cmocka_unit_test(test_truncation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
