#include "manifest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "manifest_check.h"
#include "manifest_internal.h"
#include "manifest_set.h"
#include "manifest_yaml.h"
#include "util.h"

/* One ports entry being read: the spec's port plus where its published value was. */
struct port_state {
	struct manifest_port port;
	struct manifest_pos pos;
	bool have_target;
};

/* The document being turned into a spec. */
struct docstate {
	struct service_spec spec;
	struct manifest_origin origin;
	const struct ynode *health; /* the health mapping, for the checks that span keys */
	const struct ynode *health_port;
	struct port_state *port; /* the ports entry being read */
};

static void
f_service(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	const char *s;
	manifest_qbuf q;

	if (!manifest_yaml_get_str(c, path, v, &s))
		return;
	if (!manifest_service_name_ok(s)) {
		manifest_yaml_error(
		    c, v->mark,
		    "%s: invalid name %s (want a DNS label: lowercase letters, digits and '-', "
		    "at most 63 characters, not starting or ending with '-')",
		    path, manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	free(d->spec.name);
	d->spec.name = xstrdup(s);
	d->origin.service = (struct manifest_pos){v->mark.line + 1, v->mark.column + 1};
}

static void
f_image(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	struct shoal_err err;
	const char *s;

	if (!manifest_yaml_get_str(c, path, v, &s))
		return;
	if (manifest_check_image(s, &err) == -1) {
		manifest_yaml_error(c, v->mark, "%s: %s", path, err.msg);
		return;
	}
	free(d->spec.image);
	d->spec.image = xstrdup(s);
}

static void
f_replicas(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_REPLICAS), &d->spec.replicas);
}

static void
f_command(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_argv(c, path, v, false, &d->spec.command);
}

static void
f_entrypoint(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_argv(c, path, v, false, &d->spec.entrypoint);
}

struct env_item {
	const char *name;
	size_t name_len;
	const char *value;
	const struct ynode *node; /* where it was written, for the duplicate message */
	size_t index;
};

