#include "manifest_json.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "manifest_internal.h"
#include "manifest_spec.h"
#include "util.h"

/* ------------------------------------------------------------------ JSON */

static json_t *
argv_to_json(const struct manifest_argv *a)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < a->n; i++)
		json_array_append_new(arr, json_string(a->v[i]));
	return arr;
}

char *
manifest_spec_to_json(const struct service_spec *s)
{
	json_t *o = json_object(), *env = json_object(), *ports = json_array(),
	       *cons = json_array(), *health;
	char *text;

	json_object_set_new(o, "name", json_string(s->name ? s->name : ""));
	json_object_set_new(o, "image", json_string(s->image ? s->image : ""));
	json_object_set_new(o, "replicas", json_integer(s->replicas));
	if (s->entrypoint.set)
		json_object_set_new(o, "entrypoint", argv_to_json(&s->entrypoint));
	if (s->command.set)
		json_object_set_new(o, "command", argv_to_json(&s->command));
	for (size_t i = 0; i < s->n_env; i++)
		json_object_set_new(env, s->env[i].name, json_string(s->env[i].value));
	json_object_set_new(o, "env", env);
	for (size_t i = 0; i < s->n_ports; i++)
		json_array_append_new(ports, json_pack("{s:i,s:i}", "published",
		                                       (int)s->ports[i].published, "target",
		                                       (int)s->ports[i].target));
	json_object_set_new(o, "ports", ports);
	json_object_set_new(o, "resources",
	                    json_pack("{s:I,s:I,s:I}", "cpu_millis",
	                              (json_int_t)s->resources.cpu_millis, "memory_bytes",
	                              (json_int_t)s->resources.memory_bytes, "pids",
	                              (json_int_t)s->resources.pids));
	json_object_set_new(o, "restart",
	                    json_pack("{s:s,s:I,s:I}", "policy",
	                              manifest_restart_names[s->restart.policy], "max_attempts",
	                              (json_int_t)s->restart.max_attempts, "delay_ms",
	                              (json_int_t)s->restart.delay_ms));
	for (size_t i = 0; i < s->placement.n_constraints; i++) {
		char *t = manifest_constraint_format(&s->placement.constraints[i]);
		json_array_append_new(cons, json_string(t));
		free(t);
	}
	json_object_set_new(o, "placement",
	                    json_pack("{s:o,s:I}", "constraints", cons, "max_per_node",
	                              (json_int_t)s->placement.max_per_node));
	health = json_pack("{s:s,s:I,s:I,s:I,s:I}", "kind", manifest_health_names[s->health.kind],
	                   "interval_ms", (json_int_t)s->health.interval_ms, "timeout_ms",
	                   (json_int_t)s->health.timeout_ms, "start_period_ms",
	                   (json_int_t)s->health.start_period_ms, "retries",
	                   (json_int_t)s->health.retries);
	if (s->health.http_path)
		json_object_set_new(health, "http", json_string(s->health.http_path));
	if (s->health.kind == MANIFEST_HEALTH_HTTP || s->health.kind == MANIFEST_HEALTH_TCP)
		json_object_set_new(health, "port", json_integer(s->health.port));
	if (s->health.cmd.set)
		json_object_set_new(health, "cmd", argv_to_json(&s->health.cmd));
	json_object_set_new(o, "health", health);
	json_object_set_new(o, "update",
	                    json_pack("{s:I,s:I,s:s,s:s,s:I}", "parallelism",
	                              (json_int_t)s->update.parallelism, "delay_ms",
	                              (json_int_t)s->update.delay_ms, "order",
	                              manifest_order_names[s->update.order], "failure_action",
	                              manifest_action_names[s->update.failure_action], "monitor_ms",
	                              (json_int_t)s->update.monitor_ms));
	/* Only when not the default: specs stored before the key keep their exact text. */
	if (s->update.timeout_ms != MANIFEST_UPDATE_TIMEOUT_MS)
		json_object_set_new(json_object_get(o, "update"), "timeout_ms",
		                    json_integer(s->update.timeout_ms));
	json_object_set_new(o, "stop_grace_ms", json_integer(s->stop_grace_ms));
	json_object_set_new(o, "network", json_string(manifest_network_names[s->network]));
	/* Only when not the defaults: specs stored before these keys keep their exact text. */
	if (s->proxy.max_conns_per_replica != 0 || s->proxy.queue_timeout_ms != 30000 ||
	    s->proxy.protocol != MANIFEST_PROXY_PROTOCOL_NONE ||
	    s->proxy.mode != MANIFEST_PROXY_MODE_TCP) {
		json_t *px = json_pack("{s:I,s:I}", "max_conns_per_replica",
		                       (json_int_t)s->proxy.max_conns_per_replica,
		                       "queue_timeout_ms", (json_int_t)s->proxy.queue_timeout_ms);

		/* The same rule one level down: a spec without them keeps its exact text. */
		if (s->proxy.protocol != MANIFEST_PROXY_PROTOCOL_NONE)
			json_object_set_new(
			    px, "protocol",
			    json_string(manifest_proxy_protocol_names[s->proxy.protocol]));
		if (s->proxy.mode != MANIFEST_PROXY_MODE_TCP)
			json_object_set_new(px, "mode",
			                    json_string(manifest_proxy_mode_names[s->proxy.mode]));
		json_object_set_new(o, "proxy", px);
	}
	json_object_set_new(o, "no_new_privileges", json_boolean(s->no_new_privileges));
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	SHOAL_ASSERT(text != NULL);
	json_decref(o);
	return text;
}

