#include "manifest_spec.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "manifest_internal.h"
#include "reference.h"
#include "util.h"

/*
 * Every bounded number of a spec, in one table. The YAML reader takes its ranges from here,
 * and manifest_spec_check (the CLI's last step, and the scheduler's check of every spec it is
 * sent as JSON, by apply or by scale) holds a finished spec to the same ranges.
 */
const struct manifest_limit manifest_limits[LIM_COUNT] = {
    [LIM_REPLICAS] = {0, 10000},     [LIM_RESTART_MAX] = {0, 1000000},
    [LIM_MAX_PER_NODE] = {0, 10000}, [LIM_PARALLELISM] = {0, 10000},
    [LIM_RETRIES] = {1, 1000},       [LIM_PORT] = {1, 65535},
    [LIM_CPU_MILLIS] = {1, 1024000}, [LIM_MEMORY] = {4LL * 1024 * 1024, 9000000000000000000LL},
    [LIM_PIDS] = {1, 4194304},       [LIM_DURATION] = {0, 1000000000000000LL},
    [LIM_MAX_CONNS] = {0, 1000000},
};

const char *const manifest_restart_names[] = {"always", "on-failure", "never"};
const char *const manifest_order_names[] = {"stop-first", "start-first"};
const char *const manifest_action_names[] = {"pause", "rollback", "continue"};
const char *const manifest_health_names[] = {"none", "http", "tcp", "cmd"};
const char *const manifest_network_names[] = {"bridge", "host"};
const char *const manifest_proxy_protocol_names[] = {"none", "proxy-v1", "proxy-v2"};
const char *const manifest_proxy_mode_names[] = {"tcp", "http"};

/* ------------------------------------------------------------------ errors */

void
manifest_errs_add(struct manifest_errors *errs, const char *line)
{
	if (errs->n > MANIFEST_MAX_ERRORS)
		return;
	errs->lines = xrealloc(errs->lines, (errs->n + 1) * sizeof(*errs->lines));
	if (errs->n == MANIFEST_MAX_ERRORS)
		errs->lines[errs->n++] =
		    xasprintf("too many errors; only the first %d are shown", MANIFEST_MAX_ERRORS);
	else
		errs->lines[errs->n++] = xstrdup(line);
}

char *
manifest_xvasprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *s;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	SHOAL_ASSERT(n >= 0);
	s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

void
manifest_errors_free(struct manifest_errors *errs)
{
	if (errs == NULL)
		return;
	for (size_t i = 0; i < errs->n; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->n = 0;
	for (size_t i = 0; i < errs->nwarnings; i++)
		free(errs->warnings[i]);
	free(errs->warnings);
	errs->warnings = NULL;
	errs->nwarnings = 0;
}
/* Quote user text for a message: at most 40 characters, control bytes escaped. */
const char *
manifest_quote(const char *s, size_t len, char *buf, size_t size)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < size; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (i == 40) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void
manifest_argv_free(struct manifest_argv *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	memset(a, 0, sizeof(*a));
}

void
manifest_argv_push(struct manifest_argv *a, const char *s, size_t len)
{
	a->v = xrealloc(a->v, (a->n + 1) * sizeof(*a->v));
	a->v[a->n++] = strndup(s, len);
	SHOAL_ASSERT(a->v[a->n - 1] != NULL);
}

bool
manifest_env_name_ok(const char *s, size_t len)
{
	if (len == 0 || strlen(s) < len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '=' || isspace((unsigned char)s[i]))
			return false;
	return true;
}

/* ---------------------------------------------------------- constraints */

void
manifest_constraint_free(struct manifest_constraint *c)
{
	if (c == NULL)
		return;
	free(c->label);
	free(c->value);
	c->label = NULL;
	c->value = NULL;
}

char *
manifest_constraint_format(const struct manifest_constraint *c)
{
	const char *op = c->equal ? "==" : "!=";

	switch (c->field) {
	case MANIFEST_NODE_NAME:
		return xasprintf("node.name %s %s", op, c->value);
	case MANIFEST_NODE_ID:
		return xasprintf("node.id %s %s", op, c->value);
	case MANIFEST_NODE_LABEL:
		break;
	}
	return xasprintf("node.labels.%s %s %s", c->label, op, c->value);
}

int
manifest_constraint_parse(const char *s, struct manifest_constraint *out, struct shoal_err *err)
{
	const char *op = strstr(s, "==");
	const char *ne = strstr(s, "!=");
	const char *l, *le, *r, *re;
	char q[200];

	memset(out, 0, sizeof(*out));
	if (op == NULL || (ne != NULL && ne < op))
		op = ne;
	if (op == NULL)
		goto bad;
	out->equal = op[0] == '=';
	for (l = s; *l == ' ' || *l == '\t'; l++)
		;
	for (le = op; le > l && (le[-1] == ' ' || le[-1] == '\t'); le--)
		;
	for (r = op + 2; *r == ' ' || *r == '\t'; r++)
		;
	for (re = r + strlen(r); re > r && (re[-1] == ' ' || re[-1] == '\t'); re--)
		;
	if (!manifest_constraint_word_ok(r, (size_t)(re - r)))
		goto bad;
	if ((size_t)(le - l) == 9 && memcmp(l, "node.name", 9) == 0) {
		out->field = MANIFEST_NODE_NAME;
	} else if ((size_t)(le - l) == 7 && memcmp(l, "node.id", 7) == 0) {
		out->field = MANIFEST_NODE_ID;
	} else if ((size_t)(le - l) > 12 && memcmp(l, "node.labels.", 12) == 0 &&
	           manifest_constraint_word_ok(l + 12, (size_t)(le - l) - 12)) {
		out->field = MANIFEST_NODE_LABEL;
		out->label = strndup(l + 12, (size_t)(le - l) - 12);
		SHOAL_ASSERT(out->label != NULL);
	} else {
		goto bad;
	}
	out->value = strndup(r, (size_t)(re - r));
	SHOAL_ASSERT(out->value != NULL);
	return 0;
bad:
	manifest_constraint_free(out);
	return err_set(err, 0,
	               "invalid constraint %s (want node.name, node.id or node.labels.KEY, then == "
	               "or !=, then a value)",
	               manifest_quote(s, strlen(s), q, sizeof(q)));
}
bool
manifest_constraint_word_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '=' || s[i] == '!')
			return false;
	return true;
}