static int
env_item_cmp(const void *a, const void *b)
{
	const struct env_item *x = a, *y = b;
	int r = strcmp(x->name, y->name);

	if (r != 0)
		return r;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* env: a mapping NAME: VALUE or a list of "NAME=VALUE", as Compose accepts both. */
static void
f_env(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	cleanup_free struct env_item *items = NULL;
	size_t n = 0;
	cleanup_free char *names = NULL; /* list form: "NAME\0" copies, one per item */
	size_t nerr = c->nerr;
	manifest_qbuf q;

	if (v->kind == Y_MAP) {
		items = xcalloc(v->n / 2 + 1, sizeof(*items));
		for (size_t i = 0; i + 1 < v->n; i += 2) {
			const struct ynode *k = v->kids[i], *val = v->kids[i + 1];
			char vpath[160];
			const char *s;
			if (k->kind == Y_BAD || val->kind == Y_BAD)
				continue;
			if (k->kind != Y_SCALAR || !manifest_env_name_ok(k->text, k->len)) {
				manifest_yaml_error(c, k->mark, "%s: invalid variable name %s",
				                    path, manifest_yaml_describe(k, q, sizeof(q)));
				continue;
			}
			snprintf(vpath, sizeof(vpath), "%s.%.64s", path, k->text);
			if (!manifest_yaml_get_str(c, vpath, val, &s))
				continue;
			items[n] = (struct env_item){k->text, k->len, s, k, n};
			n++;
		}
	} else if (v->kind == Y_SEQ) {
		size_t total = 0, off = 0;
		for (size_t i = 0; i < v->n; i++)
			total += v->kids[i]->len + 1;
		names = xmalloc(total + 1);
		items = xcalloc(v->n + 1, sizeof(*items));
		for (size_t i = 0; i < v->n; i++) {
			const struct ynode *it = v->kids[i];
			char ipath[96];
			const char *s, *eq;
			if (it->kind == Y_BAD)
				continue;
			snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
			if (!manifest_yaml_get_str(c, ipath, it, &s))
				continue;
			eq = strchr(s, '=');
			if (eq == NULL || !manifest_env_name_ok(s, (size_t)(eq - s))) {
				manifest_yaml_error(c, it->mark, "%s: expected NAME=VALUE, got %s",
				                    ipath,
				                    manifest_yaml_describe(it, q, sizeof(q)));
				continue;
			}
			memcpy(names + off, s, (size_t)(eq - s));
			names[off + (size_t)(eq - s)] = '\0';
			items[n] = (struct env_item){names + off, (size_t)(eq - s), eq + 1, it, n};
			n++;
			off += (size_t)(eq - s) + 1;
		}
	} else {
		manifest_yaml_error(c, v->mark,
		                    "%s: expected a mapping or a list of NAME=VALUE, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	qsort(items, n, sizeof(*items), env_item_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(items[i].name, items[i - 1].name) != 0)
			continue;
		manifest_yaml_error(c, items[i].node->mark,
		                    "%s: duplicate variable \"%s\" (first at %zu:%zu)", path,
		                    items[i].name, items[i - 1].node->mark.line + 1,
		                    items[i - 1].node->mark.column + 1);
	}
	if (c->nerr != nerr)
		return;
	d->spec.env = xcalloc(n + 1, sizeof(*d->spec.env));
	for (size_t i = 0; i < n; i++) {
		d->spec.env[i].name = xstrdup(items[i].name);
		d->spec.env[i].value = xstrdup(items[i].value);
	}
	d->spec.n_env = n;
}

static void
f_port_published(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	long long x;

	if (manifest_yaml_get_int(c, path, v, LIM(LIM_PORT), &x)) {
		d->port->port.published = (uint16_t)x;
		d->port->pos = (struct manifest_pos){v->mark.line + 1, v->mark.column + 1};
	}
}

static void
f_port_target(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	long long x;

	d->port->have_target = true;
	if (manifest_yaml_get_int(c, path, v, LIM(LIM_PORT), &x))
		d->port->port.target = (uint16_t)x;
}

/* "8080:80" or "80" (Compose's short syntax); returns false on any other text. */
static bool
parse_port_short(const char *s, struct manifest_port *p)
{
	unsigned long a, b;
	char *end;

	if (!isdigit((unsigned char)s[0]))
		return false;
	a = strtoul(s, &end, 10);
	if (*end == '\0') {
		if (a < (unsigned long)manifest_limits[LIM_PORT].min ||
		    a > (unsigned long)manifest_limits[LIM_PORT].max)
			return false;
		p->target = (uint16_t)a;
		return true;
	}
	if (*end != ':' || !isdigit((unsigned char)end[1]))
		return false;
	b = strtoul(end + 1, &end, 10);
	if (*end != '\0' || a < (unsigned long)manifest_limits[LIM_PORT].min ||
	    a > (unsigned long)manifest_limits[LIM_PORT].max ||
	    b < (unsigned long)manifest_limits[LIM_PORT].min ||
	    b > (unsigned long)manifest_limits[LIM_PORT].max)
		return false;
	p->published = (uint16_t)a;
	p->target = (uint16_t)b;
	return true;
}

static void
f_ports(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"published", f_port_published},
	    {"target", f_port_target},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];
	manifest_qbuf q;

	if (v->kind != Y_SEQ) {
		manifest_yaml_error(c, v->mark, "%s: expected a list of ports, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	d->spec.ports = xcalloc(v->n + 1, sizeof(*d->spec.ports));
	d->origin.ports = xcalloc(v->n + 1, sizeof(*d->origin.ports));
	for (size_t i = 0; i < v->n; i++) {
		const struct ynode *it = v->kids[i];
		struct port_state ps = {0};
		char ipath[96];
		const char *s;

		if (it->kind == Y_BAD)
			continue;
		snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
		if (it->kind == Y_SCALAR) {
			if (!manifest_yaml_get_str(c, ipath, it, &s))
				continue;
			if (!parse_port_short(s, &ps.port)) {
				manifest_yaml_error(
				    c, it->mark,
				    "%s: invalid port %s (want PUBLISHED:TARGET or a mapping with "
				    "published and target, ports 1 to 65535)",
				    ipath, manifest_yaml_describe(it, q, sizeof(q)));
				continue;
			}
			ps.pos = (struct manifest_pos){it->mark.line + 1, it->mark.column + 1};
		} else if (it->kind == Y_MAP) {
			size_t before = c->nerr;
			d->port = &ps;
			manifest_yaml_walk_map(c, d, it, ipath, fields, ARRAY_SIZE(fields), seen);
			d->port = NULL;
			if (!ps.have_target) {
				manifest_yaml_error(c, it->mark,
				                    "%s: missing required key \"target\"", ipath);
				continue;
			}
			if (c->nerr != before)
				continue;
		} else {
			manifest_yaml_error(
			    c, it->mark, "%s: expected a mapping or \"PUBLISHED:TARGET\", got %s",
			    ipath, manifest_yaml_describe(it, q, sizeof(q)));
			continue;
		}
		d->origin.ports[d->spec.n_ports] = ps.pos;
		d->spec.ports[d->spec.n_ports++] = ps.port;
	}
}

static void
f_cpus(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_qbuf q;
	char *end;
	double x;

	if (v->kind != Y_SCALAR || v->null || v->len == 0 ||
	    !(isdigit((unsigned char)v->text[0]) || v->text[0] == '.' || v->text[0] == '-'))
		goto bad;
	errno = 0;
	x = strtod(v->text, &end);
	if (end != v->text + v->len || errno != 0 || !isfinite(x))
		goto bad;
	if (!(x >= (double)manifest_limits[LIM_CPU_MILLIS].min / 1000 &&
	      x <= (double)manifest_limits[LIM_CPU_MILLIS].max / 1000)) {
		manifest_yaml_error(c, v->mark, "%s: must be between 0.001 and 1024, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	d->spec.resources.cpu_millis = (uint32_t)llround(x * 1000);
	return;
bad:
	manifest_yaml_error(c, v->mark, "%s: expected a number of CPUs, got %s", path,
	                    manifest_yaml_describe(v, q, sizeof(q)));
}

static void
f_memory(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	struct shoal_err err;
	const char *s;
	int64_t b;
	manifest_qbuf q;

	if (!manifest_yaml_get_str(c, path, v, &s))
		return;
	if (util_parse_bytes(s, &b, &err) == -1) {
		manifest_yaml_error(c, v->mark, "%s: %s", path, err.msg);
		return;
	}
	if (b < manifest_limits[LIM_MEMORY].min) {
		manifest_yaml_error(c, v->mark,
		                    "%s: must be at least 4Mi (omit it for no limit), got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	/* util_parse_bytes has a cap of its own; the table's is the one that counts. */
	if (b > manifest_limits[LIM_MEMORY].max) {
		manifest_yaml_error(c, v->mark, "%s: must be at most %lld bytes, got %s", path,
		                    manifest_limits[LIM_MEMORY].max,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	d->spec.resources.memory_bytes = b;
}

static void
f_pids(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	long long x;

	/* 4194304 is the kernel's PID_MAX_LIMIT: no cgroup can hold more. */
	if (manifest_yaml_get_int(c, path, v, LIM(LIM_PIDS), &x))
		d->spec.resources.pids = x;
}

static void
f_resources(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"cpus", f_cpus},
	    {"memory", f_memory},
	    {"pids", f_pids},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];

	if (manifest_yaml_want_map(c, path, v))
		manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
}

static void
f_restart_policy(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	/* Swarm's name for it: a Swarm user's file works, and learns the word Shoal uses. */
	if (v->kind == Y_SCALAR && !v->null && manifest_yaml_scalar_is(v, "any")) {
		d->spec.restart.policy = MANIFEST_RESTART_ALWAYS;
		c->errs->warnings = xrealloc(c->errs->warnings,
		                             (c->errs->nwarnings + 1) * sizeof(*c->errs->warnings));
		c->errs->warnings[c->errs->nwarnings++] = xasprintf(
		    "%s:%zu:%zu: warning: %s: \"any\" is Swarm's name; Shoal says always (taken as "
		    "always)",
		    c->file, (size_t)v->mark.line + 1, (size_t)v->mark.column + 1, path);
		return;
	}
	if (manifest_yaml_get_enum(c, path, v, manifest_restart_names,
	                           ARRAY_SIZE(manifest_restart_names), &x))
		d->spec.restart.policy = (enum manifest_restart_policy)x;
}

static void
f_restart_max(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_RESTART_MAX), &d->spec.restart.max_attempts);
}

static void
f_restart_delay(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.restart.delay_ms);
}

static void
f_restart(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"policy", f_restart_policy},
	    {"max_attempts", f_restart_max},
	    {"delay", f_restart_delay},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];

	if (manifest_yaml_want_map(c, path, v))
		manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
}

static int
constraint_cmp(const void *a, const void *b)
{
	const struct manifest_constraint *x = a, *y = b;
	cleanup_free char *sx = manifest_constraint_format(x);
	cleanup_free char *sy = manifest_constraint_format(y);

	return strcmp(sx, sy);
}

static void
f_constraints(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	struct service_spec *s = &d->spec;
	manifest_qbuf q;

	if (v->kind != Y_SEQ) {
		manifest_yaml_error(c, v->mark, "%s: expected a list of constraints, got %s", path,
		                    manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	s->placement.constraints = xcalloc(v->n + 1, sizeof(*s->placement.constraints));
	for (size_t i = 0; i < v->n; i++) {
		struct shoal_err err;
		char ipath[96];
		const char *str;

		if (v->kids[i]->kind == Y_BAD)
			continue;
		snprintf(ipath, sizeof(ipath), "%s[%zu]", path, i);
		if (!manifest_yaml_get_str(c, ipath, v->kids[i], &str))
			continue;
		if (manifest_constraint_parse(
		        str, &s->placement.constraints[s->placement.n_constraints], &err) == -1) {
			manifest_yaml_error(c, v->kids[i]->mark, "%s: %s", ipath, err.msg);
			continue;
		}
		s->placement.n_constraints++;
	}
	qsort(s->placement.constraints, s->placement.n_constraints,
	      sizeof(*s->placement.constraints), constraint_cmp);
}

static void
f_max_per_node(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_MAX_PER_NODE), &d->spec.placement.max_per_node);
}

static void
f_placement(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"constraints", f_constraints},
	    {"max_per_node", f_max_per_node},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];

	if (manifest_yaml_want_map(c, path, v))
		manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
}

