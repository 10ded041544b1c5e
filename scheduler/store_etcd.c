#include "store_etcd.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "scheduler/etcd.h"
#include "scheduler/leader.h"
#include "scheduler/store_etcd_row.h"
#include "util.h"

/* Keys read per range request of a listing. */
#define PAGE 1000

/* A queued write. end: NULL for the single key, else [key, end). pin: put key=value only
 * while key is absent (a nested transaction: the first pin of a version wins). */
struct store_etcd_op {
	enum etcd_op_kind kind; /* ETCD_OP_PUT or ETCD_OP_DELETE */
	char *key;
	char *end;
	char *value;
	size_t len;
	int pin;
};

int
store_etcd_open(struct store_etcd *s, struct etcd *e, const char *prefix, struct shoal_err *err)
{
	memset(s, 0, sizeof(*s));
	if (prefix == NULL || prefix[0] != '/' || prefix[strlen(prefix) - 1] != '/')
		return err_set(err, 0, "store: etcd prefix must start and end with '/'");
	s->e = e;
	s->prefix = xstrdup(prefix);
	return 0;
}

static void batches_drop(struct store_etcd *s);

static void
ops_free(struct store_etcd_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(ops[i].key);
		free(ops[i].end);
		free(ops[i].value);
	}
}

static void
ops_clear(struct store_etcd *s)
{
	ops_free(s->ops, s->nops);
	s->nops = 0;
}

void
store_etcd_close(struct store_etcd *s)
{
	batches_drop(s);
	ops_clear(s);
	free(s->ops);
	free(s->prefix);
	free(s->fence_key);
	free(s->fence_value);
	memset(s, 0, sizeof(*s));
}

void
store_etcd_set_fence(struct store_etcd *s, const char *key, int64_t fence, const char *value)
{
	free(s->fence_key);
	free(s->fence_value);
	s->fence_key = key ? xstrdup(key) : NULL;
	s->fence_value = value ? xstrdup(value) : NULL;
	s->fence = fence;
}

/* --- writes ------------------------------------------------------------------------------- */

/* The interval an op touches: [key, end), a single key when end is NULL. */
static int
overlaps(const struct store_etcd_op *a, const struct store_etcd_op *b)
{
	if (a->end == NULL && b->end == NULL)
		return strcmp(a->key, b->key) == 0;
	if (a->end == NULL)
		return strcmp(b->key, a->key) <= 0 && strcmp(a->key, b->end) < 0;
	if (b->end == NULL)
		return overlaps(b, a);
	return strcmp(a->key, b->end) < 0 && strcmp(b->key, a->end) < 0;
}

/* One transaction of queued ops, fenced: the arrays etcd_txn() reads while it encodes. */
struct built {
	struct etcd_cmp fence[2];
	struct etcd_op *eops;
	struct etcd_txn *sub; /* a pin's nested transaction: put only while absent */
	struct etcd_cmp *subcmp;
	struct etcd_op *subop;
	struct etcd_txn t;
};

static void
build(struct built *b, const char *fence_key, int64_t fence, const char *fence_value,
      const struct store_etcd_op *ops, size_t n)
{
	b->eops = xcalloc(n + 1, sizeof(*b->eops));
	b->sub = xcalloc(n + 1, sizeof(*b->sub));
	b->subcmp = xcalloc(n + 1, sizeof(*b->subcmp));
	b->subop = xcalloc(n + 1, sizeof(*b->subop));
	leader_fence_cmp(b->fence, fence_key, fence, fence_value);
	for (size_t i = 0; i < n; i++) {
		const struct store_etcd_op *o = &ops[i];
		struct etcd_op op = {.kind = o->kind,
		                     .key = o->key,
		                     .range_end = o->end,
		                     .value = o->value,
		                     .value_len = o->len};

		if (o->pin) {
			b->subcmp[i] = (struct etcd_cmp){
			    .key = o->key, .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL};
			b->subop[i] = op;
			b->sub[i] = (struct etcd_txn){.cmp = &b->subcmp[i],
			                              .ncmp = 1,
			                              .success = &b->subop[i],
			                              .nsuccess = 1};
			op =
			    (struct etcd_op){.kind = ETCD_OP_TXN, .key = o->key, .txn = &b->sub[i]};
		}
		b->eops[i] = op;
	}
	b->t = (struct etcd_txn){.cmp = b->fence, .ncmp = 2, .success = b->eops, .nsuccess = n};
}

