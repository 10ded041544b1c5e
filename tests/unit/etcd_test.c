/* Unit tests for the etcd gateway client's encoding and decoding (scheduler/etcd), the leader
 * key's value (scheduler/leader) and the etcd store's rows (scheduler/store_etcd), against
 * replies captured from etcd 3.4's JSON gateway and against broken or hostile ones. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "err.h"
#include "scheduler/etcd.h"
#include "scheduler/leader.h"
#include "scheduler/store_etcd.h"
#include "scheduler/store_etcd_row.h"
#include "util.h"

static json_t *
load(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	return j;
}

/* A range reply as etcd 3.4 sends it: 64-bit numbers as strings, key and value base64. */
static void
test_range_reply(void **state)
{
	json_t *j = load("{\"header\":{\"cluster_id\":\"324952591200643719\",\"member_id\":"
	                 "\"3319814642761637952\",\"revision\":\"2\",\"raft_term\":\"2\"},\"kvs\":"
	                 "[{\"key\":\"Zm9v\",\"create_revision\":\"2\",\"mod_revision\":\"2\","
	                 "\"version\":\"1\",\"value\":\"YmFy\"}],\"count\":\"1\"}");
	struct etcd_range r;
	struct shoal_err err;

	(void)state;
	assert_int_equal(etcd_parse_status(200, j, &err), 0);
	assert_int_equal(etcd_parse_range(j, &r, &err), 0);
	assert_int_equal(r.revision, 2);
	assert_int_equal(r.count, 1);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.kvs[0].key, "foo");
	assert_string_equal(r.kvs[0].value, "bar");
	assert_int_equal(r.kvs[0].value_len, 3);
	assert_int_equal(r.kvs[0].create_revision, 2);
	assert_int_equal(r.kvs[0].lease, 0);
	etcd_range_clear(&r);
	json_decref(j);

	/* An absent key: no kvs, no count. */
	j = load("{\"header\":{\"revision\":\"7\"}}");
	assert_int_equal(etcd_parse_range(j, &r, &err), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.revision, 7);
	etcd_range_clear(&r);
	json_decref(j);
}

/* A failed txn omits "succeeded"; its failure branch's range comes back. */
static void
test_txn_reply(void **state)
{
	json_t *j =
	    load("{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":"
	         "{\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\","
	         "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
	         "\"value\":\"YmFy\",\"lease\":\"2324035806546810888\"}],\"count\":\"1\"}}]}");
	struct etcd_txn_result r;
	struct shoal_err err;

	(void)state;
	assert_int_equal(etcd_parse_txn(j, &r, &err), 0);
	assert_false(r.succeeded);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ops[0].kind, ETCD_OP_RANGE);
	assert_int_equal(r.ops[0].range.kvs[0].lease, 2324035806546810888LL);
	etcd_txn_result_clear(&r);
	json_decref(j);

	j = load("{\"header\":{\"revision\":\"5\"},\"succeeded\":true,\"responses\":[{"
	         "\"response_delete_range\":{\"header\":{\"revision\":\"5\"},\"deleted\":\"1\"}},"
	         "{\"response_put\":{\"header\":{\"revision\":\"5\"}}},{\"response_txn\":{"
	         "\"succeeded\":true}}]}");
	assert_int_equal(etcd_parse_txn(j, &r, &err), 0);
	assert_true(r.succeeded);
	assert_int_equal(r.revision, 5);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ops[0].deleted, 1);
	assert_int_equal(r.ops[1].kind, ETCD_OP_PUT);
	assert_true(r.ops[2].succeeded);
	etcd_txn_result_clear(&r);
	json_decref(j);
}

