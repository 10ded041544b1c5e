/* Unit tests for common/schedlist: the scheduler list of agents and the CLI, and how they
 * follow a follower's "not the leader" to the leader. The transport is a mock: a table of
 * what each address answers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "schedlist.h"

static void
test_parse_one(void **state)
{
	struct shoal_err err;
	struct schedlist l;

	(void)state;
	assert_int_equal(schedlist_parse(&l, "10.0.0.1:7100", NULL, &err), 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.addr[0].host, "10.0.0.1");
	assert_int_equal(l.addr[0].port, 7100);
	/* The CLI's default host for ":PORT"; an agent has none. */
	assert_int_equal(schedlist_parse(&l, ":7100", "127.0.0.1", &err), 0);
	assert_string_equal(l.addr[0].host, "127.0.0.1");
	assert_int_equal(schedlist_parse(&l, ":7100", NULL, &err), -1);
	assert_string_equal(err.msg, ":7100: needs a host");
	/* One address: util_parse_hostport's messages, word for word. */
	assert_int_equal(schedlist_parse(&l, "10.0.0.1", NULL, &err), -1);
	assert_string_equal(err.msg, "10.0.0.1: expected HOST:PORT");
	assert_int_equal(schedlist_parse(&l, "h:0", NULL, &err), -1);
	assert_string_equal(err.msg, "h:0: port must be 1-65535");
}

static void
test_parse_list(void **state)
{
	struct shoal_err err;
	struct schedlist l;

	(void)state;
	assert_int_equal(schedlist_parse(&l, "a:7100, b:7101 ,c:7100,a:7100", NULL, &err), 0);
	assert_int_equal(l.n, 3); /* the duplicate is dropped */
	assert_string_equal(l.addr[1].host, "b");
	assert_int_equal(l.addr[1].port, 7101);
	assert_string_equal(l.addr[2].host, "c");
	assert_int_equal(schedlist_parse(&l, "a:7100,,b:7100", NULL, &err), -1);
	assert_string_equal(err.msg, "a:7100,,b:7100: empty entry in the list");
	assert_int_equal(schedlist_parse(&l, "a:7100,", NULL, &err), -1);
	assert_int_equal(schedlist_parse(&l, "a:7100,b", NULL, &err), -1);
	assert_string_equal(err.msg, "b: expected HOST:PORT");
	assert_int_equal(schedlist_parse(&l, "a:7100,b:99999", NULL, &err), -1);
	assert_string_equal(err.msg, "b:99999: port must be 1-65535");
	assert_int_equal(schedlist_parse(&l, "a:7100,:7100", NULL, &err), -1);
	assert_string_equal(err.msg, ":7100: needs a host");
	{
		char spec[400] = "";
		for (int i = 0; i <= SCHEDLIST_MAX; i++)
			snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%sh%d:1",
			         i ? "," : "", i);
		assert_int_equal(schedlist_parse(&l, spec, NULL, &err), -1);
		assert_non_null(strstr(err.msg, "more than 16 schedulers"));
	}
}

/* ---- the agent's cursor ---- */

static const char *
target_str(struct schedlist *l, char *buf, size_t len)
{
	return schedlist_addr_str(schedlist_target(l), buf, len);
}

