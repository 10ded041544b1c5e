/*
 * etcdprobe: drive the scheduler's etcd modules (scheduler/etcd, leader, store_etcd) against a
 * real etcd for tests/integration/etcd.bats and bench/etcd.sh.
 *   etcdprobe ENDPOINTS put KEY VALUE          write; "ok"
 *   etcdprobe ENDPOINTS get KEY                print the value; exit 1 when absent
 *   etcdprobe ENDPOINTS elect ID [TTL]         contend for PREFIX/leader (prefix /shoal/ or
 *                                              $ETCDPROBE_PREFIX) and print, one per line:
 *                                              "elected FENCE", "deposed WHY", "leader ID"
 *   etcdprobe ENDPOINTS fenced-put FENCE ID KEY VALUE
 *                                              a write fenced as leader ID with FENCE: "ok", or
 *                                              exit 3 with the refusal
 *   etcdprobe ENDPOINTS store-fenced-put FENCE ID NODE
 *                                              a node row NODE written through store.h's
 *                                              etcd back end as the scheduler leading with
 *                                              id ID (address ID) and FENCE: "ok", or
 *                                              "fenced: WHY" (the store's step-down hook)
 *                                              and exit 3
 *   etcdprobe ENDPOINTS store-roundtrip DB     the same rows into the SQLite store DB and into
 *                                              etcd; both read back; "equal N" or the diff
 *   etcdprobe ENDPOINTS bench N                N task rows in transactions of 100 into etcd
 *                                              (fenced) and into SQLite: "etcd R rows/s" lines
 * ETCDPROBE_ASYNC=1: the etcd store commits with store_etcd_tx_commit_async on an event loop
 * (and bench adds "etcd-pipelined": all N rows in one batch, 8 transactions in flight).
 * Errors: the module's message on stderr, exit 1.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "scheduler/etcd.h"
#include "scheduler/leader.h"
#include "scheduler/store.h"
#include "scheduler/store_etcd.h"
#include "util.h"

static const char *prefix = "/shoal/";
/* ETCDPROBE_ASYNC=1: the etcd store commits through store_etcd_tx_commit_async on this loop. */
static struct event_base *async_base;

static int
die(const struct shoal_err *err)
{
	fprintf(stderr, "etcdprobe: %s\n", err->msg);
	return 1;
}

static void
on_elected(int64_t fence, void *arg)
{
	(void)arg;
	printf("elected %" PRId64 "\n", fence);
}

static void
on_deposed(const char *why, void *arg)
{
	(void)arg;
	printf("deposed %s\n", why);
}

static void
on_leader(const char *id, const char *address, void *arg)
{
	(void)arg;
	(void)address;
	printf("leader %s\n", id[0] ? id : "-");
}

static int
cmd_elect(struct etcd_config *cfg, const char *id, int64_t ttl)
{
	static const struct leader_ops ops = {on_elected, on_deposed, on_leader};
	struct event_base *base = event_base_new();
	struct shoal_err err;
	struct etcd *e = etcd_new(base, cfg, &err);
	struct leader_config lc = {.prefix = prefix, .id = id, .address = id, .ttl_s = ttl};
	struct leader *l;
	char addr[64];

	if (e == NULL)
		return die(&err);
	snprintf(addr, sizeof(addr), "addr-%s", id);
	lc.address = addr;
	if ((l = leader_new(e, base, &lc, &ops, NULL, &err)) == NULL)
		return die(&err);
	leader_start(l);
	event_base_dispatch(base);
	leader_free(l);
	etcd_free(e);
	event_base_free(base);
	return 0;
}

