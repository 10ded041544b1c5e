#include "store_etcd_row.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "util.h"

static char *
dump(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	SHOAL_ASSERT(s != NULL);
	return s;
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

char *
store_etcd_row_node_encode(const struct store_node *n)
{
	return dump(json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:I, s:s, s:s}", "id", n->id, "name", n->name,
	    "address", n->address ? n->address : "", "labels", n->labels ? n->labels : "",
	    "availability", n->availability ? n->availability : "active", "cpu_millis",
	    (json_int_t)n->cpu_millis, "memory_bytes", (json_int_t)n->memory_bytes, "subnet_index",
	    n->subnet_index, "created_ms", (json_int_t)n->created_ms, "node_key",
	    n->node_key ? n->node_key : "", "admin_labels",
	    n->admin_labels ? n->admin_labels : ""));
}

/* One member of a record: its name, type and place in the row (offsetof). */
enum field_type {
	F_STR,     /* char *: required */
	F_STR_OPT, /* char *: NULL when absent or null */
	F_I64,     /* int64_t */
	F_INT,     /* int */
	F_U32,     /* uint32_t */
	F_U64,     /* uint64_t */
};

struct field {
	const char *name;
	enum field_type type;
	size_t off;
};

/* Fill row's members from object o by the table f; 1 when one is missing or of the wrong
 * type (what was copied stays, for the caller's clear). */
static int
decode_fields(const json_t *o, const struct field *f, size_t n, void *row)
{
	int bad = !json_is_object(o);

	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_object_get(o, f[i].name);
		char *p = (char *)row + f[i].off;
		json_int_t x = json_integer_value(v);

		if (f[i].type == F_STR || f[i].type == F_STR_OPT) {
			if (json_is_string(v))
				*(char **)p = xstrdup(json_string_value(v));
			else
				bad |= !(f[i].type == F_STR_OPT && (v == NULL || json_is_null(v)));
			continue;
		}
		bad |= !json_is_integer(v);
		switch (f[i].type) {
		case F_I64:
			*(int64_t *)p = x;
			break;
		case F_INT: /* enums, counts, indexes: never negative */
			bad |= x < 0 || x > INT32_MAX;
			*(int *)p = (int)x;
			break;
		case F_U32:
			*(uint32_t *)p = (uint32_t)x;
			break;
		default:
			*(uint64_t *)p = (uint64_t)x;
			break;
		}
	}
	return bad;
}

/* A kind of record: its members, and an optional group decoded only when its first member
 * is present (then the bool at typed_off is set). */
struct record {
	const char *what;
	const struct field *f, *opt;
	size_t n, nopt, typed_off;
	void (*clear)(void *row);
};

/* Decode text into row by r; on a malformed value row is cleared and -1 returned with err. */
static int
decode_record(const struct record *r, const char *text, void *row, size_t size,
              struct shoal_err *err)
{
	json_t *o = json_loads(text, 0, NULL);
	int bad;

	memset(row, 0, size);
	bad = decode_fields(o, r->f, r->n, row);
	if (r->opt && json_object_get(o, r->opt[0].name) != NULL) {
		bad |= decode_fields(o, r->opt, r->nopt, row);
		*(bool *)((char *)row + r->typed_off) = true;
	}
	json_decref(o);
	if (bad) {
		r->clear(row);
		return err_set(err, 0, "store: malformed %s record", r->what);
	}
	return 0;
}

#define FIELD(type, name, t)                                                                       \
	{                                                                                          \
#name, t, offsetof(type, name)                                                     \
	}

static const struct field node_fields[] = {
    FIELD(struct store_node, id, F_STR),
    FIELD(struct store_node, name, F_STR),
    FIELD(struct store_node, address, F_STR),
    FIELD(struct store_node, labels, F_STR),
    FIELD(struct store_node, availability, F_STR),
    FIELD(struct store_node, node_key, F_STR),
    /* Absent in records written before `shoal node update`. */
    FIELD(struct store_node, admin_labels, F_STR_OPT),
    FIELD(struct store_node, cpu_millis, F_I64),
    FIELD(struct store_node, memory_bytes, F_I64),
    FIELD(struct store_node, subnet_index, F_INT),
    FIELD(struct store_node, created_ms, F_I64),
};

static void
node_clear(void *row)
{
	store_node_clear(row);
}

