#include "manifest_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "manifest_internal.h"
#include "manifest_json.h"
#include "manifest_spec.h"
#include "util.h"

/*
 * A finished spec held to the one table of limits (manifest_internal.h): apart from the spec
 * itself because its last step measures the spec as JSON, and the JSON form needs the spec.
 */

struct check {
	const char *prefix; /* put before every line: "t.yaml:1:10: " or "service web: " */
	struct manifest_errors *errs;
	size_t n; /* lines this check added */
};

static void cerr(struct check *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
cerr(struct check *k, const char *fmt, ...)
{
	va_list ap;
	cleanup_free char *msg = NULL;
	cleanup_free char *line = NULL;

	va_start(ap, fmt);
	msg = manifest_xvasprintf(fmt, ap);
	va_end(ap);
	line = xasprintf("%s%s", k->prefix, msg);
	manifest_errs_add(k->errs, line);
	k->n++;
}

static void
check_range(struct check *k, const char *path, long long x, enum limit_id id)
{
	if (x < manifest_limits[id].min || x > manifest_limits[id].max)
		cerr(k, "%s: must be between %lld and %lld, got %lld", path, LIM(id), x);
}

static void
check_duration(struct check *k, const char *path, int64_t ms, bool positive)
{
	if (positive && ms <= 0)
		cerr(k, "%s: must be greater than 0, got %lld ms", path, (long long)ms);
	else
		check_range(k, path, ms, LIM_DURATION);
}

static void
check_argv(struct check *k, const char *path, const struct manifest_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i] == NULL)
			cerr(k, "%s[%zu]: missing", path, i);
}