static int
cmd_fenced_put(struct etcd *e, int64_t fence, const char *id, const char *key, const char *value)
{
	char addr[64];
	cleanup_free char *lkey = xasprintf("%sleader", prefix);
	cleanup_free char *lval = NULL;
	struct etcd_cmp cmp[2];
	struct etcd_op op = {
	    .kind = ETCD_OP_PUT, .key = key, .value = value, .value_len = strlen(value)};
	struct etcd_txn t = {.cmp = cmp, .ncmp = 2, .success = &op, .nsuccess = 1};
	struct etcd_txn_result r;
	struct shoal_err err;

	snprintf(addr, sizeof(addr), "addr-%s", id);
	lval = leader_value_encode(id, addr);
	leader_fence_cmp(cmp, lkey, fence, lval);
	if (etcd_sync_txn(e, &t, &r, &err) == -1)
		return die(&err);
	if (!r.succeeded) {
		etcd_txn_result_clear(&r);
		fprintf(stderr, "etcdprobe: refused: not the leader (fence %" PRId64 ")\n", fence);
		return 3;
	}
	etcd_txn_result_clear(&r);
	printf("ok\n");
	return 0;
}

static void
on_store_fenced(const char *why, void *arg)
{
	*(int *)arg = 1;
	printf("fenced: %s\n", why);
}

/* A write through store.h as the scheduler does it (ha.c): the dispatch to the etcd back end,
 * its fence, and the hook that makes a deposed scheduler step down. */
static int
cmd_store_fenced_put(struct etcd *e, int64_t fence, const char *id, const char *node)
{
	cleanup_free char *lkey = xasprintf("%sleader", prefix);
	cleanup_free char *lval = leader_value_encode(id, id);
	struct store st;
	struct store_node n = {.id = (char *)node,
	                       .name = (char *)node,
	                       .address = "127.0.0.1",
	                       .labels = "",
	                       .admin_labels = "",
	                       .availability = "active",
	                       .node_key = ""};
	struct shoal_err err;
	int fenced = 0, rc;

	if (store_open_etcd(&st, e, prefix, &err) == -1)
		return die(&err);
	st.fenced = on_store_fenced;
	st.fenced_arg = &fenced;
	store_etcd_set_fence(st.etcd, lkey, fence, lval);
	rc = store_node_put(&st, &n, &err);
	store_close(&st);
	if (rc == 0) {
		printf("ok\n");
		return 0;
	}
	if (!fenced)
		return die(&err);
	return 3;
}

/* Lead for the tools: a lease and the leader key, both synchronously. */
static int
lead(struct etcd *e, struct store_etcd *se, struct shoal_err *err)
{
	cleanup_free char *lkey = xasprintf("%sleader", prefix);
	cleanup_free char *lval = leader_value_encode("probe", "probe");
	struct etcd_cmp cmp = {.key = lkey, .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL};
	int64_t lease;
	struct etcd_op put = {
	    .kind = ETCD_OP_PUT, .key = lkey, .value = lval, .value_len = strlen(lval)};
	struct etcd_txn t = {.cmp = &cmp, .ncmp = 1, .success = &put, .nsuccess = 1};
	struct etcd_txn_result r;

	if (etcd_sync_lease_grant(e, 60, &lease, err) == -1)
		return -1;
	put.lease = lease;
	if (etcd_sync_txn(e, &t, &r, err) == -1)
		return -1;
	if (!r.succeeded) {
		etcd_txn_result_clear(&r);
		return err_set(err, 0, "someone else leads under %s", prefix);
	}
	store_etcd_set_fence(se, lkey, r.revision, lval);
	etcd_txn_result_clear(&r);
	return 0;
}

struct wait {
	int done;
	struct shoal_err err;
	int failed;
};

static void
on_commit(const struct shoal_err *err, void *arg)
{
	struct wait *w = arg;

	w->done = 1;
	if (err) {
		w->failed = 1;
		w->err = *err;
	}
}

/* The asynchronous commit, waited for on the loop. */
static int
commit_async(struct store_etcd *s, struct shoal_err *err)
{
	struct wait w = {0};

	if (store_etcd_tx_commit_async(s, on_commit, &w, err) == -1)
		return -1;
	while (!w.done)
		event_base_loop(async_base, EVLOOP_ONCE);
	if (w.failed) {
		*err = w.err;
		return -1;
	}
	return 0;
}