static int
env_cmp(const void *a, const void *b)
{
	return strcmp(((const struct manifest_env *)a)->name,
	              ((const struct manifest_env *)b)->name);
}

/*
 * Readers for manifest_spec_from_json: absent keys keep the default. A number is refused here
 * only when it does not fit its field (a port: 0, absent, or within LIM_PORT); the limits
 * table's ranges are manifest_spec_check's, which every spec the scheduler is sent passes
 * (apply, scale), while a stored row is read as it is, so a limit tightened in a later version
 * cannot make a stored service vanish when the scheduler restarts.
 */
static int
js_int(json_t *o, const char *key, json_int_t min, json_int_t max, json_int_t *out,
       struct shoal_err *err)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_integer(v))
		return err_set(err, 0, "%s: expected an integer", key);
	if (json_integer_value(v) < min || json_integer_value(v) > max)
		return err_set(err, 0, "%s: %" JSON_INTEGER_FORMAT " out of range", key,
		               json_integer_value(v));
	*out = json_integer_value(v);
	return 0;
}

static int
js_u32(json_t *o, const char *key, uint32_t *out, struct shoal_err *err)
{
	json_int_t x = *out;

	if (js_int(o, key, 0, UINT32_MAX, &x, err) == -1)
		return -1;
	*out = (uint32_t)x;
	return 0;
}

static int
js_i64(json_t *o, const char *key, int64_t *out, struct shoal_err *err)
{
	json_int_t x = *out;

	if (js_int(o, key, 0, INT64_MAX, &x, err) == -1)
		return -1;
	*out = x;
	return 0;
}