static void
f_health_http(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	const char *s;
	manifest_qbuf q;

	if (!manifest_yaml_get_str(c, path, v, &s))
		return;
	if (s[0] != '/' || strpbrk(s, " \t\r\n") != NULL) {
		manifest_yaml_error(c, v->mark,
		                    "%s: invalid path %s (want an absolute URL path like /healthz)",
		                    path, manifest_yaml_describe(v, q, sizeof(q)));
		return;
	}
	free(d->spec.health.http_path);
	d->spec.health.http_path = xstrdup(s);
	d->spec.health.kind = MANIFEST_HEALTH_HTTP;
}

static void
f_health_tcp(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	long long x;

	if (!manifest_yaml_get_int(c, path, v, LIM(LIM_PORT), &x))
		return;
	d->spec.health.port = (uint16_t)x;
	d->spec.health.kind = MANIFEST_HEALTH_TCP;
}

static void
f_health_cmd(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	if (manifest_yaml_get_argv(c, path, v, true, &d->spec.health.cmd))
		d->spec.health.kind = MANIFEST_HEALTH_CMD;
}

static void
f_health_port(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	long long x;

	d->health_port = v;
	if (manifest_yaml_get_int(c, path, v, LIM(LIM_PORT), &x))
		d->spec.health.port = (uint16_t)x;
}