/* --- store round trip ---------------------------------------------------------------------- */

struct dump {
	char *text;
	size_t len;
};

static void
add(struct dump *d, const char *line)
{
	size_t n = strlen(line);

	d->text = xrealloc(d->text, d->len + n + 2);
	memcpy(d->text + d->len, line, n);
	d->len += n;
	d->text[d->len++] = '\n';
	d->text[d->len] = '\0';
}

static void
dump_node(const struct store_node *n, void *arg)
{
	cleanup_free char *l =
	    xasprintf("node %s %s %s %s %s %" PRId64 " %" PRId64 " %d %" PRId64 " %s", n->id,
	              n->name, n->address, n->labels, n->availability, n->cpu_millis,
	              n->memory_bytes, n->subnet_index, n->created_ms, n->node_key);
	add(arg, l);
}

static void
dump_service(const struct store_service *s, void *arg)
{
	cleanup_free char *l =
	    xasprintf("service %s %s %s %" PRIu64 " %" PRIu64 " %" PRId64 " %" PRId64 " %d %s",
	              s->name, s->spec_json, s->prev_spec_json ? s->prev_spec_json : "(null)",
	              s->version, s->prev_version, s->created_ms, s->updated_ms, s->removed,
	              s->update_state ? s->update_state : "(null)");
	add(arg, l);
}

static void
dump_task(const struct store_task *t, void *arg)
{
	cleanup_free char *l = xasprintf("task %s %s %u %" PRIu64 " %s %d %d %u %" PRId64 " %s",
	                                 t->id, t->service, t->slot, t->version, t->node_id,
	                                 t->desired, t->role, t->restarts, t->created_ms, t->name);
	add(arg, l);
}

static void
dump_pin(const char *service, uint64_t version, const char *digest, void *arg)
{
	cleanup_free char *l = xasprintf("pin %s %" PRIu64 " %s", service, version, digest);
	add(arg, l);
}

/* The same writes through either store: a table of the two back ends' functions, the shape a
 * later vtable takes. */
struct ops {
	void *s;
	int (*node_put)(void *s, const struct store_node *n, struct shoal_err *err);
	int (*node_delete)(void *s, const char *id, struct shoal_err *err);
	int (*service_put)(void *s, const struct store_service *sv, struct shoal_err *err);
	int (*service_delete)(void *s, const char *name, struct shoal_err *err);
	int (*pin_put)(void *s, const char *service, uint64_t version, const char *digest,
	               uint64_t keep, struct shoal_err *err);
	int (*task_put)(void *s, const struct store_task *t, struct shoal_err *err);
	int (*task_delete)(void *s, const char *id, struct shoal_err *err);
	int (*tx_begin)(void *s, struct shoal_err *err);
	int (*tx_commit)(void *s, struct shoal_err *err);
	int (*meta_put)(void *s, const char *key, const char *value, struct shoal_err *err);
	char *(*meta_get)(void *s, const char *key, struct shoal_err *err);
	int (*node_each)(void *s, void (*fn)(const struct store_node *, void *), void *arg,
	                 struct shoal_err *err);
	int (*service_each)(void *s, void (*fn)(const struct store_service *, void *), void *arg,
	                    struct shoal_err *err);
	int (*task_each)(void *s, void (*fn)(const struct store_task *, void *), void *arg,
	                 struct shoal_err *err);
	int (*pin_each)(void *s, void (*fn)(const char *, uint64_t, const char *, void *),
	                void *arg, struct shoal_err *err);
};

#define OPS(pfx, st)                                                                               \
	{                                                                                          \
		st, (void *)pfx##node_put, (void *)pfx##node_delete, (void *)pfx##service_put,     \
		    (void *)pfx##service_delete, (void *)pfx##pin_put, (void *)pfx##task_put,      \
		    (void *)pfx##task_delete, (void *)pfx##tx_begin, (void *)pfx##tx_commit,       \
		    (void *)pfx##meta_put, (void *)pfx##meta_get, (void *)pfx##node_each,          \
		    (void *)pfx##service_each, (void *)pfx##task_each, (void *)pfx##pin_each       \
	}