/* ------------------------------------------------------------ image refs */

int
manifest_check_image(const char *ref, struct shoal_err *err)
{
	struct reference r;

	if (reference_parse(ref, &r, err) == -1)
		return -1;
	reference_free(&r);
	return 0;
}
/* ------------------------------------------------------------ spec check */

/* RFC 1123 label, as Docker and Kubernetes require of names that become DNS names. */
bool
manifest_service_name_ok(const char *s)
{
	size_t n;

	if (s == NULL)
		return false;
	n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
	return true;
}

void
manifest_errors_add(struct manifest_errors *errs, const char *fmt, ...)
{
	cleanup_free char *line = NULL;
	va_list ap;

	va_start(ap, fmt);
	line = manifest_xvasprintf(fmt, ap);
	va_end(ap);
	manifest_errs_add(errs, line);
}

/* ------------------------------------------------------------------ spec */

void
manifest_spec_init(struct service_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->replicas = 1;
	spec->restart.policy = MANIFEST_RESTART_ALWAYS;
	spec->restart.delay_ms = 5000;
	spec->health.interval_ms = 30000;
	spec->health.timeout_ms = 30000;
	spec->health.retries = 3;
	spec->update.parallelism = 1;
	spec->update.order = MANIFEST_ORDER_STOP_FIRST;
	spec->update.failure_action = MANIFEST_FAILURE_PAUSE;
	spec->update.monitor_ms = 5000;
	spec->update.timeout_ms = MANIFEST_UPDATE_TIMEOUT_MS;
	spec->stop_grace_ms = 10000;
	spec->network = MANIFEST_NETWORK_BRIDGE;
	spec->proxy.queue_timeout_ms = 30000; /* HAProxy's timeout queue in the same role */
}

void
manifest_spec_free(struct service_spec *spec)
{
	if (spec == NULL)
		return;
	free(spec->name);
	free(spec->image);
	manifest_argv_free(&spec->entrypoint);
	manifest_argv_free(&spec->command);
	for (size_t i = 0; i < spec->n_env; i++) {
		free(spec->env[i].name);
		free(spec->env[i].value);
	}
	free(spec->env);
	free(spec->ports);
	for (size_t i = 0; i < spec->placement.n_constraints; i++)
		manifest_constraint_free(&spec->placement.constraints[i]);
	free(spec->placement.constraints);
	free(spec->health.http_path);
	manifest_argv_free(&spec->health.cmd);
	memset(spec, 0, sizeof(*spec));
}

static char *
strdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static void
argv_copy(struct manifest_argv *dst, const struct manifest_argv *src)
{
	dst->set = src->set;
	dst->n = src->n;
	dst->v = NULL;
	if (src->n == 0)
		return;
	dst->v = xcalloc(src->n, sizeof(*dst->v));
	for (size_t i = 0; i < src->n; i++)
		dst->v[i] = xstrdup(src->v[i]);
}