static void
built_free(struct built *b)
{
	free(b->eops);
	free(b->sub);
	free(b->subcmp);
	free(b->subop);
}

static int
refused(int64_t fence, struct shoal_err *err)
{
	err_set(err, 0, "store: write refused: this scheduler no longer leads (fence %" PRId64 ")",
	        fence);
	err->code = SHOAL_ENOTLEADER; /* after err_set: no strerror appended */
	return -1;
}

/* Send ops[0..n) as one transaction fenced by the leadership. */
static int
send_txn(struct store_etcd *s, const struct store_etcd_op *ops, size_t n, struct shoal_err *err)
{
	struct built b;
	struct etcd_txn_result res;
	int rc = -1;

	build(&b, s->fence_key, s->fence, s->fence_value, ops, n);
	if (etcd_sync_txn(s->e, &b.t, &res, err) == -1) {
		err_prefix(err, "store: write");
	} else {
		rc = res.succeeded ? 0 : refused(s->fence, err);
		etcd_txn_result_clear(&res);
	}
	built_free(&b);
	return rc;
}

struct plan_key {
	const char *key;
	size_t chunk;
};

static int
plan_key_cmp(const void *pa, const void *pb)
{
	const struct plan_key *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);

	if (c)
		return c;
	return a->chunk < b->chunk ? -1 : a->chunk > b->chunk;
}

static void
mark(int *barrier, size_t a, size_t b)
{
	if (a != b)
		barrier[a > b ? a : b] = 1;
}

/*
 * Cut ops into transactions: at most STORE_ETCD_TXN_OPS ops and STORE_ETCD_TXN_BYTES each, and
 * a new one where an op touches a key an op of the current one touches (etcd refuses a key
 * twice in one transaction). starts[i] is where transaction i begins (starts[k] = n).
 * barrier[i] says transaction i touches a key an earlier one touches, so the asynchronous
 * commit sends it only once every earlier one is applied (later writes land last); others
 * may be in flight together. Returns the number of transactions k.
 */