int
manifest_spec_check(const struct service_spec *s, const char *prefix, struct manifest_errors *errs)
{
	struct check k = {.prefix = prefix ? prefix : "", .errs = errs};
	struct shoal_err err;
	manifest_qbuf q;

	if (s->name == NULL || !manifest_service_name_ok(s->name))
		cerr(&k,
		     "service: invalid name %s (want a DNS label: lowercase letters, digits and "
		     "'-', at most 63 characters, not starting or ending with '-')",
		     s->name ? manifest_quote(s->name, strlen(s->name), q, sizeof(q)) : "(none)");
	if (s->image == NULL)
		cerr(&k, "image: missing");
	else if (manifest_check_image(s->image, &err) == -1)
		cerr(&k, "image: %s", err.msg);
	check_range(&k, "replicas", s->replicas, LIM_REPLICAS);
	check_argv(&k, "entrypoint", &s->entrypoint);
	check_argv(&k, "command", &s->command);

	for (size_t i = 0; i < s->n_env; i++) {
		const char *nm = s->env[i].name;
		if (nm == NULL || !manifest_env_name_ok(nm, strlen(nm)) ||
		    s->env[i].value == NULL) {
			cerr(&k, "env: invalid variable name %s (want no '=', no space, not empty)",
			     nm ? manifest_quote(nm, strlen(nm), q, sizeof(q)) : "(none)");
			continue;
		}
		/* Sorted by name (the readers sort), so a duplicate is the previous entry. */
		if (i > 0 && s->env[i - 1].name != NULL && strcmp(s->env[i - 1].name, nm) >= 0)
			cerr(&k, "env: %s \"%s\"",
			     strcmp(s->env[i - 1].name, nm) == 0 ? "duplicate variable"
			                                         : "not sorted by name at",
			     nm);
	}

	/* A port published twice is a clash between services as much as within one: the set
	 * checks (manifest_set_check, the scheduler's against its services) report it. */
	for (size_t i = 0; i < s->n_ports; i++) {
		char path[48];
		snprintf(path, sizeof(path), "ports[%zu].target", i);
		check_range(&k, path, s->ports[i].target, LIM_PORT);
	}

	if (s->resources.cpu_millis != 0)
		check_range(&k, "resources.cpu_millis", s->resources.cpu_millis, LIM_CPU_MILLIS);
	if (s->resources.memory_bytes != 0)
		check_range(&k, "resources.memory", s->resources.memory_bytes, LIM_MEMORY);
	if (s->resources.pids != 0)
		check_range(&k, "resources.pids", s->resources.pids, LIM_PIDS);

	if ((unsigned)s->restart.policy >= ARRAY_SIZE(manifest_restart_names))
		cerr(&k, "restart.policy: invalid value %d", (int)s->restart.policy);
	check_range(&k, "restart.max_attempts", s->restart.max_attempts, LIM_RESTART_MAX);
	check_duration(&k, "restart.delay", s->restart.delay_ms, false);

	for (size_t i = 0; i < s->placement.n_constraints; i++) {
		const struct manifest_constraint *c = &s->placement.constraints[i];
		bool label = c->field == MANIFEST_NODE_LABEL;
		if ((unsigned)c->field > MANIFEST_NODE_LABEL || c->value == NULL ||
		    !manifest_constraint_word_ok(c->value, strlen(c->value)) ||
		    (label && (c->label == NULL ||
		               !manifest_constraint_word_ok(c->label, strlen(c->label)))))
			cerr(&k, "placement.constraints[%zu]: invalid constraint", i);
	}
	check_range(&k, "placement.max_per_node", s->placement.max_per_node, LIM_MAX_PER_NODE);

	switch (s->health.kind) {
	case MANIFEST_HEALTH_NONE:
		break;
	case MANIFEST_HEALTH_HTTP:
		if (s->health.http_path == NULL || s->health.http_path[0] != '/' ||
		    strpbrk(s->health.http_path, " \t\r\n") != NULL)
			cerr(&k,
			     "health.http: invalid path (want an absolute URL path like /healthz)");
		check_range(&k, "health.port", s->health.port, LIM_PORT);
		break;
	case MANIFEST_HEALTH_TCP:
		check_range(&k, "health.tcp", s->health.port, LIM_PORT);
		break;
	case MANIFEST_HEALTH_CMD:
		if (!s->health.cmd.set || s->health.cmd.n == 0)
			cerr(&k, "health.cmd: must not be empty");
		check_argv(&k, "health.cmd", &s->health.cmd);
		break;
	default:
		cerr(&k, "health: invalid kind %d", (int)s->health.kind);
		break;
	}
	check_duration(&k, "health.interval", s->health.interval_ms, true);
	check_duration(&k, "health.timeout", s->health.timeout_ms, true);
	check_duration(&k, "health.start_period", s->health.start_period_ms, false);
	check_range(&k, "health.retries", s->health.retries, LIM_RETRIES);

	check_range(&k, "update.parallelism", s->update.parallelism, LIM_PARALLELISM);
	check_duration(&k, "update.delay", s->update.delay_ms, false);
	check_duration(&k, "update.monitor", s->update.monitor_ms, false);
	check_duration(&k, "update.timeout", s->update.timeout_ms, false);
	if ((unsigned)s->update.order >= ARRAY_SIZE(manifest_order_names))
		cerr(&k, "update.order: invalid value %d", (int)s->update.order);
	if ((unsigned)s->update.failure_action >= ARRAY_SIZE(manifest_action_names))
		cerr(&k, "update.failure_action: invalid value %d", (int)s->update.failure_action);
	check_duration(&k, "stop_grace", s->stop_grace_ms, false);
	if ((unsigned)s->network >= ARRAY_SIZE(manifest_network_names))
		cerr(&k, "network: invalid value %d", (int)s->network);
	check_range(&k, "proxy.max_conns_per_replica", s->proxy.max_conns_per_replica,
	            LIM_MAX_CONNS);
	check_duration(&k, "proxy.queue_timeout", s->proxy.queue_timeout_ms, true);
	if ((unsigned)s->proxy.protocol >= ARRAY_SIZE(manifest_proxy_protocol_names))
		cerr(&k, "proxy.protocol: invalid value %d", (int)s->proxy.protocol);
	if ((unsigned)s->proxy.mode >= ARRAY_SIZE(manifest_proxy_mode_names))
		cerr(&k, "proxy.mode: invalid value %d", (int)s->proxy.mode);
	/* Last, once the enums are known to index their names. The spec travels whole in every
	 * listing and in each node's Assignments (current and previous version in one frame):
	 * one huge spec must not push those past the frame limit. */
	if (k.n == 0) {
		cleanup_free char *json = manifest_spec_to_json(s);
		size_t len = strlen(json);
		if (len > MANIFEST_MAX_SPEC_BYTES)
			cerr(&k,
			     "spec: %zu bytes as JSON, more than %d (keep large data such as "
			     "certificates in the image or a mounted file, not in env or command)",
			     len, MANIFEST_MAX_SPEC_BYTES);
	}
	return k.n == 0 ? 0 : -1;
}