/* etcd's errors reach the caller with etcd's own words. */
static void
test_error_reply(void **state)
{
	json_t *j = load("{\"error\":\"etcdserver: requested lease not found\",\"message\":"
	                 "\"etcdserver: requested lease not found\",\"code\":5}");
	struct shoal_err err;

	(void)state;
	assert_int_equal(etcd_parse_status(404, j, &err), -1);
	assert_non_null(strstr(err.msg, "etcdserver: requested lease not found"));
	assert_non_null(strstr(err.msg, "code 5"));
	json_decref(j);
	/* A stream's error object. */
	j = load("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no "
	         "leader\",\"http_status\":\"Service Unavailable\"}}");
	assert_int_equal(etcd_parse_status(200, j, &err), -1);
	assert_non_null(strstr(err.msg, "etcdserver: no leader"));
	json_decref(j);
	/* Not JSON at all (a proxy's HTML page), and a bare array. */
	assert_int_equal(etcd_parse_status(502, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "502"));
	j = load("[1,2]");
	assert_int_equal(etcd_parse_status(200, j, &err), -1);
	json_decref(j);
}

/* Broken replies: errors, no crash, nothing leaked (ASan in make check). */
static void
test_hostile_replies(void **state)
{
	static const char *const bad[] = {
	    "{\"kvs\":{}}",
	    "{\"kvs\":[1]}",
	    "{\"kvs\":[{}]}",
	    "{\"kvs\":[{\"key\":\"%%%\"}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\",\"value\":7}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":\"12x\"}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\",\"mod_revision\":{}}]}",
	    "{\"kvs\":[{\"key\":\"Zm9v\"},{\"key\":\"!!\"}]}",
	    "{\"header\":[],\"kvs\":[]}",
	    "{\"header\":{\"revision\":true}}",
	    "{\"count\":\"many\"}",
	};
	struct etcd_range r;
	struct etcd_txn_result t;
	struct etcd_watch_msg m;
	int64_t id, ttl;
	struct shoal_err err;
	json_t *j;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		j = load(bad[i]);
		assert_int_equal(etcd_parse_range(j, &r, &err), -1);
		assert_int_equal(r.n, 0);
		json_decref(j);
	}
	j = load("{\"responses\":[{\"response_range\":{\"kvs\":[{}]}}]}");
	assert_int_equal(etcd_parse_txn(j, &t, &err), -1);
	json_decref(j);
	j = load("{\"responses\":[{\"response_unknown\":{}}]}");
	assert_int_equal(etcd_parse_txn(j, &t, &err), -1);
	json_decref(j);
	j = load("{\"responses\":[{\"response_delete_range\":{\"deleted\":[]}}]}");
	assert_int_equal(etcd_parse_txn(j, &t, &err), -1);
	json_decref(j);
	j = load("{\"result\":{\"ID\":{}}}");
	assert_int_equal(etcd_parse_lease(j, &id, &ttl, &err), -1);
	json_decref(j);
	j = load("{\"result\":{\"events\":[{\"type\":\"BOOM\",\"kv\":{\"key\":\"Zm9v\"}}]}}");
	assert_int_equal(etcd_parse_watch(j, &m, &err), -1);
	json_decref(j);
	j = load("{\"result\":{\"events\":[{\"kv\":{\"key\":\"Zm9v\"}},7]}}");
	assert_int_equal(etcd_parse_watch(j, &m, &err), -1);
	json_decref(j);
	j = load("{\"nothing\":1}");
	assert_int_equal(etcd_parse_watch(j, &m, &err), -1);
	json_decref(j);
}

static void
test_lease_reply(void **state)
{
	json_t *j = load("{\"header\":{\"revision\":\"2\"},\"ID\":\"2324035806546810888\","
	                 "\"TTL\":\"5\"}");
	int64_t id, ttl;
	struct shoal_err err;

	(void)state;
	assert_int_equal(etcd_parse_lease(j, &id, &ttl, &err), 0);
	assert_int_equal(id, 2324035806546810888LL);
	assert_int_equal(ttl, 5);
	json_decref(j);
	/* A keepalive of a lease that expired: no TTL, i.e. 0. */
	j = load("{\"result\":{\"header\":{\"revision\":\"4\"},\"ID\":\"1234\"}}");
	assert_int_equal(etcd_parse_lease(j, &id, &ttl, &err), 0);
	assert_int_equal(id, 1234);
	assert_int_equal(ttl, 0);
	json_decref(j);
}

struct seen {
	int n;
	int64_t revs[8];
	int types[8];
	char keys[8][16];
};

