/*
 * Unit tests for common/labels and the scheduler's use of it (scheduler/nodes): a Register's
 * labels are held to caps and joined in linear time, and a store written before the caps
 * existed cannot make every ListNodes reply too big.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "labels.h"
#include "log.h"
#include "scheduler/nodes.h"
#include "scheduler/store.h"
#include "shoal.pb-c.h"
#include "util.h"

static void
test_check(void **state)
{
	struct shoal_err err;
	char key[LABEL_KEY_MAX + 2], value[LABEL_VALUE_MAX + 2];

	(void)state;
	assert_int_equal(labels_check("zone", "a", &err), 0);
	assert_int_equal(labels_check("example.com/rack-2_b", "r=1:x", &err), 0);
	assert_int_equal(labels_check("ssd", "", &err), 0);
	memset(key, 'k', sizeof(key));
	key[LABEL_KEY_MAX] = '\0';
	assert_int_equal(labels_check(key, "v", &err), 0);
	key[LABEL_KEY_MAX] = 'k';
	key[LABEL_KEY_MAX + 1] = '\0';
	assert_int_equal(labels_check(key, "v", &err), -1);
	assert_string_equal(err.msg, "label key \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\": longer "
	                             "than 63 bytes");
	memset(value, 'v', sizeof(value));
	value[LABEL_VALUE_MAX] = '\0';
	assert_int_equal(labels_check("k", value, &err), 0);
	value[LABEL_VALUE_MAX] = 'v';
	value[LABEL_VALUE_MAX + 1] = '\0';
	assert_int_equal(labels_check("k", value, &err), -1);
	assert_string_equal(err.msg, "label k: value longer than 63 bytes");
	assert_int_equal(labels_check("", "v", &err), -1);
	assert_string_equal(err.msg, "label with an empty key");
	/* ',' and '=' in a key, ',' in a value would change how "k=v,k=v" reads back. */
	assert_int_equal(labels_check("a,b", "v", &err), -1);
	assert_int_equal(labels_check("a=b", "v", &err), -1);
	assert_int_equal(labels_check("-a", "v", &err), -1);
	assert_int_equal(labels_check("a", "x,y=z", &err), -1);
	assert_string_equal(err.msg, "label a: value may hold printable characters but no ',' or "
	                             "space");
	assert_int_equal(labels_check("a", "x y", &err), -1);
	assert_int_equal(labels_check("a", "x\ny", &err), -1);
	assert_int_equal(labels_check_count(LABELS_MAX, &err), 0);
	assert_int_equal(labels_check_count(500000, &err), -1);
	assert_string_equal(err.msg, "500000 labels: at most 64");
}

static void
test_check_joined(void **state)
{
	struct shoal_err err;
	char *many;

	(void)state;
	assert_int_equal(labels_check_joined("", &err), 0);
	assert_int_equal(labels_check_joined(NULL, &err), 0);
	assert_int_equal(labels_check_joined("zone=a", &err), 0);
	assert_int_equal(labels_check_joined("zone=a,ssd=,k=x=y", &err), 0);
	assert_int_equal(labels_check_joined("zone", &err), -1);
	assert_int_equal(labels_check_joined("zone=a,", &err), -1);
	assert_int_equal(labels_check_joined("=a", &err), -1);
	/* 65 labels. */
	many = xstrdup("k0=v");
	for (int i = 1; i <= LABELS_MAX; i++) {
		char *next = xasprintf("%s,k%d=v", many, i);
		free(many);
		many = next;
	}
	assert_int_equal(labels_check_joined(many, &err), -1);
	assert_string_equal(err.msg, "65 labels: at most 64");
	free(many);
}

struct labels {
	Shoal__Label *v;
	Shoal__Label **p;
	size_t n;
};

static void
labels_make(struct labels *l, size_t n, const char *key, const char *value)
{
	l->v = xcalloc(n, sizeof(*l->v));
	l->p = xcalloc(n, sizeof(*l->p));
	l->n = n;
	for (size_t i = 0; i < n; i++) {
		shoal__label__init(&l->v[i]);
		l->v[i].key = (char *)key;
		l->v[i].value = (char *)value;
		l->p[i] = &l->v[i];
	}
}

