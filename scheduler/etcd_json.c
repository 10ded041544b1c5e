/* The etcd client's half that touches no network: request bodies and reply parsing for the
 * v3 JSON gateway (keys and values base64, 64-bit numbers as strings), and the splitting of a
 * watch stream into objects. Pure functions, unit-tested against captured replies and fuzzed
 * (tests/fuzz/etcd_reply.c); scheduler/etcd.c is the transport. */
#include "etcd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "err.h"
#include "util.h"

/* --- small helpers ----------------------------------------------------------------------- */

static char *
b64_encode(const void *data, size_t len)
{
	size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
	char *out = xmalloc(n);

	sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_ORIGINAL);
	return out;
}

/* Decode into a NUL-terminated copy; -1 when s is not base64. */
static int
b64_decode(const char *s, char **out, size_t *outlen)
{
	size_t n = strlen(s), len = 0;
	char *buf = xmalloc(n / 4 * 3 + 4);

	if (sodium_base642bin((unsigned char *)buf, n / 4 * 3 + 3, s, n, NULL, &len, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0) {
		free(buf);
		return -1;
	}
	buf[len] = '\0';
	*out = buf;
	if (outlen)
		*outlen = len;
	return 0;
}

static json_t *
b64_json(const void *data, size_t len)
{
	char *s = b64_encode(data, len);
	json_t *j = json_string(s);

	free(s);
	return j;
}

json_t *
etcd_json_i64(int64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%" PRId64, v);
	return json_string(buf);
}

/* A 64-bit number the gateway sends as a string (or, from others, as a number). Absent: 0.
 * -1 when present but not a number. */
static int
get_i64(const json_t *obj, const char *name, int64_t *out)
{
	const json_t *v = json_object_get(obj, name);
	char *end;

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	errno = 0;
	*out = strtoll(json_string_value(v), &end, 10);
	if (errno != 0 || end == json_string_value(v) || *end != '\0')
		return -1;
	return 0;
}

static int
get_bool(const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);
	return v != NULL && json_is_true(v);
}

char *
etcd_prefix_end(const char *key)
{
	size_t n = strlen(key);
	char *end = xstrdup(key);

	while (n > 0) {
		unsigned char c = (unsigned char)end[n - 1];
		if (c < 0xff) {
			end[n - 1] = (char)(c + 1);
			end[n] = '\0';
			return end;
		}
		n--;
	}
	/* No byte to increment: every key from key on ("\0" means no end in etcd). */
	free(end);
	return xstrdup("");
}

/* --- request bodies ---------------------------------------------------------------------- */

static void
set_range_end(json_t *o, const char *key, int prefix, const char *range_end)
{
	if (prefix) {
		char *end = etcd_prefix_end(key);
		/* An empty end (all keys from key) is the single byte 0 in etcd. */
		json_object_set_new(o, "range_end",
		                    *end ? b64_json(end, strlen(end)) : b64_json("", 1));
		free(end);
	} else if (range_end) {
		json_object_set_new(o, "range_end", b64_json(range_end, strlen(range_end)));
	}
}

json_t *
etcd_json_range(const char *key, int prefix, int64_t revision, int64_t limit)
{
	return etcd_json_range_end(key, prefix ? NULL : "", revision, limit);
}

json_t *
etcd_json_range_end(const char *key, const char *range_end, int64_t revision, int64_t limit)
{
	json_t *o = json_object();

	json_object_set_new(o, "key", b64_json(key, strlen(key)));
	if (range_end == NULL)
		set_range_end(o, key, 1, NULL);
	else if (range_end[0])
		set_range_end(o, key, 0, range_end);
	if (revision > 0)
		json_object_set_new(o, "revision", etcd_json_i64(revision));
	if (limit > 0)
		json_object_set_new(o, "limit", etcd_json_i64(limit));
	return o;
}