#define D(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static int
write_rows(const struct ops *o, struct shoal_err *err)
{
	char id[32], name[32], node[32];
	struct store_service sv = {.name = "web",
	                           .spec_json = "{\"name\":\"web\",\"replicas\":3}",
	                           .version = 2,
	                           .prev_version = 1,
	                           .created_ms = 1000,
	                           .updated_ms = 2000,
	                           .prev_spec_json = "{\"name\":\"web\",\"replicas\":2}",
	                           .update_state = "{\"phase\":\"done\"}"};
	struct store_service sv2 = {.name = "db",
	                            .spec_json = "{\"name\":\"db\",\"note\":\"quote \\\" é\"}",
	                            .version = 1,
	                            .created_ms = 3000,
	                            .updated_ms = 3000};
	struct store_service gone = {.name = "gone", .spec_json = "{}", .version = 7};

	if (o->tx_begin(o->s, err) == -1)
		return -1;
	for (int i = 0; i < 5; i++) {
		struct store_node n = {.id = id,
		                       .name = name,
		                       .address = "10.0.0.1:7101",
		                       .labels = i % 2 ? "zone=a,ssd=yes" : "",
		                       .availability = i == 3 ? "drain" : "active",
		                       .cpu_millis = 2000 + i,
		                       .memory_bytes = (int64_t)1 << (30 + i % 3),
		                       .subnet_index = i + 1,
		                       .created_ms = 1700000000000 + i,
		                       .node_key = i == 4 ? "" : "abcdef0123"};
		snprintf(id, sizeof(id), "n%04d", 5 - i);
		snprintf(name, sizeof(name), "node%d", i);
		if (o->node_put(o->s, &n, err) == -1)
			return -1;
	}
	if (o->node_delete(o->s, "n0005", err) == -1 || o->service_put(o->s, &sv, err) == -1 ||
	    o->service_put(o->s, &sv2, err) == -1 || o->service_put(o->s, &gone, err) == -1 ||
	    o->pin_put(o->s, "gone", 7, D("7"), 0, err) == -1)
		return -1;
	/* 300 tasks (more than one etcd transaction), each written twice in the batch (a key
	 * twice in one transaction is refused by etcd). */
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 300; i++) {
			struct store_task t = {.id = id,
			                       .service = i % 3 ? "web" : "db",
			                       .slot = (uint32_t)(i / 3 + 1),
			                       .version = 2,
			                       .node_id = node,
			                       .desired = 1 + round,
			                       .role = i % 7 == 0,
			                       .restarts = (uint32_t)(i % 4),
			                       .created_ms = 5000 + i,
			                       .name = name};
			snprintf(id, sizeof(id), "t%05d", i);
			snprintf(name, sizeof(name), "web.%d.%05d", i / 3 + 1, i);
			snprintf(node, sizeof(node), i % 11 ? "n%04d" : "", i % 4 + 1);
			if (o->task_put(o->s, &t, err) == -1)
				return -1;
		}
	for (int i = 0; i < 300; i += 50) {
		snprintf(id, sizeof(id), "t%05d", i);
		if (o->task_delete(o->s, id, err) == -1)
			return -1;
	}
	/* Pins: the first digest of a version wins; only version and keep stay. */
	if (o->pin_put(o->s, "web", 1, D("1"), 0, err) == -1 ||
	    o->pin_put(o->s, "web", 1, D("9"), 0, err) == -1 ||
	    o->pin_put(o->s, "web", 2, D("2"), 1, err) == -1 ||
	    o->pin_put(o->s, "web", 3, D("3"), 2, err) == -1 ||
	    o->pin_put(o->s, "db", 1, D("4"), 0, err) == -1 ||
	    o->meta_put(o->s, "cidr", "10.99.0.0/16", err) == -1)
		return -1;
	if (o->tx_commit(o->s, err) == -1)
		return -1;
	/* Outside a batch: written at once. */
	if (o->service_delete(o->s, "gone", err) == -1 ||
	    o->meta_put(o->s, "cidr", "10.98.0.0/16", err) == -1)
		return -1;
	return 0;
}