static int
on_obj(json_t *obj, void *arg)
{
	struct seen *s = arg;
	struct etcd_watch_msg m;
	struct shoal_err err;

	if (etcd_parse_watch(obj, &m, &err) == -1)
		return -1;
	s->revs[s->n] = m.revision;
	s->types[s->n] = m.n ? (int)m.events[0].type : -1;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", m.n ? m.events[0].kv.key : "");
	s->n++;
	etcd_watch_msg_clear(&m);
	return 0;
}

/* The watch stream arrives in arbitrary pieces: split mid-object, several in one read. */
static void
test_watch_stream(void **state)
{
	const char stream[] =
	    "{\"result\":{\"header\":{\"revision\":\"2\"},\"created\":true}}\n"
	    "{\"result\":{\"header\":{\"revision\":\"3\"},\"events\":[{\"kv\":{\"key\":\"Zm9vMg=="
	    "\","
	    "\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\",\"value\":"
	    "\"eA==\"}}]}}\n"
	    "{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"type\":\"DELETE\",\"kv\":"
	    "{\"key\":\"Zm9vMg==\",\"mod_revision\":\"4\"}}]}}\n";
	struct shoal_err err;

	(void)state;
	for (size_t chunk = 1; chunk <= sizeof(stream); chunk += 7) {
		struct etcd_stream s = {0};
		struct seen seen = {0};

		for (size_t off = 0; off < sizeof(stream) - 1; off += chunk) {
			size_t n =
			    sizeof(stream) - 1 - off < chunk ? sizeof(stream) - 1 - off : chunk;
			assert_int_equal(etcd_stream_feed(&s, stream + off, n, on_obj, &seen, &err),
			                 0);
		}
		assert_int_equal(seen.n, 3);
		assert_int_equal(seen.revs[2], 4);
		assert_int_equal(seen.types[1], ETCD_EVENT_PUT);
		assert_int_equal(seen.types[2], ETCD_EVENT_DELETE);
		assert_string_equal(seen.keys[2], "foo2");
		assert_int_equal(s.len, 0);
		etcd_stream_clear(&s);
	}
}

static void
test_watch_stream_garbage(void **state)
{
	struct etcd_stream s = {0};
	struct seen seen = {0};
	struct shoal_err err;
	char big[4096];

	(void)state;
	assert_int_equal(etcd_stream_feed(&s, "<html>", 6, on_obj, &seen, &err), -1);
	assert_non_null(strstr(err.msg, "not JSON"));
	etcd_stream_clear(&s);
	/* An object that never ends, above the limit. */
	s.max = 1000;
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[1] = '"';
	memset(big + 2, 'a', sizeof(big) - 2);
	assert_int_equal(etcd_stream_feed(&s, big, sizeof(big), on_obj, &seen, &err), -1);
	assert_non_null(strstr(err.msg, "above"));
	etcd_stream_clear(&s);
	/* Valid JSON but no watch message: the reader refuses it. */
	assert_int_equal(etcd_stream_feed(&s, "{\"x\":1}\n", 8, on_obj, &seen, &err), -1);
	etcd_stream_clear(&s);
	assert_int_equal(seen.n, 0);
}