static size_t
plan(const struct store_etcd_op *ops, size_t n, size_t **starts, int **barrier)
{
	size_t start = 0, bytes = 0, k = 0, nkeys = 0, *chunk;
	struct plan_key *keys;

	*starts = xcalloc(n + 2, sizeof(**starts));
	*barrier = xcalloc(n + 2, sizeof(**barrier));
	chunk = xcalloc(n + 1, sizeof(*chunk));
	for (size_t i = 0; i < n; i++) {
		size_t size = strlen(ops[i].key) + ops[i].len;
		int cut = i - start >= STORE_ETCD_TXN_OPS || bytes + size > STORE_ETCD_TXN_BYTES;

		for (size_t j = start; j < i && !cut; j++)
			cut = overlaps(&ops[i], &ops[j]);
		if (cut && i > start) {
			(*starts)[k++] = start;
			start = i;
			bytes = 0;
		}
		chunk[i] = k;
		bytes += size;
	}
	(*starts)[k++] = start;
	(*starts)[k] = n;

	/* Shared keys across transactions: single keys sorted, ranges (deletes of a prefix or
	 * of pins, few) against those keys and each other. */
	keys = xcalloc(n + 1, sizeof(*keys));
	for (size_t i = 0; i < n; i++)
		if (ops[i].end == NULL)
			keys[nkeys++] = (struct plan_key){ops[i].key, chunk[i]};
	qsort(keys, nkeys, sizeof(*keys), plan_key_cmp);
	for (size_t i = 1; i < nkeys; i++)
		if (strcmp(keys[i].key, keys[i - 1].key) == 0)
			mark(*barrier, keys[i].chunk, keys[i - 1].chunk);
	for (size_t i = 0; i < n; i++) {
		size_t lo = 0, hi = nkeys;

		if (ops[i].end == NULL)
			continue;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (strcmp(keys[mid].key, ops[i].key) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (; lo < nkeys && strcmp(keys[lo].key, ops[i].end) < 0; lo++)
			mark(*barrier, keys[lo].chunk, chunk[i]);
		for (size_t j = 0; j < i; j++)
			if (ops[j].end && overlaps(&ops[i], &ops[j]))
				mark(*barrier, chunk[i], chunk[j]);
	}
	free(keys);
	free(chunk);
	return k;
}

static int
not_leading(struct store_etcd *s, struct shoal_err *err)
{
	ops_clear(s);
	err_set(err, 0, "store: write refused: this scheduler does not lead");
	err->code = SHOAL_ENOTLEADER;
	return -1;
}

static void batch_append(struct store_etcd *s, void (*done)(const struct shoal_err *, void *),
                         void *arg);

static int
flush(struct store_etcd *s, struct shoal_err *err)
{
	size_t *starts, k;
	int *barrier;
	int rc = 0;

	if (s->nops == 0)
		return 0;
	if (s->fence == 0 || s->fence_key == NULL)
		return not_leading(s, err);
	k = plan(s->ops, s->nops, &starts, &barrier);
	for (size_t i = 0; i < k && rc == 0; i++) {
		if (i > 0 && s->between)
			s->between(s->between_arg);
		rc = send_txn(s, s->ops + starts[i], starts[i + 1] - starts[i], err);
	}
	free(starts);
	free(barrier);
	/* Asynchronous commits still on their way may land after these writes, with older
	 * values of the same keys: write them once more behind those, so that the last word
	 * is this one. (Until then a reader could see the older value; a successor elected in
	 * that gap would too.) */
	if (rc == 0 && s->head && !s->lost)
		batch_append(s, NULL, NULL);
	ops_clear(s);
	return rc;
}

/* Transactions of one asynchronous commit in flight at once (disjoint keys: any order). */
#define WINDOW 8

/* One asynchronous commit. They form a queue (store_etcd.head): only the head is sent, so
 * commits are applied, and their done called, in the order they were made. */
struct batch {
	struct store_etcd *s;
	struct store_etcd_op *ops; /* taken from the store's queue */
	size_t nops;
	size_t *starts;
	int *barrier;
	size_t ntxn, next, inflight;
	char *fence_key, *fence_value;
	int64_t fence;
	int failed;
	struct shoal_err err;
	void (*done)(const struct shoal_err *err, void *arg); /* NULL: none */
	void *arg;
	struct batch *next_batch;
};

static void
batch_free(struct batch *b)
{
	ops_free(b->ops, b->nops);
	free(b->ops);
	free(b->starts);
	free(b->barrier);
	free(b->fence_key);
	free(b->fence_value);
	free(b);
}

/* Commits still queued end unsent (their requests went with the client, which is freed
 * first): their done learns it. */
static void
batches_drop(struct store_etcd *s)
{
	struct shoal_err closed;

	err_set(&closed, 0, "store: closed");
	while (s->head) {
		struct batch *b = s->head;

		s->head = b->next_batch;
		if (b->done)
			b->done(&closed, b->arg);
		batch_free(b);
	}
	s->tail = NULL;
}

static void on_batch_txn(const struct etcd_txn_result *r, const struct shoal_err *err, void *arg);

/* Send what the window allows; 1 while b is not finished (sent or failed, and answered). */
static int
pump(struct batch *b)
{
	while (!b->failed && b->next < b->ntxn && b->inflight < WINDOW &&
	       !(b->barrier[b->next] && b->inflight > 0)) {
		struct built t;
		size_t i = b->next;

		build(&t, b->fence_key, b->fence, b->fence_value, b->ops + b->starts[i],
		      b->starts[i + 1] - b->starts[i]);
		if (etcd_txn(b->s->e, &t.t, on_batch_txn, b, &b->err) == NULL) {
			err_prefix(&b->err, "store: write");
			b->failed = 1;
		} else {
			b->inflight++;
			b->next++;
		}
		built_free(&t);
	}
	return b->inflight > 0 || (!b->failed && b->next < b->ntxn);
}

/* The head commit finished: call it back, then start the next. After a failure every commit
 * queued behind it ends too, unsent, with the same error: they were made on top of writes
 * that are lost, and the scheduler steps down (on_lost, once). */
static void
finish_head(struct store_etcd *s)
{
	struct batch *b;

	while ((b = s->head) != NULL) {
		if (b->failed && !s->lost) {
			s->lost = 1;
			s->lost_err = b->err;
			if (s->on_lost)
				s->on_lost(&s->lost_err, s->lost_arg);
		}
		s->head = b->next_batch;
		if (s->head == NULL)
			s->tail = NULL;
		if (b->done)
			b->done(s->lost ? &s->lost_err : NULL, b->arg);
		batch_free(b);
		if (s->head && !s->lost && pump(s->head))
			return;
	}
}

static void
on_batch_txn(const struct etcd_txn_result *r, const struct shoal_err *err, void *arg)
{
	struct batch *b = arg;

	b->inflight--;
	if (!b->failed && err) {
		b->err = *err;
		err_prefix(&b->err, "store: write");
		b->failed = 1;
	} else if (!b->failed && !r->succeeded) {
		refused(b->fence, &b->err);
		b->failed = 1;
	}
	if (!pump(b))
		finish_head(b->s);
}

/* Take the queued writes as a commit behind the others; sent at once when it is the head. */
static void
batch_append(struct store_etcd *s, void (*done)(const struct shoal_err *, void *), void *arg)
{
	struct batch *b = xcalloc(1, sizeof(*b));

	b->s = s;
	b->ops = s->ops;
	b->nops = s->nops;
	s->ops = NULL;
	s->nops = s->capops = 0;
	b->ntxn = b->nops ? plan(b->ops, b->nops, &b->starts, &b->barrier) : 0;
	b->fence_key = xstrdup(s->fence_key);
	b->fence_value = xstrdup(s->fence_value);
	b->fence = s->fence;
	b->done = done;
	b->arg = arg;
	if (s->tail) {
		s->tail->next_batch = b;
		s->tail = b;
		return;
	}
	s->head = s->tail = b;
	if (!pump(b))
		finish_head(s);
}

int
store_etcd_tx_commit_async(struct store_etcd *s,
                           void (*done)(const struct shoal_err *err, void *arg), void *arg,
                           struct shoal_err *err)
{
	s->in_tx = 0;
	if (s->lost) {
		ops_clear(s);
		*err = s->lost_err;
		return -1;
	}
	if (s->fence == 0 || s->fence_key == NULL)
		return not_leading(s, err);
	batch_append(s, done, arg);
	return 0;
}

int
store_etcd_tx_pending(const struct store_etcd *s)
{
	return s->head != NULL;
}

/* Queue an op (takes key, end, value); outside a transaction it is sent at once. */
static int
queue(struct store_etcd *s, enum etcd_op_kind kind, char *key, char *end, char *value, int pin,
      struct shoal_err *err)
{
	if (s->nops == s->capops) {
		s->capops = s->capops ? 2 * s->capops : 64;
		s->ops = xrealloc(s->ops, s->capops * sizeof(*s->ops));
	}
	s->ops[s->nops++] = (struct store_etcd_op){.kind = kind,
	                                           .key = key,
	                                           .end = end,
	                                           .value = value,
	                                           .len = value ? strlen(value) : 0,
	                                           .pin = pin};
	return s->in_tx ? 0 : flush(s, err);
}

static char *
key_of(const struct store_etcd *s, const char *table, const char *id)
{
	return xasprintf("%s%s/%s", s->prefix, table, id);
}

static char *
pin_key(const struct store_etcd *s, const char *service, uint64_t version)
{
	return xasprintf("%spins/%s/%020" PRIu64, s->prefix, service, version);
}

int
store_etcd_node_put(struct store_etcd *s, const struct store_node *n, struct shoal_err *err)
{
	return queue(s, ETCD_OP_PUT, key_of(s, "nodes", n->id), NULL, store_etcd_row_node_encode(n),
	             0, err);
}

int
store_etcd_node_delete(struct store_etcd *s, const char *id, struct shoal_err *err)
{
	return queue(s, ETCD_OP_DELETE, key_of(s, "nodes", id), NULL, NULL, 0, err);
}

int
store_etcd_service_put(struct store_etcd *s, const struct store_service *sv, struct shoal_err *err)
{
	return queue(s, ETCD_OP_PUT, key_of(s, "services", sv->name), NULL,
	             store_etcd_row_service_encode(sv), 0, err);
}

int
store_etcd_service_put_now(struct store_etcd *s, const struct store_service *rows, size_t n,
                           struct shoal_err *err)
{
	int in_tx = s->in_tx;

	/* The open batch first, on its own, as the SQLite store does. */
	if (flush(s, err) == -1)
		return -1;
	s->in_tx = 1;
	for (size_t i = 0; i < n; i++)
		store_etcd_service_put(s, &rows[i], err);
	s->in_tx = in_tx;
	return flush(s, err);
}

int
store_etcd_service_delete(struct store_etcd *s, const char *name, struct shoal_err *err)
{
	char *pins = xasprintf("%spins/%s/", s->prefix, name);
	int in_tx = s->in_tx;
	int rc;

	/* Both in one transaction even outside a batch: no pin may outlive its service. */
	s->in_tx = 1;
	queue(s, ETCD_OP_DELETE, key_of(s, "services", name), NULL, NULL, 0, err);
	queue(s, ETCD_OP_DELETE, pins, etcd_prefix_end(pins), NULL, 0, err);
	s->in_tx = in_tx;
	rc = in_tx ? 0 : flush(s, err);
	return rc;
}

int
store_etcd_pin_put(struct store_etcd *s, const char *service, uint64_t version, const char *digest,
                   uint64_t keep, struct shoal_err *err)
{
	char *dir = xasprintf("%spins/%s/", s->prefix, service);
	char *end = etcd_prefix_end(dir);
	uint64_t lo = version < keep ? version : keep, hi = version < keep ? keep : version;
	char *klo = pin_key(s, service, lo), *khi = pin_key(s, service, hi);
	int in_tx = s->in_tx;

	/* Keep the pins of version and keep, drop the others: three ranges around the two
	 * keys (a key's successor is key + "0" here: every version key has 20 digits, so no
	 * other key starts with key), and the put itself only while absent. */
	s->in_tx = 1;
	queue(s, ETCD_OP_PUT, pin_key(s, service, version), NULL, xstrdup(digest), 1, err);
	queue(s, ETCD_OP_DELETE, dir, xstrdup(klo), NULL, 0, err);
	if (lo != hi)
		queue(s, ETCD_OP_DELETE, xasprintf("%s0", klo), xstrdup(khi), NULL, 0, err);
	queue(s, ETCD_OP_DELETE, xasprintf("%s0", khi), end, NULL, 0, err);
	s->in_tx = in_tx;
	free(klo);
	free(khi);
	return in_tx ? 0 : flush(s, err);
}

int
store_etcd_task_put(struct store_etcd *s, const struct store_task *t, struct shoal_err *err)
{
	return queue(s, ETCD_OP_PUT, key_of(s, "tasks", t->id), NULL, store_etcd_row_task_encode(t),
	             0, err);
}

int
store_etcd_task_delete(struct store_etcd *s, const char *id, struct shoal_err *err)
{
	return queue(s, ETCD_OP_DELETE, key_of(s, "tasks", id), NULL, NULL, 0, err);
}

int
store_etcd_meta_put(struct store_etcd *s, const char *key, const char *value, struct shoal_err *err)
{
	return queue(s, ETCD_OP_PUT, key_of(s, "meta", key), NULL, xstrdup(value), 0, err);
}

int
store_etcd_tx_begin(struct store_etcd *s, struct shoal_err *err)
{
	(void)err;
	s->in_tx = 1;
	return 0;
}

int
store_etcd_tx_commit(struct store_etcd *s, struct shoal_err *err)
{
	if (!s->in_tx)
		return 0;
	s->in_tx = 0;
	return flush(s, err);
}

/* --- reads -------------------------------------------------------------------------------- */

/* Every key under PREFIX sub, in key order, in pages read at one revision. fn returns -1
 * (with err) to stop. */
static int
scan(struct store_etcd *s, const char *sub,
     int (*fn)(const struct etcd_kv *kv, void *arg, struct shoal_err *err), void *arg,
     struct shoal_err *err)
{
	cleanup_free char *start = xasprintf("%s%s", s->prefix, sub);
	cleanup_free char *end = etcd_prefix_end(start);
	char *from = xstrdup(start);
	int64_t rev = 0;
	int rc = 0, first = 1;

	for (;;) {
		struct etcd_range r;

		if (etcd_sync_range_end(s->e, from, end, rev, PAGE, &r, err) == -1) {
			err_prefix(err, "store: list %s", sub);
			rc = -1;
			break;
		}
		if (rev == 0)
			rev = r.revision;
		for (size_t i = 0; i < r.n && rc == 0; i++) {
			/* Pages restart at the last key read (a C string cannot say key + "\0"). */
			if (!first && i == 0 && strcmp(r.kvs[i].key, from) == 0)
				continue;
			rc = fn(&r.kvs[i], arg, err);
		}
		first = 0;
		if (rc == 0 && r.more && r.n > 0) {
			free(from);
			from = xstrdup(r.kvs[r.n - 1].key);
		} else {
			etcd_range_clear(&r);
			break;
		}
		etcd_range_clear(&r);
	}
	free(from);
	return rc;
}

struct pin {
	char *service;
	uint64_t version;
	char *digest;
};

static int
pin_decode(const struct etcd_kv *kv, struct pin *p, struct shoal_err *err)
{
	const char *rest = strstr(kv->key, "pins/"), *slash;
	char *end;
	unsigned long long v;

	/* PREFIX pins/SERVICE/VERSION: the service name has no '/'. */
	if (rest == NULL || (slash = strrchr(rest + 5, '/')) == NULL || slash == rest + 5)
		return err_set(err, 0, "store: malformed pin key");
	v = strtoull(slash + 1, &end, 10);
	if (*end != '\0' || end == slash + 1)
		return err_set(err, 0, "store: malformed pin key");
	p->service = strndup(rest + 5, (size_t)(slash - rest - 5));
	SHOAL_ASSERT(p->service != NULL);
	p->version = v;
	p->digest = xstrdup(kv->value);
	return 0;
}

static int
node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_node *)a)->name, ((const struct store_node *)b)->name);
}