static json_t *
op_json(const struct etcd_op *op)
{
	json_t *o = json_object(), *r = json_object();

	json_object_set_new(r, "key", b64_json(op->key, strlen(op->key)));
	switch (op->kind) {
	case ETCD_OP_PUT:
		json_object_set_new(r, "value",
		                    b64_json(op->value ? op->value : "", op->value_len));
		if (op->lease)
			json_object_set_new(r, "lease", etcd_json_i64(op->lease));
		json_object_set_new(o, "request_put", r);
		break;
	case ETCD_OP_DELETE:
		set_range_end(r, op->key, op->prefix, op->range_end);
		json_object_set_new(o, "request_delete_range", r);
		break;
	case ETCD_OP_RANGE:
		set_range_end(r, op->key, op->prefix, op->range_end);
		json_object_set_new(o, "request_range", r);
		break;
	case ETCD_OP_TXN:
		json_decref(r);
		json_object_set_new(o, "request_txn", etcd_json_txn(op->txn));
		break;
	}
	return o;
}

json_t *
etcd_json_txn(const struct etcd_txn *t)
{
	static const char *const targets[] = {"CREATE", "MOD", "VERSION", "VALUE"};
	static const char *const results[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
	static const char *const fields[] = {"create_revision", "mod_revision", "version", NULL};
	json_t *o = json_object(), *cmp = json_array(), *succ = json_array(), *fail = json_array();

	for (size_t i = 0; i < t->ncmp; i++) {
		const struct etcd_cmp *c = &t->cmp[i];
		json_t *j = json_object();

		json_object_set_new(j, "key", b64_json(c->key, strlen(c->key)));
		json_object_set_new(j, "target", json_string(targets[c->target]));
		json_object_set_new(j, "result", json_string(results[c->result]));
		if (c->target == ETCD_CMP_VALUE)
			json_object_set_new(j, "value",
			                    b64_json(c->value ? c->value : "", c->value_len));
		else
			json_object_set_new(j, fields[c->target], etcd_json_i64(c->revision));
		json_array_append_new(cmp, j);
	}
	for (size_t i = 0; i < t->nsuccess; i++)
		json_array_append_new(succ, op_json(&t->success[i]));
	for (size_t i = 0; i < t->nfailure; i++)
		json_array_append_new(fail, op_json(&t->failure[i]));
	json_object_set_new(o, "compare", cmp);
	json_object_set_new(o, "success", succ);
	json_object_set_new(o, "failure", fail);
	return o;
}

json_t *
etcd_json_watch(const char *key, int prefix, int64_t start_revision)
{
	json_t *o = json_object(), *c = json_object();

	json_object_set_new(c, "key", b64_json(key, strlen(key)));
	set_range_end(c, key, prefix, NULL);
	if (start_revision > 0)
		json_object_set_new(c, "start_revision", etcd_json_i64(start_revision));
	json_object_set_new(o, "create_request", c);
	return o;
}

/* --- reply parsing ----------------------------------------------------------------------- */

/* The message of an error object: {"error": "...", "message": "...", "code": N} (unary) or
 * {"error": {"message", "grpc_code", "http_code"}} (streams). NULL when it is no error. */
static const char *
error_message(const json_t *body, int64_t *code)
{
	const json_t *e = json_object_get(body, "error");
	const json_t *m;

	*code = 0;
	if (e == NULL)
		return NULL;
	if (json_is_object(e)) {
		get_i64(e, "grpc_code", code);
		m = json_object_get(e, "message");
	} else {
		get_i64(body, "code", code);
		m = json_object_get(body, "message");
		if (!json_is_string(m))
			m = e;
	}
	return json_is_string(m) ? json_string_value(m) : "unknown error";
}

int
etcd_parse_status(long http_status, const json_t *body, struct shoal_err *err)
{
	const char *msg;
	int64_t code;

	if (body != NULL && json_is_object(body) && (msg = error_message(body, &code)) != NULL)
		return err_set(err, 0, "etcd: %.180s (code %" PRId64 ", http %ld)", msg, code,
		               http_status);
	if (http_status != 200)
		return err_set(err, 0, "etcd: http status %ld", http_status);
	if (body == NULL || !json_is_object(body))
		return err_set(err, 0, "etcd: reply is not a JSON object");
	return 0;
}

static int
parse_kv(const json_t *j, struct etcd_kv *kv, struct shoal_err *err)
{
	const json_t *k = json_object_get(j, "key"), *v = json_object_get(j, "value");

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j) || !json_is_string(k))
		return err_set(err, 0, "etcd: key/value without a key");
	if (b64_decode(json_string_value(k), &kv->key, NULL) == -1)
		return err_set(err, 0, "etcd: key is not base64");
	if (v != NULL && !json_is_string(v))
		goto bad;
	if (b64_decode(v ? json_string_value(v) : "", &kv->value, &kv->value_len) == -1)
		goto bad;
	if (get_i64(j, "create_revision", &kv->create_revision) == -1 ||
	    get_i64(j, "mod_revision", &kv->mod_revision) == -1 ||
	    get_i64(j, "version", &kv->version) == -1 || get_i64(j, "lease", &kv->lease) == -1)
		goto bad;
	return 0;