void
manifest_spec_copy(struct service_spec *dst, const struct service_spec *src)
{
	/* Scalars by assignment, then every owned pointer replaced by its own copy. */
	*dst = *src;
	dst->name = strdup_or_null(src->name);
	dst->image = strdup_or_null(src->image);
	argv_copy(&dst->entrypoint, &src->entrypoint);
	argv_copy(&dst->command, &src->command);
	dst->env = NULL;
	if (src->n_env > 0) {
		dst->env = xcalloc(src->n_env, sizeof(*dst->env));
		for (size_t i = 0; i < src->n_env; i++) {
			dst->env[i].name = xstrdup(src->env[i].name);
			dst->env[i].value = xstrdup(src->env[i].value);
		}
	}
	dst->ports = NULL;
	if (src->n_ports > 0) {
		dst->ports = xcalloc(src->n_ports, sizeof(*dst->ports));
		memcpy(dst->ports, src->ports, src->n_ports * sizeof(*dst->ports));
	}
	dst->placement.constraints = NULL;
	if (src->placement.n_constraints > 0) {
		dst->placement.constraints =
		    xcalloc(src->placement.n_constraints, sizeof(*dst->placement.constraints));
		for (size_t i = 0; i < src->placement.n_constraints; i++) {
			const struct manifest_constraint *sc = &src->placement.constraints[i];
			struct manifest_constraint *dc = &dst->placement.constraints[i];
			*dc = *sc;
			dc->label = strdup_or_null(sc->label);
			dc->value = strdup_or_null(sc->value);
		}
	}
	dst->health.http_path = strdup_or_null(src->health.http_path);
	argv_copy(&dst->health.cmd, &src->health.cmd);
}

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
argv_eq(const struct manifest_argv *a, const struct manifest_argv *b)
{
	if (a->set != b->set || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!str_eq(a->v[i], b->v[i]))
			return false;
	return true;
}

bool
manifest_spec_equal(const struct service_spec *a, const struct service_spec *b)
{
	if (!str_eq(a->name, b->name) || !str_eq(a->image, b->image) ||
	    a->replicas != b->replicas || !argv_eq(&a->entrypoint, &b->entrypoint) ||
	    !argv_eq(&a->command, &b->command) || a->n_env != b->n_env ||
	    a->n_ports != b->n_ports || a->resources.cpu_millis != b->resources.cpu_millis ||
	    a->resources.memory_bytes != b->resources.memory_bytes ||
	    a->resources.pids != b->resources.pids || a->restart.policy != b->restart.policy ||
	    a->restart.max_attempts != b->restart.max_attempts ||
	    a->restart.delay_ms != b->restart.delay_ms ||
	    a->placement.n_constraints != b->placement.n_constraints ||
	    a->placement.max_per_node != b->placement.max_per_node ||
	    a->health.kind != b->health.kind || !str_eq(a->health.http_path, b->health.http_path) ||
	    a->health.port != b->health.port || !argv_eq(&a->health.cmd, &b->health.cmd) ||
	    a->health.interval_ms != b->health.interval_ms ||
	    a->health.timeout_ms != b->health.timeout_ms ||
	    a->health.start_period_ms != b->health.start_period_ms ||
	    a->health.retries != b->health.retries ||
	    a->update.parallelism != b->update.parallelism ||
	    a->update.delay_ms != b->update.delay_ms || a->update.order != b->update.order ||
	    a->update.failure_action != b->update.failure_action ||
	    a->update.monitor_ms != b->update.monitor_ms ||
	    a->update.timeout_ms != b->update.timeout_ms || a->stop_grace_ms != b->stop_grace_ms ||
	    a->network != b->network || a->no_new_privileges != b->no_new_privileges ||
	    a->proxy.max_conns_per_replica != b->proxy.max_conns_per_replica ||
	    a->proxy.queue_timeout_ms != b->proxy.queue_timeout_ms ||
	    a->proxy.protocol != b->proxy.protocol || a->proxy.mode != b->proxy.mode)
		return false;
	for (size_t i = 0; i < a->n_env; i++)
		if (!str_eq(a->env[i].name, b->env[i].name) ||
		    !str_eq(a->env[i].value, b->env[i].value))
			return false;
	for (size_t i = 0; i < a->n_ports; i++)
		if (a->ports[i].published != b->ports[i].published ||
		    a->ports[i].target != b->ports[i].target)
			return false;
	for (size_t i = 0; i < a->placement.n_constraints; i++) {
		const struct manifest_constraint *x = &a->placement.constraints[i];
		const struct manifest_constraint *y = &b->placement.constraints[i];
		if (x->field != y->field || x->equal != y->equal || !str_eq(x->label, y->label) ||
		    !str_eq(x->value, y->value))
			return false;
	}
	return true;
}