static int
service_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_service *)a)->name,
	              ((const struct store_service *)b)->name);
}

/* The SQLite store's order: service, slot, created_ms. */
static int
task_cmp(const void *pa, const void *pb)
{
	const struct store_task *a = pa, *b = pb;
	int c = strcmp(a->service, b->service);

	if (c)
		return c;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	if (a->created_ms != b->created_ms)
		return a->created_ms < b->created_ms ? -1 : 1;
	return strcmp(a->id, b->id);
}

static int
pin_cmp(const void *pa, const void *pb)
{
	const struct pin *a = pa, *b = pb;

	if (a->version != b->version)
		return a->version < b->version ? -1 : 1;
	return strcmp(a->service, b->service);
}

/* The kinds of record listed under a key prefix; one loader serves them all, the switches
 * below say what differs (decode, the caller's callback, free). */
enum kind { KIND_NODE, KIND_SERVICE, KIND_TASK, KIND_PIN };

static const struct {
	const char *sub;
	size_t size;
	int (*cmp)(const void *a, const void *b); /* the SQLite store's order */
} kinds[] = {
    [KIND_NODE] = {"nodes/", sizeof(struct store_node), node_cmp},
    [KIND_SERVICE] = {"services/", sizeof(struct store_service), service_cmp},
    [KIND_TASK] = {"tasks/", sizeof(struct store_task), task_cmp},
    [KIND_PIN] = {"pins/", sizeof(struct pin), pin_cmp},
};