static void
f_health_interval(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, true, &d->spec.health.interval_ms);
}

static void
f_health_timeout(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, true, &d->spec.health.timeout_ms);
}

static void
f_health_start(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.health.start_period_ms);
}

static void
f_health_retries(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_RETRIES), &d->spec.health.retries);
}

static void
f_health(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	/* The first three are the kinds: exactly one must be present. */
	static const struct field fields[] = {
	    {"http", f_health_http},         {"tcp", f_health_tcp},
	    {"cmd", f_health_cmd},           {"port", f_health_port},
	    {"interval", f_health_interval}, {"timeout", f_health_timeout},
	    {"retries", f_health_retries},   {"start_period", f_health_start},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];
	const struct ynode *kind = NULL;
	size_t kind_idx = 0;

	if (!manifest_yaml_want_map(c, path, v))
		return;
	d->health = v;
	manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
	for (size_t i = 0; i < 3; i++) {
		if (seen[i] == NULL)
			continue;
		if (kind != NULL) {
			manifest_yaml_error(
			    c, seen[i]->mark,
			    "%s: %s and %s cannot be combined (want exactly one of http, tcp or "
			    "cmd)",
			    path, fields[kind_idx].name, fields[i].name);
			continue;
		}
		kind = seen[i];
		kind_idx = i;
	}
	if (kind == NULL)
		manifest_yaml_error(c, v->mark,
		                    "%s: missing the check (want exactly one of http, tcp or cmd)",
		                    path);
	else if (kind_idx != 0 && seen[3] != NULL)
		manifest_yaml_error(
		    c, seen[3]->mark, "%s.port: only applies to an http check (%s)", path,
		    kind_idx == 1 ? "tcp names its own port" : "a cmd check has none");
}