static void
test_cursor(void **state)
{
	struct shoal_err err;
	struct schedlist l;
	char b[SCHEDLIST_ADDR_MAX];

	(void)state;
	assert_int_equal(schedlist_parse(&l, "a:1,b:1,c:1", NULL, &err), 0);
	assert_string_equal(target_str(&l, b, sizeof(b)), "a:1");
	/* a is down: in turn, wrapping around. */
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
	schedlist_failed(&l);
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "a:1");
	/* a is a follower naming c: c next, at once. */
	assert_true(schedlist_redirect(&l, "c:1"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "c:1");
	/* c says it is not the leader either (names a): no second jump at once, back off and
	 * go on with the list after a. */
	assert_false(schedlist_redirect(&l, "a:1"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
	/* b knows no leader: nothing to jump to. */
	assert_false(schedlist_redirect(&l, ""));
	assert_string_equal(target_str(&l, b, sizeof(b)), "c:1");
	/* An unparsable leader is not followed. */
	assert_false(schedlist_redirect(&l, "nonsense"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "a:1");
	/* The redirect target (not in the list) registers; when it dies the list goes on. */
	assert_true(schedlist_redirect(&l, "d:7"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "d:7");
	schedlist_connected(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
	/* A session found through the list: once lost, the next one. */
	schedlist_connected(&l);
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "c:1");
	schedlist_failed(&l);
	schedlist_failed(&l);
	/* After a session, a redirect may be followed again at once. */
	assert_true(schedlist_redirect(&l, "c:1"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "c:1");
	/* The redirect target unreachable: the list's cursor, not a jump, and past c, which
	 * just failed. */
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "a:1");
}

/* A follower names a leader that has died (its lease has not run out yet) and that is the
 * list's next entry: once the redirect fails, the list skips it instead of trying it again
 * (on the lab, a second connect timeout made an agent miss the new leader's grace). */
static void
test_cursor_dead_leader(void **state)
{
	struct shoal_err err;
	struct schedlist l;
	char b[SCHEDLIST_ADDR_MAX];

	(void)state;
	assert_int_equal(schedlist_parse(&l, "a:1,b:1,c:1", NULL, &err), 0);
	assert_true(schedlist_redirect(&l, "b:1"));
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "c:1");
	/* The same after a session with a leader reached through a redirect. */
	assert_true(schedlist_redirect(&l, "a:1"));
	schedlist_connected(&l);
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "b:1");
}

static void
test_cursor_single(void **state)
{
	struct shoal_err err;
	struct schedlist l;
	char b[SCHEDLIST_ADDR_MAX];

	(void)state;
	assert_int_equal(schedlist_parse(&l, "a:1", NULL, &err), 0);
	schedlist_failed(&l);
	schedlist_failed(&l);
	assert_string_equal(target_str(&l, b, sizeof(b)), "a:1");
}

/* ---- the CLI's walk, over a mock transport ---- */

struct mock_host {
	const char *addr;   /* "host:port" */
	enum sched_try r;   /* what it answers */
	const char *leader; /* on SCHED_TRY_NOT_LEADER */
};

struct mock {
	const struct mock_host *hosts;
	size_t n;
	char tried[512]; /* "a:1 b:1 ..." in order */
};

static enum sched_try
mock_try(const struct sched_addr *to, void *arg, char *leader, size_t leaderlen,
         struct shoal_err *err)
{
	struct mock *m = arg;
	char a[SCHEDLIST_ADDR_MAX];

	schedlist_addr_str(to, a, sizeof(a));
	snprintf(m->tried + strlen(m->tried), sizeof(m->tried) - strlen(m->tried), "%s%s",
	         m->tried[0] ? " " : "", a);
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->hosts[i].addr, a) != 0)
			continue;
		if (m->hosts[i].r == SCHED_TRY_NOT_LEADER)
			snprintf(leader, leaderlen, "%s", m->hosts[i].leader);
		else if (m->hosts[i].r != SCHED_TRY_OK)
			err_set(err, 0, "cannot reach scheduler at %s: refused", a);
		return m->hosts[i].r;
	}
	err_set(err, 0, "cannot reach scheduler at %s: refused", a);
	return SCHED_TRY_UNREACHABLE;
}

static int
walk(const char *spec, const struct mock_host *hosts, size_t n, struct mock *m,
     struct shoal_err *err)
{
	struct schedlist l;

	memset(m, 0, sizeof(*m));
	m->hosts = hosts;
	m->n = n;
	assert_int_equal(schedlist_parse(&l, spec, NULL, err), 0);
	return schedlist_walk(&l, mock_try, m, err);
}