/* The caller's callback, typed per kind. */
union each_fn {
	void (*node)(const struct store_node *n, void *arg);
	void (*service)(const struct store_service *sv, void *arg);
	void (*task)(const struct store_task *t, void *arg);
	void (*pin)(const char *service, uint64_t version, const char *digest, void *arg);
};

struct rows {
	enum kind k;
	void *v;
	size_t n, cap;
};

static int
row_decode(enum kind k, const struct etcd_kv *kv, void *row, struct shoal_err *err)
{
	switch (k) {
	case KIND_NODE:
		return store_etcd_row_node_decode(kv->value, row, err);
	case KIND_SERVICE:
		return store_etcd_row_service_decode(kv->value, row, err);
	case KIND_TASK:
		return store_etcd_row_task_decode(kv->value, row, err);
	case KIND_PIN:
		return pin_decode(kv, row, err);
	}
	return err_set(err, 0, "store: unknown record kind %d", (int)k);
}

static void
row_visit(enum kind k, void *row, union each_fn fn, void *arg)
{
	const struct pin *p = row;

	switch (k) {
	case KIND_NODE:
		fn.node(row, arg);
		break;
	case KIND_SERVICE:
		fn.service(row, arg);
		break;
	case KIND_TASK:
		fn.task(row, arg);
		break;
	case KIND_PIN:
		fn.pin(p->service, p->version, p->digest, arg);
		break;
	}
}