static void
f_update_parallelism(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_PARALLELISM), &d->spec.update.parallelism);
}

static void
f_update_delay(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.update.delay_ms);
}

static void
f_update_monitor(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.update.monitor_ms);
}

static void
f_update_timeout(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.update.timeout_ms);
}

static void
f_update_order(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	if (manifest_yaml_get_enum(c, path, v, manifest_order_names,
	                           ARRAY_SIZE(manifest_order_names), &x))
		d->spec.update.order = (enum manifest_update_order)x;
}

static void
f_update_action(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	if (manifest_yaml_get_enum(c, path, v, manifest_action_names,
	                           ARRAY_SIZE(manifest_action_names), &x))
		d->spec.update.failure_action = (enum manifest_failure_action)x;
}

static void
f_update(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"parallelism", f_update_parallelism},
	    {"delay", f_update_delay},
	    {"order", f_update_order},
	    {"failure_action", f_update_action},
	    {"monitor", f_update_monitor},
	    {"timeout", f_update_timeout},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];

	if (manifest_yaml_want_map(c, path, v))
		manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
}

static void
f_stop_grace(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, false, &d->spec.stop_grace_ms);
}

static void
f_network(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	if (manifest_yaml_get_enum(c, path, v, manifest_network_names,
	                           ARRAY_SIZE(manifest_network_names), &x))
		d->spec.network = (enum manifest_network)x;
}

static void
f_proxy_max_conns(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_u32(c, path, v, LIM(LIM_MAX_CONNS), &d->spec.proxy.max_conns_per_replica);
}

static void
f_proxy_queue_timeout(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_duration(c, path, v, true, &d->spec.proxy.queue_timeout_ms);
}

static void
f_proxy_protocol(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	if (manifest_yaml_get_enum(c, path, v, manifest_proxy_protocol_names,
	                           ARRAY_SIZE(manifest_proxy_protocol_names), &x))
		d->spec.proxy.protocol = (enum manifest_proxy_protocol)x;
}

static void
f_proxy_mode(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	int x;

	if (manifest_yaml_get_enum(c, path, v, manifest_proxy_mode_names,
	                           ARRAY_SIZE(manifest_proxy_mode_names), &x))
		d->spec.proxy.mode = (enum manifest_proxy_mode)x;
}