/* Requests: base64 keys, revisions as strings, prefix ends. */
static void
test_requests(void **state)
{
	struct etcd_cmp cmp[2];
	struct etcd_op put = {
	    .kind = ETCD_OP_PUT, .key = "/shoal/x", .value = "v", .value_len = 1, .lease = 42};
	struct etcd_op del = {.kind = ETCD_OP_DELETE, .key = "/shoal/tasks/", .prefix = 1};
	struct etcd_txn t = {
	    .cmp = cmp, .ncmp = 2, .success = &put, .nsuccess = 1, .failure = &del, .nfailure = 1};
	char *s, *end;
	json_t *j;

	(void)state;
	end = etcd_prefix_end("/shoal/");
	assert_string_equal(end, "/shoal0");
	free(end);
	end = etcd_prefix_end("a\xff");
	assert_string_equal(end, "b");
	free(end);
	end = etcd_prefix_end("\xff\xff");
	assert_string_equal(end, "");
	free(end);

	leader_fence_cmp(cmp, "/shoal/leader", 17, "me");
	j = etcd_json_txn(&t);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(
	    s,
	    "{\"compare\":[{\"create_revision\":\"17\",\"key\":\"L3Nob2FsL2xlYWRlcg==\",\"result\":"
	    "\"EQUAL\",\"target\":\"CREATE\"},{\"key\":\"L3Nob2FsL2xlYWRlcg==\",\"result\":"
	    "\"EQUAL\",\"target\":\"VALUE\",\"value\":\"bWU=\"}],\"failure\":[{"
	    "\"request_delete_range\":{\"key\":\"L3Nob2FsL3Rhc2tzLw==\",\"range_end\":"
	    "\"L3Nob2FsL3Rhc2tzMA==\"}}],\"success\":[{\"request_put\":{\"key\":"
	    "\"L3Nob2FsL3g=\",\"lease\":\"42\",\"value\":\"dg==\"}}]}");
	free(s);
	json_decref(j);

	j = etcd_json_range("/a", 0, 9, 100);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"key\":\"L2E=\",\"limit\":\"100\",\"revision\":\"9\"}");
	free(s);
	json_decref(j);

	j = etcd_json_watch("/shoal/leader", 0, 12);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"create_request\":{\"key\":\"L3Nob2FsL2xlYWRlcg==\","
	                       "\"start_revision\":\"12\"}}");
	free(s);
	json_decref(j);
}

static void
test_config(void **state)
{
	struct shoal_err err;
	struct etcd_config c = {.endpoints = "etcd://127.0.0.1:2379, 10.0.0.2:2379"};
	struct etcd *e = etcd_new(NULL, &c, &err);

	(void)state;
	assert_non_null(e);
	assert_string_equal(etcd_endpoint(e), "http://127.0.0.1:2379");
	etcd_free(e);
	c.cacert = "/ca.pem";
	e = etcd_new(NULL, &c, &err);
	assert_string_equal(etcd_endpoint(e), "https://127.0.0.1:2379");
	etcd_free(e);
	c.endpoints = "etcd://nohost";
	assert_null(etcd_new(NULL, &c, &err));
	assert_non_null(strstr(err.msg, "bad endpoint"));
	c.endpoints = "etcd://127.0.0.1:2379";
	c.cert = "/c.pem";
	assert_null(etcd_new(NULL, &c, &err));
	assert_non_null(strstr(err.msg, "key"));
}

static void
test_leader_value(void **state)
{
	char *v = leader_value_encode("sched1", "10.0.0.1:7100");
	char id[32], addr[32];

	(void)state;
	assert_string_equal(v, "{\"address\":\"10.0.0.1:7100\",\"id\":\"sched1\"}");
	assert_int_equal(leader_value_parse(v, id, sizeof(id), addr, sizeof(addr)), 0);
	assert_string_equal(id, "sched1");
	assert_string_equal(addr, "10.0.0.1:7100");
	free(v);
	assert_int_equal(leader_value_parse("garbage", id, sizeof(id), addr, sizeof(addr)), -1);
	assert_string_equal(id, "");
	assert_int_equal(leader_value_parse("{\"id\":3}", id, sizeof(id), addr, sizeof(addr)), -1);
}