static void
row_clear(enum kind k, void *row)
{
	struct pin *p = row;

	switch (k) {
	case KIND_NODE:
		store_node_clear(row);
		break;
	case KIND_SERVICE:
		store_etcd_row_service_clear(row);
		break;
	case KIND_TASK:
		store_etcd_row_task_clear(row);
		break;
	case KIND_PIN:
		free(p->service);
		free(p->digest);
		break;
	}
}

static int
rows_add(const struct etcd_kv *kv, void *arg, struct shoal_err *err)
{
	struct rows *r = arg;
	size_t size = kinds[r->k].size;

	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 64;
		r->v = xrealloc(r->v, r->cap * size);
	}
	/* A row that fails to decode owns nothing and is not counted. */
	if (row_decode(r->k, kv, (char *)r->v + size * r->n, err) == -1)
		return err_prefix(err, "%s", kv->key);
	r->n++;
	return 0;
}

/* Every record of kind k, read at one revision, sorted, each handed to fn; nothing is handed
 * on if one fails to read. */
static int
each_sorted(struct store_etcd *s, enum kind k, union each_fn fn, void *arg, struct shoal_err *err)
{
	struct rows r = {.k = k};
	size_t size = kinds[k].size;
	int rc = scan(s, kinds[k].sub, rows_add, &r, err);

	if (rc == 0 && r.n > 0) { /* qsort(NULL, 0) is undefined */
		qsort(r.v, r.n, size, kinds[k].cmp);
		for (size_t i = 0; i < r.n; i++)
			row_visit(k, (char *)r.v + size * i, fn, arg);
	}
	for (size_t i = 0; i < r.n; i++)
		row_clear(k, (char *)r.v + size * i);
	free(r.v);
	return rc;
}