static void
labels_free(struct labels *l)
{
	free(l->v);
	free(l->p);
}

static void
test_join(void **state)
{
	struct shoal_err err;
	struct labels l;
	char *s;
	int64_t t0;

	(void)state;
	labels_make(&l, 3, "zone", "a");
	l.v[1].key = "ssd";
	l.v[1].value = "";
	s = nodes_labels_join(l.p, l.n, &err);
	assert_string_equal(s, "zone=a,ssd=,zone=a");
	free(s);
	s = nodes_labels_join(l.p, 0, &err);
	assert_string_equal(s, "");
	free(s);
	l.v[2].value = "a,b";
	assert_null(nodes_labels_join(l.p, l.n, &err));
	assert_string_equal(err.msg, "label zone: value may hold printable characters but no ',' "
	                             "or space");
	labels_free(&l);

	/* The Register of the issue: 500,000 labels are refused by count, at once. */
	labels_make(&l, 500000, "k", "v");
	t0 = util_now_ms();
	assert_null(nodes_labels_join(l.p, l.n, &err));
	assert_true(util_now_ms() - t0 < 50);
	assert_string_equal(err.msg, "500000 labels: at most 64");
	labels_free(&l);

	/* The most allowed: 64 labels of the longest key and value, joined whole. */
	char key[LABEL_KEY_MAX + 1], value[LABEL_VALUE_MAX + 1];
	memset(key, 'k', LABEL_KEY_MAX);
	key[LABEL_KEY_MAX] = '\0';
	memset(value, 'v', LABEL_VALUE_MAX);
	value[LABEL_VALUE_MAX] = '\0';
	labels_make(&l, LABELS_MAX, key, value);
	s = nodes_labels_join(l.p, l.n, &err);
	assert_non_null(s);
	assert_int_equal(strlen(s),
	                 LABELS_MAX * (LABEL_KEY_MAX + 1 + LABEL_VALUE_MAX) + LABELS_MAX - 1);
	assert_int_equal(labels_check_joined(s, &err), 0);
	free(s);
	labels_free(&l);
}

/* A node stored with megabytes of labels (as before the caps) loads without them. */
static void
test_load_drops_oversized_labels(void **state)
{
	char dir[] = "/tmp/shoal-labels-test.XXXXXX";
	cleanup_free char *db = NULL, *big = NULL, *rm = NULL;
	struct store st;
	struct nodes ns;
	struct shoal_err err;
	size_t n = 200000;

	(void)state;
	assert_non_null(mkdtemp(dir));
	db = xasprintf("%s/state.db", dir);
	big = xmalloc(n * 4 + 1);
	for (size_t i = 0; i < n; i++)
		memcpy(big + 4 * i, i ? ",k=v" : "kk=v", 4);
	big[n * 4] = '\0';
	struct store_node big_node = {.id = "aaaaaaaaaaaa",
	                              .name = "evil",
	                              .address = "10.0.0.9",
	                              .labels = big,
	                              .availability = "active",
	                              .subnet_index = 1};
	struct store_node good = {.id = "bbbbbbbbbbbb",
	                          .name = "node1",
	                          .address = "10.0.0.1",
	                          .labels = "zone=a",
	                          .availability = "active",
	                          .subnet_index = 2};
	assert_int_equal(store_open(&st, db, &err), 0);
	assert_int_equal(store_node_put(&st, &big_node, &err), 0);
	assert_int_equal(store_node_put(&st, &good, &err), 0);
	assert_int_equal(nodes_init(&ns, "10.244.0.0/16", &err), 0);
	assert_int_equal(nodes_load(&ns, &st, &err), 0);
	assert_int_equal(ns.n, 2);
	assert_string_equal(nodes_find(&ns, "evil")->labels, "");
	assert_string_equal(nodes_find(&ns, "node1")->labels, "zone=a");
	nodes_free(&ns);
	store_close(&st);
	rm = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(rm), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_check),
	    cmocka_unit_test(test_check_joined),
	    cmocka_unit_test(test_join),
	    cmocka_unit_test(test_load_drops_oversized_labels),
	};
	if (sodium_init() < 0)
		return 1;
	log_level = -1;
	return cmocka_run_group_tests_name("labels", tests, NULL, NULL);
}