/* The etcd store's rows survive encoding exactly; malformed rows are refused. */
static void
test_store_rows(void **state)
{
	struct store_task t = {.id = "t1",
	                       .service = "web",
	                       .slot = 4000000000u,
	                       .version = 9,
	                       .node_id = "",
	                       .desired = 2,
	                       .role = 1,
	                       .restarts = 3,
	                       .created_ms = 1700000000123,
	                       .name = "web.1.t1"};
	struct store_service sv = {.name = "web",
	                           .spec_json = "{\"a\":\"\\\"q\\\"\"}",
	                           .version = 3,
	                           .prev_version = 2,
	                           .created_ms = 1,
	                           .updated_ms = 2,
	                           .removed = 1};
	struct store_node n = {.id = "n1",
	                       .name = "node1",
	                       .address = "10.0.0.1:7101",
	                       .labels = "a=b",
	                       .availability = "drain",
	                       .cpu_millis = 4000,
	                       .memory_bytes = 1LL << 40,
	                       .subnet_index = 7,
	                       .created_ms = 5,
	                       .node_key = "ab"};
	struct store_task t2;
	struct store_service sv2;
	struct store_node n2;
	struct shoal_err err;
	char *s;

	(void)state;
	s = store_etcd_row_task_encode(&t);
	assert_int_equal(store_etcd_row_task_decode(s, &t2, &err), 0);
	assert_string_equal(t2.id, "t1");
	assert_int_equal(t2.slot, 4000000000u);
	assert_int_equal(t2.created_ms, 1700000000123);
	assert_int_equal(t2.role, 1);
	assert_string_equal(t2.node_id, "");
	store_etcd_row_task_clear(&t2);
	free(s);

	s = store_etcd_row_service_encode(&sv);
	assert_int_equal(store_etcd_row_service_decode(s, &sv2, &err), 0);
	assert_string_equal(sv2.spec_json, sv.spec_json);
	assert_null(sv2.prev_spec_json);
	assert_null(sv2.update_state);
	assert_int_equal(sv2.removed, 1);
	assert_false(sv2.update_typed);
	store_etcd_row_service_clear(&sv2);
	free(s);

	/* The update's state as a type survives the record, as in the SQLite store. */
	sv.update_state = "paused: task web.2 failed";
	sv.update_typed = true;
	sv.update_kind = 2;
	sv.update_message = "task web.2 failed";
	s = store_etcd_row_service_encode(&sv);
	assert_int_equal(store_etcd_row_service_decode(s, &sv2, &err), 0);
	assert_true(sv2.update_typed);
	assert_int_equal(sv2.update_kind, 2);
	assert_string_equal(sv2.update_message, "task web.2 failed");
	assert_string_equal(sv2.update_state, "paused: task web.2 failed");
	store_etcd_row_service_clear(&sv2);
	free(s);

	s = store_etcd_row_node_encode(&n);
	assert_int_equal(store_etcd_row_node_decode(s, &n2, &err), 0);
	assert_int_equal(n2.memory_bytes, 1LL << 40);
	assert_string_equal(n2.availability, "drain");
	store_node_clear(&n2);
	free(s);

	assert_int_equal(store_etcd_row_task_decode("{\"id\":\"x\"}", &t2, &err), -1);
	assert_non_null(strstr(err.msg, "malformed task"));
	assert_int_equal(store_etcd_row_task_decode("not json", &t2, &err), -1);
	assert_int_equal(store_etcd_row_node_decode("[]", &n2, &err), -1);
	assert_int_equal(store_etcd_row_service_decode("{\"name\":1}", &sv2, &err), -1);
}

/* Without a fence no write leaves the process: the store refuses it. */
static void
test_store_unfenced(void **state)
{
	struct etcd_config c = {.endpoints = "etcd://127.0.0.1:1"};
	struct shoal_err err;
	struct etcd *e = etcd_new(NULL, &c, &err);
	struct store_etcd s;

	(void)state;
	assert_int_equal(store_etcd_open(&s, e, "/shoal/", &err), 0);
	assert_int_equal(store_etcd_meta_put(&s, "k", "v", &err), -1);
	assert_non_null(strstr(err.msg, "does not lead"));
	store_etcd_close(&s);
	assert_int_equal(store_etcd_open(&s, e, "shoal", &err), -1);
	etcd_free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_range_reply),
	    cmocka_unit_test(test_txn_reply),
	    cmocka_unit_test(test_error_reply),
	    cmocka_unit_test(test_hostile_replies),
	    cmocka_unit_test(test_lease_reply),
	    cmocka_unit_test(test_watch_stream),
	    cmocka_unit_test(test_watch_stream_garbage),
	    cmocka_unit_test(test_requests),
	    cmocka_unit_test(test_config),
	    cmocka_unit_test(test_leader_value),
	    cmocka_unit_test(test_store_rows),
	    cmocka_unit_test(test_store_unfenced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