int
store_etcd_node_each(struct store_etcd *s, void (*fn)(const struct store_node *n, void *arg),
                     void *arg, struct shoal_err *err)
{
	return each_sorted(s, KIND_NODE, (union each_fn){.node = fn}, arg, err);
}

int
store_etcd_service_each(struct store_etcd *s, void (*fn)(const struct store_service *sv, void *arg),
                        void *arg, struct shoal_err *err)
{
	return each_sorted(s, KIND_SERVICE, (union each_fn){.service = fn}, arg, err);
}

int
store_etcd_task_each(struct store_etcd *s, void (*fn)(const struct store_task *t, void *arg),
                     void *arg, struct shoal_err *err)
{
	return each_sorted(s, KIND_TASK, (union each_fn){.task = fn}, arg, err);
}

int
store_etcd_pin_each(struct store_etcd *s,
                    void (*fn)(const char *service, uint64_t version, const char *digest,
                               void *arg),
                    void *arg, struct shoal_err *err)
{
	return each_sorted(s, KIND_PIN, (union each_fn){.pin = fn}, arg, err);
}

char *
store_etcd_meta_get(struct store_etcd *s, const char *key, struct shoal_err *err)
{
	cleanup_free char *k = key_of(s, "meta", key);
	struct etcd_range r;
	char *v = NULL;

	if (etcd_sync_range(s->e, k, 0, 0, 0, &r, err) == -1) {
		err_prefix(err, "store: meta get %s", key);
		return NULL;
	}
	if (r.n == 1)
		v = xstrdup(r.kvs[0].value);
	else
		err_set(err, 0, "store: no %s", key);
	etcd_range_clear(&r);
	return v;
}