static int
read_rows(const struct ops *o, struct dump *d, struct shoal_err *err)
{
	cleanup_free char *cidr = o->meta_get(o->s, "cidr", err);
	cleanup_free char *line = NULL;

	if (cidr == NULL)
		return -1;
	line = xasprintf("meta cidr %s", cidr);
	add(d, line);
	if (o->node_each(o->s, dump_node, d, err) == -1 ||
	    o->service_each(o->s, dump_service, d, err) == -1 ||
	    o->task_each(o->s, dump_task, d, err) == -1 ||
	    o->pin_each(o->s, dump_pin, d, err) == -1)
		return -1;
	return 0;
}

static int
cmd_roundtrip(struct etcd *e, const char *db)
{
	struct store sq;
	struct store_etcd se;
	struct shoal_err err;
	struct dump a = {0}, b = {0};
	int rc;

	if (store_open(&sq, db, &err) == -1 || store_etcd_open(&se, e, prefix, &err) == -1 ||
	    lead(e, &se, &err) == -1)
		return die(&err);
	{
		const struct ops osq = OPS(store_, &sq);
		struct ops oet = OPS(store_etcd_, &se);
		if (async_base)
			oet.tx_commit = (void *)commit_async;
		if (write_rows(&osq, &err) == -1 || read_rows(&osq, &a, &err) == -1) {
			fprintf(stderr, "sqlite: ");
			return die(&err);
		}
		if (write_rows(&oet, &err) == -1 || read_rows(&oet, &b, &err) == -1) {
			fprintf(stderr, "etcd: ");
			return die(&err);
		}
	}
	rc = strcmp(a.text, b.text) == 0 ? 0 : 1;
	if (rc == 0) {
		size_t lines = 0;
		for (size_t i = 0; i < a.len; i++)
			lines += a.text[i] == '\n';
		printf("equal %zu\n", lines);
	} else {
		printf("--- sqlite\n%s--- etcd\n%s", a.text, b.text);
	}
	store_close(&sq);
	store_etcd_close(&se);
	free(a.text);
	free(b.text);
	return rc;
}

/* --- bench --------------------------------------------------------------------------------- */

static double
bench_rows(const struct ops *o, int n, struct shoal_err *err, int per_tx)
{
	char id[40], name[48];
	int64_t t0 = util_now_ms();

	for (int i = 0; i < n; i++) {
		struct store_task t = {.id = id,
		                       .service = "svc0042",
		                       .slot = (uint32_t)i + 1,
		                       .version = 1,
		                       .node_id = "0123456789abcdef0123456789abcdef",
		                       .desired = 1,
		                       .created_ms = 1700000000000 + i,
		                       .name = name};
		snprintf(id, sizeof(id), "%032x", i);
		snprintf(name, sizeof(name), "svc0042.%d.%08x", i + 1, i);
		if (i % per_tx == 0 && o->tx_begin(o->s, err) == -1)
			return -1;
		if (o->task_put(o->s, &t, err) == -1)
			return -1;
		if ((i % per_tx == per_tx - 1 || i == n - 1) && o->tx_commit(o->s, err) == -1)
			return -1;
	}
	return n * 1000.0 / (double)(util_now_ms() - t0 > 0 ? util_now_ms() - t0 : 1);
}