static void
f_proxy(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	static const struct field fields[] = {
	    {"max_conns_per_replica", f_proxy_max_conns},
	    {"queue_timeout", f_proxy_queue_timeout},
	    {"protocol", f_proxy_protocol},
	    {"mode", f_proxy_mode},
	};
	const struct ynode *seen[ARRAY_SIZE(fields)];

	if (manifest_yaml_want_map(c, path, v))
		manifest_yaml_walk_map(c, d, v, path, fields, ARRAY_SIZE(fields), seen);
}

static void
f_no_new_privileges(struct vctx *c, struct docstate *d, const char *path, const struct ynode *v)
{
	manifest_yaml_get_bool(c, path, v, &d->spec.no_new_privileges);
}

/* The top-level keys; service and image come first, they are required. */
static const struct field service_fields[] = {
    {"service", f_service},       {"image", f_image},
    {"replicas", f_replicas},     {"entrypoint", f_entrypoint},
    {"command", f_command},       {"env", f_env},
    {"ports", f_ports},           {"resources", f_resources},
    {"restart", f_restart},       {"placement", f_placement},
    {"health", f_health},         {"update", f_update},
    {"stop_grace", f_stop_grace}, {"network", f_network},
    {"proxy", f_proxy},           {"no_new_privileges", f_no_new_privileges},
};

static void
origin_free(struct manifest_origin *o)
{
	free(o->ports);
	o->ports = NULL;
}

/*
 * Turn one document's tree into a spec appended to m; errors go to c. The
 * document mark is where "missing key" errors point; nerr is the error count
 * when the document began, so mistakes found while reading it (aliases, too
 * deep) also keep it out.
 */
static void
validate_document(struct vctx *c, const struct ynode *root, yaml_mark_t doc_mark, size_t doc_no,
                  size_t nerr, struct manifest *m)
{
	const struct ynode *seen[ARRAY_SIZE(service_fields)];
	struct docstate d = {0};
	manifest_qbuf q;

	snprintf(c->who, sizeof(c->who), "document %zu", doc_no);
	if (root->kind == Y_BAD)
		return;
	if (root->kind != Y_MAP) {
		manifest_yaml_error(c, root->mark,
		                    "expected a mapping describing one service, got %s",
		                    manifest_yaml_describe(root, q, sizeof(q)));
		return;
	}
	/* Name the service in messages before its keys are checked, whatever their order. */
	for (size_t i = 0; i + 1 < root->n; i += 2) {
		const struct ynode *v = root->kids[i + 1];
		if (manifest_yaml_scalar_is(root->kids[i], "service") && v->kind == Y_SCALAR &&
		    !v->null && strlen(v->text) == v->len) {
			snprintf(c->who, sizeof(c->who), "service %s",
			         manifest_quote(v->text, v->len, q, sizeof(q)));
			if (manifest_service_name_ok(v->text))
				snprintf(c->who, sizeof(c->who), "service %s", v->text);
			break;
		}
	}
	manifest_spec_init(&d.spec);
	manifest_yaml_walk_map(c, &d, root, NULL, service_fields, ARRAY_SIZE(service_fields), seen);
	for (size_t i = 0; i < 2; i++)
		if (seen[i] == NULL)
			manifest_yaml_error(c, doc_mark, "missing required key \"%s\" in %s",
			                    service_fields[i].name, c->who);
	if (d.spec.health.kind == MANIFEST_HEALTH_HTTP && d.health_port == NULL) {
		/* The check probes the container, so the natural default is its first port. */
		if (d.spec.n_ports > 0)
			d.spec.health.port = d.spec.ports[0].target;
		else
			manifest_yaml_error(
			    c, d.health->mark,
			    "health.port: required for an http check when the service has no "
			    "ports");
	}
	if (c->nerr == nerr) {
		/* The scheduler's check, on what the fields above built: whatever passes here
		 * passes there. Its lines point at the service's name. */
		struct manifest_errors more = {0};
		if (manifest_spec_check(&d.spec, NULL, &more) == -1)
			for (size_t i = 0; i < more.n; i++)
				manifest_yaml_error(c, manifest_yaml_pos_mark(d.origin.service),
				                    "%s", more.lines[i]);
		manifest_errors_free(&more);
	}
	if (c->nerr != nerr) {
		manifest_spec_free(&d.spec);
		origin_free(&d.origin);
		return;
	}
	m->services = xrealloc(m->services, (m->n_services + 1) * sizeof(*m->services));
	m->origins = xrealloc(m->origins, (m->n_services + 1) * sizeof(*m->origins));
	m->services[m->n_services] = d.spec;
	m->origins[m->n_services] = d.origin;
	m->n_services++;
}