bad:
	err_set(err, 0, "etcd: malformed value or revision of key %.100s", kv->key);
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
	return -1;
}

static void
kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

static int
header_revision(const json_t *body, int64_t *rev, struct shoal_err *err)
{
	const json_t *h = json_object_get(body, "header");

	*rev = 0;
	if (h == NULL)
		return 0;
	if (!json_is_object(h) || get_i64(h, "revision", rev) == -1)
		return err_set(err, 0, "etcd: malformed header");
	return 0;
}

void
etcd_range_clear(struct etcd_range *r)
{
	for (size_t i = 0; i < r->n; i++)
		kv_clear(&r->kvs[i]);
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

int
etcd_parse_range(const json_t *body, struct etcd_range *out, struct shoal_err *err)
{
	const json_t *kvs = json_object_get(body, "kvs");

	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return err_set(err, 0, "etcd: range reply is not an object");
	if (header_revision(body, &out->revision, err) == -1)
		return -1;
	if (get_i64(body, "count", &out->count) == -1)
		return err_set(err, 0, "etcd: malformed count");
	out->more = get_bool(body, "more");
	if (kvs == NULL)
		return 0;
	if (!json_is_array(kvs))
		return err_set(err, 0, "etcd: kvs is not an array");
	out->kvs = xcalloc(json_array_size(kvs) + 1, sizeof(*out->kvs));
	for (size_t i = 0; i < json_array_size(kvs); i++) {
		if (parse_kv(json_array_get(kvs, i), &out->kvs[i], err) == -1) {
			etcd_range_clear(out);
			return -1;
		}
		out->n++;
	}
	return 0;
}

void
etcd_txn_result_clear(struct etcd_txn_result *r)
{
	for (size_t i = 0; i < r->n; i++)
		etcd_range_clear(&r->ops[i].range);
	free(r->ops);
	memset(r, 0, sizeof(*r));
}

int
etcd_parse_txn(const json_t *body, struct etcd_txn_result *out, struct shoal_err *err)
{
	const json_t *resp = json_object_get(body, "responses");

	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return err_set(err, 0, "etcd: txn reply is not an object");
	if (header_revision(body, &out->revision, err) == -1)
		return -1;
	out->succeeded = get_bool(body, "succeeded");
	if (resp == NULL)
		return 0;
	if (!json_is_array(resp))
		return err_set(err, 0, "etcd: txn responses is not an array");
	out->ops = xcalloc(json_array_size(resp) + 1, sizeof(*out->ops));
	for (size_t i = 0; i < json_array_size(resp); i++) {
		const json_t *r = json_array_get(resp, i), *x;
		struct etcd_op_result *o = &out->ops[i];

		if (!json_is_object(r))
			goto bad;
		out->n++;
		if ((x = json_object_get(r, "response_range")) != NULL) {
			o->kind = ETCD_OP_RANGE;
			if (etcd_parse_range(x, &o->range, err) == -1)
				goto fail;
		} else if ((x = json_object_get(r, "response_put")) != NULL) {
			o->kind = ETCD_OP_PUT;
		} else if ((x = json_object_get(r, "response_delete_range")) != NULL) {
			o->kind = ETCD_OP_DELETE;
			if (!json_is_object(x) || get_i64(x, "deleted", &o->deleted) == -1)
				goto bad;
		} else if ((x = json_object_get(r, "response_txn")) != NULL) {
			o->kind = ETCD_OP_TXN;
			o->succeeded = get_bool(x, "succeeded");
		} else {
			goto bad;
		}
	}
	return 0;
bad:
	err_set(err, 0, "etcd: malformed txn response");
fail:
	etcd_txn_result_clear(out);
	return -1;
}

int
etcd_parse_lease(const json_t *body, int64_t *id, int64_t *ttl, struct shoal_err *err)
{
	const json_t *r = json_object_get(body, "result");

	if (r == NULL)
		r = body;
	if (!json_is_object(r) || get_i64(r, "ID", id) == -1 || get_i64(r, "TTL", ttl) == -1)
		return err_set(err, 0, "etcd: malformed lease reply");
	return 0;
}

void
etcd_watch_msg_clear(struct etcd_watch_msg *m)
{
	for (size_t i = 0; i < m->n; i++)
		kv_clear(&m->events[i].kv);
	free(m->events);
	memset(m, 0, sizeof(*m));
}

int
etcd_parse_watch(const json_t *body, struct etcd_watch_msg *out, struct shoal_err *err)
{
	const json_t *r = json_object_get(body, "result"), *evs;

	memset(out, 0, sizeof(*out));
	if (etcd_parse_status(200, body, err) == -1)
		return -1;
	if (!json_is_object(r))
		return err_set(err, 0, "etcd: watch message without a result");
	if (header_revision(r, &out->revision, err) == -1 ||
	    get_i64(r, "compact_revision", &out->compact_revision) == -1)
		return err_set(err, 0, "etcd: malformed watch message");
	out->created = get_bool(r, "created");
	out->canceled = get_bool(r, "canceled");
	evs = json_object_get(r, "events");
	if (evs == NULL)
		return 0;
	if (!json_is_array(evs))
		return err_set(err, 0, "etcd: watch events is not an array");
	out->events = xcalloc(json_array_size(evs) + 1, sizeof(*out->events));
	for (size_t i = 0; i < json_array_size(evs); i++) {
		const json_t *ev = json_array_get(evs, i), *type;

		if (!json_is_object(ev)) {
			err_set(err, 0, "etcd: watch event is not an object");
			goto fail;
		}
		type = json_object_get(ev, "type");
		if (type != NULL &&
		    !(json_is_string(type) && (strcmp(json_string_value(type), "PUT") == 0 ||
		                               strcmp(json_string_value(type), "DELETE") == 0))) {
			err_set(err, 0, "etcd: unknown watch event type");
			goto fail;
		}
		out->events[i].type = type && strcmp(json_string_value(type), "DELETE") == 0
		                          ? ETCD_EVENT_DELETE
		                          : ETCD_EVENT_PUT;
		if (parse_kv(json_object_get(ev, "kv"), &out->events[i].kv, err) == -1)
			goto fail;
		out->n++;
	}
	return 0;
fail:
	etcd_watch_msg_clear(out);
	return -1;
}

/* --- stream of JSON objects -------------------------------------------------------------- */

int
etcd_stream_feed(struct etcd_stream *s, const char *data, size_t len,
                 int (*fn)(json_t *obj, void *arg), void *arg, struct shoal_err *err)
{
	size_t max = s->max ? s->max : ETCD_MAX_WATCH_MSG;
	size_t off = 0;

	if (s->len + len + 1 > s->cap) {
		s->cap = s->len + len + 1 > 2 * s->cap ? s->len + len + 1 : 2 * s->cap;
		s->buf = xrealloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	for (;;) {
		json_error_t je;
		json_t *obj;

		while (off < s->len && strchr(" \t\r\n", s->buf[off]) != NULL)
			off++;
		if (off == s->len)
			break;
		obj = json_loadb(s->buf + off, s->len - off, JSON_DISABLE_EOF_CHECK, &je);
		if (obj == NULL) {
			/* The rest comes in a later read: the input ended inside a value, or
			 * inside a literal ("tru" is an invalid token until its "e" comes). */
			if (json_error_code(&je) == json_error_premature_end_of_input ||
			    (size_t)je.position >= s->len - off)
				break;
			return err_set(err, 0, "etcd: watch stream is not JSON: %.100s", je.text);
		}
		off += (size_t)je.position;
		if (fn(obj, arg) == -1) {
			json_decref(obj);
			return err_set(err, 0, "etcd: watch stream ended by its reader");
		}
		json_decref(obj);
	}
	memmove(s->buf, s->buf + off, s->len - off);
	s->len -= off;
	if (s->len > max)
		return err_set(err, 0, "etcd: watch message above %zu bytes", max);
	return 0;
}

void
etcd_stream_clear(struct etcd_stream *s)
{
	free(s->buf);
	memset(s, 0, sizeof(*s));
}