static int
cmd_bench(struct etcd *e, int n)
{
	char dir[] = "/tmp/etcdprobe.XXXXXX";
	struct store sq;
	struct store_etcd se;
	struct shoal_err err;
	double re, rs;
	cleanup_free char *db = NULL;

	if (mkdtemp(dir) == NULL)
		return 1;
	db = xasprintf("%s/state.db", dir);
	if (store_open(&sq, db, &err) == -1 || store_etcd_open(&se, e, prefix, &err) == -1 ||
	    lead(e, &se, &err) == -1)
		return die(&err);
	{
		const struct ops osq = OPS(store_, &sq);
		struct ops oet = OPS(store_etcd_, &se);
		if ((re = bench_rows(&oet, n, &err, 100)) < 0 ||
		    (rs = bench_rows(&osq, n, &err, 100)) < 0)
			return die(&err);
		printf("etcd %.0f rows/s\nsqlite %.0f rows/s\n", re, rs);
		if (async_base) {
			/* One batch of every row: transactions of up to 127, 8 in flight. */
			oet.tx_commit = (void *)commit_async;
			if ((re = bench_rows(&oet, n, &err, n)) < 0)
				return die(&err);
			printf("etcd-pipelined %.0f rows/s\n", re);
		}
	}
	store_close(&sq);
	store_etcd_close(&se);
	unlink(db);
	cleanup_free char *wal = xasprintf("%s-wal", db), *shm = xasprintf("%s-shm", db);
	unlink(wal);
	unlink(shm);
	rmdir(dir);
	return 0;
}

int
main(int argc, char **argv)
{
	struct etcd_config cfg = {0};
	struct shoal_err err;
	struct etcd *e;
	const char *cmd;
	int rc = 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init("etcdprobe", LOG_WARNING);
	if (argc < 3) {
		fprintf(stderr, "usage: etcdprobe ENDPOINTS COMMAND ARGS...\n");
		return 2;
	}
	if (getenv("ETCDPROBE_PREFIX"))
		prefix = getenv("ETCDPROBE_PREFIX");
	cfg.endpoints = argv[1];
	cfg.cacert = getenv("ETCDPROBE_CACERT");
	cfg.cert = getenv("ETCDPROBE_CERT");
	cfg.key = getenv("ETCDPROBE_KEY");
	cmd = argv[2];
	if (strcmp(cmd, "elect") == 0 && argc >= 4)
		return cmd_elect(&cfg, argv[3], argc > 4 ? atoi(argv[4]) : 5);
	if (getenv("ETCDPROBE_ASYNC") && strcmp(getenv("ETCDPROBE_ASYNC"), "1") == 0)
		async_base = event_base_new();
	if ((e = etcd_new(async_base, &cfg, &err)) == NULL)
		return die(&err);
	if (strcmp(cmd, "put") == 0 && argc == 5) {
		rc = etcd_sync_put(e, argv[3], argv[4], strlen(argv[4]), 0, &err) == -1 ? die(&err)
		                                                                        : 0;
		if (rc == 0)
			printf("ok\n");
	} else if (strcmp(cmd, "get") == 0 && argc == 4) {
		struct etcd_range r;
		if (etcd_sync_range(e, argv[3], 0, 0, 0, &r, &err) == -1) {
			rc = die(&err);
		} else {
			rc = r.n == 1 ? 0 : 1;
			if (r.n == 1)
				printf("%s\n", r.kvs[0].value);
			etcd_range_clear(&r);
		}
	} else if (strcmp(cmd, "fenced-put") == 0 && argc == 7) {
		rc = cmd_fenced_put(e, strtoll(argv[3], NULL, 10), argv[4], argv[5], argv[6]);
	} else if (strcmp(cmd, "store-fenced-put") == 0 && argc == 6) {
		rc = cmd_store_fenced_put(e, strtoll(argv[3], NULL, 10), argv[4], argv[5]);
	} else if (strcmp(cmd, "store-roundtrip") == 0 && argc == 4) {
		rc = cmd_roundtrip(e, argv[3]);
	} else if (strcmp(cmd, "bench") == 0 && argc == 4) {
		rc = cmd_bench(e, atoi(argv[3]));
	} else {
		fprintf(stderr, "etcdprobe: unknown command or arguments: %s\n", cmd);
	}
	etcd_free(e);
	if (async_base)
		event_base_free(async_base);
	return rc;
}