int
store_etcd_row_node_decode(const char *text, struct store_node *n, struct shoal_err *err)
{
	static const struct record r = {
	    .what = "node", .f = node_fields, .n = ARRAY_SIZE(node_fields), .clear = node_clear};

	return decode_record(&r, text, n, sizeof(*n), err);
}

char *
store_etcd_row_service_encode(const struct store_service *sv)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:i}", "name", sv->name, "spec_json",
	              sv->spec_json, "version", (json_int_t)sv->version, "prev_version",
	              (json_int_t)sv->prev_version, "created_ms", (json_int_t)sv->created_ms,
	              "updated_ms", (json_int_t)sv->updated_ms, "removed", sv->removed);

	json_object_set_new(o, "prev_spec_json", str_or_null(sv->prev_spec_json));
	json_object_set_new(o, "update_state", str_or_null(sv->update_state));
	/* The typed state, as the SQLite store's columns; a record without it (an older
	 * scheduler's) reads as text only and reconcile_load parses the text. */
	if (sv->update_typed) {
		json_object_set_new(o, "update_kind", json_integer(sv->update_kind));
		json_object_set_new(o, "update_message", str_or_null(sv->update_message));
	}
	return dump(o);
}

void
store_etcd_row_service_clear(struct store_service *sv)
{
	free(sv->name);
	free(sv->spec_json);
	free(sv->prev_spec_json);
	free(sv->update_state);
	free(sv->update_message);
	memset(sv, 0, sizeof(*sv));
}

static const struct field service_fields[] = {
    FIELD(struct store_service, name, F_STR),
    FIELD(struct store_service, spec_json, F_STR),
    FIELD(struct store_service, prev_spec_json, F_STR_OPT),
    FIELD(struct store_service, update_state, F_STR_OPT),
    FIELD(struct store_service, version, F_U64),
    FIELD(struct store_service, prev_version, F_U64),
    FIELD(struct store_service, created_ms, F_I64),
    FIELD(struct store_service, updated_ms, F_I64),
    FIELD(struct store_service, removed, F_INT),
};

/* The typed update state: only in records that have it. */
static const struct field service_update_fields[] = {
    FIELD(struct store_service, update_kind, F_INT),
    FIELD(struct store_service, update_message, F_STR_OPT),
};

static void
service_clear(void *row)
{
	store_etcd_row_service_clear(row);
}

int
store_etcd_row_service_decode(const char *text, struct store_service *sv, struct shoal_err *err)
{
	static const struct record r = {.what = "service",
	                                .f = service_fields,
	                                .n = ARRAY_SIZE(service_fields),
	                                .opt = service_update_fields,
	                                .nopt = ARRAY_SIZE(service_update_fields),
	                                .typed_off = offsetof(struct store_service, update_typed),
	                                .clear = service_clear};

	return decode_record(&r, text, sv, sizeof(*sv), err);
}

char *
store_etcd_row_task_encode(const struct store_task *t)
{
	return dump(json_pack(
	    "{s:s, s:s, s:I, s:I, s:s, s:i, s:i, s:I, s:I, s:s}", "id", t->id, "service",
	    t->service, "slot", (json_int_t)t->slot, "version", (json_int_t)t->version, "node_id",
	    t->node_id ? t->node_id : "", "desired", t->desired, "role", t->role, "restarts",
	    (json_int_t)t->restarts, "created_ms", (json_int_t)t->created_ms, "name", t->name));
}

void
store_etcd_row_task_clear(struct store_task *t)
{
	free(t->id);
	free(t->service);
	free(t->node_id);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

static const struct field task_fields[] = {
    FIELD(struct store_task, id, F_STR),       FIELD(struct store_task, service, F_STR),
    FIELD(struct store_task, node_id, F_STR),  FIELD(struct store_task, name, F_STR),
    FIELD(struct store_task, slot, F_U32),     FIELD(struct store_task, version, F_U64),
    FIELD(struct store_task, desired, F_INT),  FIELD(struct store_task, role, F_INT),
    FIELD(struct store_task, restarts, F_U32), FIELD(struct store_task, created_ms, F_I64),
};

static void
task_clear(void *row)
{
	store_etcd_row_task_clear(row);
}

int
store_etcd_row_task_decode(const char *text, struct store_task *t, struct shoal_err *err)
{
	static const struct record r = {
	    .what = "task", .f = task_fields, .n = ARRAY_SIZE(task_fields), .clear = task_clear};

	return decode_record(&r, text, t, sizeof(*t), err);
}