void
manifest_free(struct manifest *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_services; i++) {
		manifest_spec_free(&m->services[i]);
		origin_free(&m->origins[i]);
	}
	free(m->services);
	free(m->origins);
	free(m->file);
	memset(m, 0, sizeof(*m));
}

int
manifest_parse_buffer(const char *name, const char *buf, size_t len, struct manifest *out,
                      struct manifest_errors *errs)
{
	struct vctx c = {.file = name, .errs = errs};
	struct manifest m = {.file = xstrdup(name)};
	struct builder b = {0};
	yaml_parser_t parser;
	yaml_mark_t doc_mark = {0};
	size_t doc_no = 0, doc_nerr = 0;
	bool done = false;

	memset(out, 0, sizeof(*out));
	if (len > MANIFEST_MAX_BYTES) {
		cleanup_free char *line =
		    xasprintf("%s: too large (more than %d bytes); split it into several files",
		              name, MANIFEST_MAX_BYTES);
		manifest_errs_add(errs, line);
		manifest_free(&m);
		return -1;
	}
	if (!yaml_parser_initialize(&parser))
		SHOAL_ASSERT(!"yaml_parser_initialize failed");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!done) {
		yaml_event_t ev;

		if (!yaml_parser_parse(&parser, &ev)) {
			manifest_yaml_syntax_error(&c, &parser, buf, len);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			doc_mark = ev.start_mark;
			doc_nerr = c.nerr;
			doc_no++;
			break;
		case YAML_DOCUMENT_END_EVENT:
			/* An empty document (a stray "---") holds no service: skip it, as kubectl
			 * does. */
			if (b.root != NULL && !(b.root->kind == Y_SCALAR && b.root->null))
				validate_document(&c, b.root, doc_mark, doc_no, doc_nerr, &m);
			manifest_yaml_node_free(b.root);
			b = (struct builder){0};
			break;
		default:
			manifest_yaml_builder_event(&c, &b, &ev);
			done = b.stop;
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	manifest_yaml_node_free(b.root);

	if (c.nerr == 0 && m.n_services == 0)
		manifest_yaml_error(&c, (yaml_mark_t){0},
		                    "no service defined (want one YAML document per service)");
	/* The documents that were valid on their own must still agree with each other. */
	manifest_set_report(&c, &m, 1);
	manifest_yaml_flush(&c);
	if (c.nerr != 0) {
		manifest_free(&m);
		return -1;
	}
	*out = m;
	return 0;
}

/* Read path whole, or at most one byte past MANIFEST_MAX_BYTES (the parser then refuses it):
 * a manifest of gigabytes, or a device, is not read to its end. */
static char *
read_capped(const char *path, size_t *len, struct shoal_err *err)
{
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	cleanup_free char *buf = NULL;
	size_t n = 0, cap = MANIFEST_MAX_BYTES + 2;

	if (fd == -1) {
		err_set(err, errno, "open %s", path);
		return NULL;
	}
	buf = xmalloc(cap);
	while (n < cap - 1) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			err_set(err, errno, "read %s", path);
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*len = n;
	return steal_ptr(&buf);
}

int
manifest_parse_file(const char *path, struct manifest *out, struct manifest_errors *errs)
{
	struct shoal_err err;
	cleanup_free char *buf = NULL;
	size_t len;
	char *line;
	int r;

	memset(out, 0, sizeof(*out));
	buf = read_capped(path, &len, &err);
	if (buf == NULL) {
		line = xasprintf("%s: %s", path, err.msg);
		manifest_errs_add(errs, line);
		free(line);
		return -1;
	}
	r = manifest_parse_buffer(path, buf, len, out, errs);
	return r;
}