static void
test_walk(void **state)
{
	static const struct mock_host leader_first[] = {{"a:1", SCHED_TRY_OK, NULL}};
	static const struct mock_host follower[] = {
	    {"a:1", SCHED_TRY_NOT_LEADER, "c:1"},
	    {"c:1", SCHED_TRY_OK, NULL},
	};
	static const struct mock_host dead_then_leader[] = {
	    {"a:1", SCHED_TRY_UNREACHABLE, NULL},
	    {"b:1", SCHED_TRY_OK, NULL},
	};
	static const struct mock_host failed[] = {{"a:1", SCHED_TRY_FAILED, NULL}};
	struct shoal_err err;
	struct mock m;

	(void)state;
	assert_int_equal(walk("a:1,b:1,c:1", leader_first, 1, &m, &err), 0);
	assert_string_equal(m.tried, "a:1");
	/* A follower's leader is the next one asked, at once. */
	assert_int_equal(walk("a:1,b:1,c:1", follower, 2, &m, &err), 0);
	assert_string_equal(m.tried, "a:1 c:1");
	assert_int_equal(walk("a:1,b:1,c:1", dead_then_leader, 2, &m, &err), 0);
	assert_string_equal(m.tried, "a:1 b:1");
	/* Failed after the request went out: never sent again elsewhere (not idempotent). */
	assert_int_equal(walk("a:1,b:1", failed, 1, &m, &err), -1);
	assert_string_equal(m.tried, "a:1");
	assert_string_equal(err.msg, "cannot reach scheduler at a:1: refused");
}

static void
test_walk_fails(void **state)
{
	static const struct mock_host no_leader[] = {
	    {"a:1", SCHED_TRY_NOT_LEADER, ""},
	    {"b:1", SCHED_TRY_NOT_LEADER, ""},
	};
	static const struct mock_host pingpong[] = {
	    {"a:1", SCHED_TRY_NOT_LEADER, "b:1"},
	    {"b:1", SCHED_TRY_NOT_LEADER, "a:1"},
	};
	static const struct mock_host stale[] = {
	    {"a:1", SCHED_TRY_NOT_LEADER, "z:1"},
	};
	struct shoal_err err;
	struct mock m;

	(void)state;
	/* One address, down: its own message, as before lists existed. */
	assert_int_equal(walk("a:1", NULL, 0, &m, &err), -1);
	assert_string_equal(err.msg, "cannot reach scheduler at a:1: refused");
	assert_int_equal(walk("a:1,b:1,c:1", NULL, 0, &m, &err), -1);
	assert_string_equal(m.tried, "a:1 b:1 c:1");
	assert_string_equal(err.msg, "no scheduler answers: cannot reach scheduler at a:1: "
	                             "refused; cannot reach scheduler at b:1: refused; cannot "
	                             "reach scheduler at c:1: refused");
	assert_int_equal(walk("a:1,b:1", no_leader, 2, &m, &err), -1);
	assert_string_equal(m.tried, "a:1 b:1");
	assert_string_equal(err.msg, "no scheduler leads (an election may be under way): a:1: a "
	                             "follower, no leader elected; b:1: a follower, no leader "
	                             "elected");
	/* Two followers naming each other: one redirect, then the list, then done. */
	assert_int_equal(walk("a:1,b:1", pingpong, 2, &m, &err), -1);
	assert_string_equal(m.tried, "a:1 b:1 b:1");
	assert_non_null(strstr(err.msg, "no scheduler leads"));
	/* The named leader is gone (it died since): said so. */
	assert_int_equal(walk("a:1", stale, 1, &m, &err), -1);
	assert_string_equal(m.tried, "a:1 z:1");
	assert_string_equal(err.msg, "no scheduler leads (an election may be under way): a:1 "
	                             "names leader z:1: cannot reach scheduler at z:1: refused");
}

static void
test_not_leader(void **state)
{
	const char *leader = NULL;

	(void)state;
	assert_false(schedlist_not_leader(0, "a:1", &leader));
	assert_true(schedlist_not_leader(SHOAL_ENOTLEADER, "a:1", &leader));
	assert_string_equal(leader, "a:1");
	assert_true(schedlist_not_leader(SHOAL_ENOTLEADER, NULL, &leader));
	assert_string_equal(leader, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_one),
	    cmocka_unit_test(test_parse_list),
	    cmocka_unit_test(test_cursor),
	    cmocka_unit_test(test_cursor_single),
	    cmocka_unit_test(test_cursor_dead_leader),
	    cmocka_unit_test(test_walk),
	    cmocka_unit_test(test_walk_fails),
	    cmocka_unit_test(test_not_leader),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