static int
js_bool(json_t *o, const char *key, bool *out, struct shoal_err *err)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return err_set(err, 0, "%s: expected true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int
js_str(json_t *o, const char *key, char **out, struct shoal_err *err)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return err_set(err, 0, "%s: expected a string", key);
	free(*out);
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int
js_enum(json_t *o, const char *key, const char *const *names, size_t n, int *out,
        struct shoal_err *err)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (json_is_string(v) && strcmp(json_string_value(v), names[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return err_set(err, 0, "%s: invalid value", key);
}

static int
js_argv(json_t *o, const char *key, struct manifest_argv *out, struct shoal_err *err)
{
	json_t *v = json_object_get(o, key), *it;
	size_t i;

	if (v == NULL)
		return 0;
	if (!json_is_array(v))
		return err_set(err, 0, "%s: expected an array", key);
	manifest_argv_free(out);
	out->set = true;
	json_array_foreach(v, i, it)
	{
		if (!json_is_string(it))
			return err_set(err, 0, "%s[%zu]: expected a string", key, i);
		manifest_argv_push(out, json_string_value(it), strlen(json_string_value(it)));
	}
	return 0;
}

/* Get a nested object, or an empty one when absent, so its fields take their defaults. */
static json_t *
js_obj(json_t *o, const char *key, struct shoal_err *err)
{
	json_t *v = json_object_get(o, key);

	if (v == NULL)
		return json_object();
	if (!json_is_object(v)) {
		err_set(err, 0, "%s: expected an object", key);
		return NULL;
	}
	return json_incref(v);
}

static int
spec_from_json(json_t *root, struct service_spec *s, struct shoal_err *err)
{
	json_t *v, *it, *sec = NULL;
	const char *k;
	json_int_t x;
	size_t i;
	int e;

	if (!json_is_object(root))
		return err_set(err, 0, "expected an object");
	if (js_str(root, "name", &s->name, err) == -1 ||
	    js_str(root, "image", &s->image, err) == -1 ||
	    js_u32(root, "replicas", &s->replicas, err) == -1 ||
	    js_argv(root, "entrypoint", &s->entrypoint, err) == -1 ||
	    js_argv(root, "command", &s->command, err) == -1 ||
	    js_i64(root, "stop_grace_ms", &s->stop_grace_ms, err) == -1 ||
	    js_bool(root, "no_new_privileges", &s->no_new_privileges, err) == -1)
		return -1;
	if (s->name == NULL || s->image == NULL)
		return err_set(err, 0, "name and image are required");
	e = (int)s->network;
	if (js_enum(root, "network", manifest_network_names, ARRAY_SIZE(manifest_network_names), &e,
	            err) == -1)
		return -1;
	s->network = (enum manifest_network)e;

	if ((v = json_object_get(root, "env")) != NULL) {
		if (!json_is_object(v))
			return err_set(err, 0, "env: expected an object");
		s->env = xcalloc(json_object_size(v) + 1, sizeof(*s->env));
		json_object_foreach(v, k, it)
		{
			if (!json_is_string(it))
				return err_set(err, 0, "env.%s: expected a string", k);
			s->env[s->n_env].name = xstrdup(k);
			s->env[s->n_env++].value = xstrdup(json_string_value(it));
		}
		/* The parser's order, whatever order the text had. */
		qsort(s->env, s->n_env, sizeof(*s->env), env_cmp);
	}
	if ((v = json_object_get(root, "ports")) != NULL) {
		if (!json_is_array(v))
			return err_set(err, 0, "ports: expected an array");
		s->ports = xcalloc(json_array_size(v) + 1, sizeof(*s->ports));
		json_array_foreach(v, i, it)
		{
			if (!json_is_object(it))
				return err_set(err, 0, "ports[%zu]: expected an object", i);
			x = 0;
			if (js_int(it, "published", 0, manifest_limits[LIM_PORT].max, &x, err) ==
			    -1)
				return -1;
			s->ports[i].published = (uint16_t)x;
			x = 0;
			if (js_int(it, "target", LIM(LIM_PORT), &x, err) == -1)
				return -1;
			s->ports[i].target = (uint16_t)x;
			s->n_ports++;
		}
	}

	if ((sec = js_obj(root, "resources", err)) == NULL)
		return -1;
	if (js_u32(sec, "cpu_millis", &s->resources.cpu_millis, err) == -1 ||
	    js_i64(sec, "memory_bytes", &s->resources.memory_bytes, err) == -1 ||
	    js_i64(sec, "pids", &s->resources.pids, err) == -1)
		goto fail;
	json_decref(sec);

	if ((sec = js_obj(root, "restart", err)) == NULL)
		return -1;
	e = (int)s->restart.policy;
	if (js_enum(sec, "policy", manifest_restart_names, ARRAY_SIZE(manifest_restart_names), &e,
	            err) == -1 ||
	    js_u32(sec, "max_attempts", &s->restart.max_attempts, err) == -1 ||
	    js_i64(sec, "delay_ms", &s->restart.delay_ms, err) == -1)
		goto fail;
	s->restart.policy = (enum manifest_restart_policy)e;
	json_decref(sec);

	if ((sec = js_obj(root, "placement", err)) == NULL)
		return -1;
	if (js_u32(sec, "max_per_node", &s->placement.max_per_node, err) == -1)
		goto fail;
	if ((v = json_object_get(sec, "constraints")) != NULL) {
		if (!json_is_array(v)) {
			err_set(err, 0, "constraints: expected an array");
			goto fail;
		}
		s->placement.constraints =
		    xcalloc(json_array_size(v) + 1, sizeof(*s->placement.constraints));
		json_array_foreach(v, i, it)
		{
			if (!json_is_string(it)) {
				err_set(err, 0, "constraints[%zu]: expected a string", i);
				goto fail;
			}
			if (manifest_constraint_parse(json_string_value(it),
			                              &s->placement.constraints[i], err) == -1)
				goto fail;
			s->placement.n_constraints++;
		}
	}
	json_decref(sec);

	if ((sec = js_obj(root, "health", err)) == NULL)
		return -1;
	e = (int)s->health.kind;
	x = s->health.port;
	if (js_enum(sec, "kind", manifest_health_names, ARRAY_SIZE(manifest_health_names), &e,
	            err) == -1 ||
	    js_str(sec, "http", &s->health.http_path, err) == -1 ||
	    js_int(sec, "port", 0, manifest_limits[LIM_PORT].max, &x, err) == -1 ||
	    js_argv(sec, "cmd", &s->health.cmd, err) == -1 ||
	    js_i64(sec, "interval_ms", &s->health.interval_ms, err) == -1 ||
	    js_i64(sec, "timeout_ms", &s->health.timeout_ms, err) == -1 ||
	    js_i64(sec, "start_period_ms", &s->health.start_period_ms, err) == -1 ||
	    js_u32(sec, "retries", &s->health.retries, err) == -1)
		goto fail;
	s->health.kind = (enum manifest_health_kind)e;
	s->health.port = (uint16_t)x;
	json_decref(sec);

	if ((sec = js_obj(root, "update", err)) == NULL)
		return -1;
	if (js_u32(sec, "parallelism", &s->update.parallelism, err) == -1 ||
	    js_i64(sec, "delay_ms", &s->update.delay_ms, err) == -1 ||
	    js_i64(sec, "monitor_ms", &s->update.monitor_ms, err) == -1 ||
	    js_i64(sec, "timeout_ms", &s->update.timeout_ms, err) == -1)
		goto fail;
	e = (int)s->update.order;
	if (js_enum(sec, "order", manifest_order_names, ARRAY_SIZE(manifest_order_names), &e,
	            err) == -1)
		goto fail;
	s->update.order = (enum manifest_update_order)e;
	e = (int)s->update.failure_action;
	if (js_enum(sec, "failure_action", manifest_action_names, ARRAY_SIZE(manifest_action_names),
	            &e, err) == -1)
		goto fail;
	s->update.failure_action = (enum manifest_failure_action)e;
	json_decref(sec);

	if ((sec = js_obj(root, "proxy", err)) == NULL)
		return -1;
	if (js_u32(sec, "max_conns_per_replica", &s->proxy.max_conns_per_replica, err) == -1 ||
	    js_i64(sec, "queue_timeout_ms", &s->proxy.queue_timeout_ms, err) == -1)
		goto fail;
	e = (int)s->proxy.protocol;
	if (js_enum(sec, "protocol", manifest_proxy_protocol_names,
	            ARRAY_SIZE(manifest_proxy_protocol_names), &e, err) == -1)
		goto fail;
	s->proxy.protocol = (enum manifest_proxy_protocol)e;
	e = (int)s->proxy.mode;
	if (js_enum(sec, "mode", manifest_proxy_mode_names, ARRAY_SIZE(manifest_proxy_mode_names),
	            &e, err) == -1)
		goto fail;
	s->proxy.mode = (enum manifest_proxy_mode)e;
	json_decref(sec);
	return 0;
fail:
	json_decref(sec);
	return -1;
}

/* Drop from o each key whose value equals the one def has; objects are compared key by key. */
static void
drop_defaults(json_t *o, json_t *def)
{
	const char *k;
	json_t *v;
	void *tmp;

	json_object_foreach_safe(o, tmp, k, v)
	{
		json_t *d = json_object_get(def, k);

		if (d == NULL)
			continue;
		if (json_is_object(v) && json_is_object(d)) {
			drop_defaults(v, d);
			if (json_object_size(v) == 0)
				json_object_del(o, k);
		} else if (json_equal(v, d)) {
			json_object_del(o, k);
		}
	}
}

char *
manifest_spec_json_wire(const char *json)
{
	struct service_spec def;
	json_t *o, *d;
	char *text;

	o = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
	if (o == NULL || !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	manifest_spec_init(&def);
	text = manifest_spec_to_json(&def);
	manifest_spec_free(&def);
	d = json_loads(text, 0, NULL);
	free(text);
	SHOAL_ASSERT(d != NULL);
	drop_defaults(o, d);
	json_object_del(o, "replicas");
	text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	SHOAL_ASSERT(text != NULL);
	json_decref(o);
	json_decref(d);
	return text;
}

int
manifest_spec_from_json(const char *json, struct service_spec *out, struct shoal_err *err)
{
	json_error_t jerr;
	json_t *root;

	manifest_spec_init(out);
	root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL)
		return err_set(err, 0, "spec json: %d:%d: %s", jerr.line, jerr.column, jerr.text);
	if (spec_from_json(root, out, err) == -1) {
		json_decref(root);
		manifest_spec_free(out);
		return err_prefix(err, "spec json");
	}
	json_decref(root);
	return 0;
}
