#include "nodes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "addr.h"
#include "err.h"
#include "labels.h"
#include "log.h"
#include "shoal.pb-c.h"
#include "store.h"
#include "util.h"

int
nodes_parse_cidr(const char *cidr, uint32_t *base, int *prefix, struct shoal_err *err)
{
	char addr[32];
	const char *slash = strchr(cidr, '/');
	struct in_addr in;
	char *end;
	long p;

	if (slash == NULL || (size_t)(slash - cidr) >= sizeof(addr))
		return err_set(err, 0, "cluster CIDR \"%s\": expected A.B.C.D/N", cidr);
	memcpy(addr, cidr, (size_t)(slash - cidr));
	addr[slash - cidr] = '\0';
	errno = 0;
	p = strtol(slash + 1, &end, 10);
	if (inet_pton(AF_INET, addr, &in) != 1 || *end != '\0' || slash[1] == '\0' || errno)
		return err_set(err, 0, "cluster CIDR \"%s\": expected A.B.C.D/N", cidr);
	if (p < 8 || p > 24)
		return err_set(err, 0, "cluster CIDR \"%s\": prefix must be /8 to /24", cidr);
	*prefix = (int)p;
	*base = ntohl(in.s_addr) & (uint32_t)(0xffffffffu << (32 - p));
	return 0;
}

int
nodes_init(struct nodes *ns, const char *cidr, struct shoal_err *err)
{
	memset(ns, 0, sizeof(*ns));
	if (nodes_parse_cidr(cidr, &ns->cidr_base, &ns->cidr_prefix, err) == -1)
		return -1;
	ns->nsubnets = (size_t)1 << (24 - ns->cidr_prefix);
	ns->subnet_used = xcalloc(ns->nsubnets, 1);
	ns->join.rate = NODES_JOIN_RATE;
	ns->join.burst = NODES_JOIN_BURST;
	ns->join.per_conn = NODES_JOIN_PER_CONN;
	ns->join.tokens = NODES_JOIN_BURST;
	ns->join.last_ms = util_now_ms();
	ns->restart_grace_ms = NODES_RESTART_GRACE_MS;
	return 0;
}

void
nodes_set_stats(struct node *n, struct node_stat *v, size_t count)
{
	for (size_t i = 0; i < n->npstats; i++) {
		free(n->pstats[i].service);
		free(n->pstats[i].backend);
		free(n->pstats[i].task_id);
	}
	free(n->pstats);
	n->pstats = v;
	n->npstats = count;
}

void
nodes_set_ports(struct node *n, struct node_port *v, size_t count)
{
	for (size_t i = 0; i < n->nports; i++) {
		free(n->ports[i].service);
		free(n->ports[i].error);
	}
	free(n->ports);
	n->ports = v;
	n->nports = count;
}

char **
nodes_port_errors(const struct nodes *ns, const char *service, size_t *count)
{
	char **v = NULL;
	size_t k = 0;

	for (size_t i = 0; i < ns->n; i++) {
		const struct node *n = ns->v[i];

		if (n->status != NODE_READY)
			continue;
		for (size_t j = 0; j < n->nports; j++) {
			const struct node_port *p = &n->ports[j];

			if (service && strcmp(service, p->service) != 0)
				continue;
			v = xrealloc(v, (k + 1) * sizeof(*v));
			v[k++] = xasprintf("port %u %s on %s: %s", (unsigned)p->port,
			                   p->code == EADDRINUSE ? "busy" : "cannot listen",
			                   n->name, p->error);
		}
	}
	*count = k;
	return v;
}

void
nodes_port_errors_free(char **v, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(v[i]);
	free(v);
}

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	nodes_set_stats(n, NULL, 0);
	nodes_set_ports(n, NULL, 0);
	free(n->name);
	free(n->address);
	free(n->labels);
	free(n->agent_labels);
	free(n->admin_labels);
	free(n);
}

void
nodes_free(struct nodes *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		node_free(ns->v[i]);
	free(ns->v);
	free(ns->subnet_used);
	memset(ns, 0, sizeof(*ns));
}

/* Index of the first node whose name is >= name (binary search over the sorted array). */
static size_t
lower_bound(const struct nodes *ns, const char *name)
{
	size_t lo = 0, hi = ns->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(ns->v[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct node *
nodes_find(struct nodes *ns, const char *name)
{
	size_t i = lower_bound(ns, name);

	if (i < ns->n && strcmp(ns->v[i]->name, name) == 0)
		return ns->v[i];
	return NULL;
}

struct node *
nodes_find_id(struct nodes *ns, const char *id)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i]->id, id) == 0)
			return ns->v[i];
	return NULL;
}

static void
insert(struct nodes *ns, struct node *n)
{
	size_t i = lower_bound(ns, n->name);

	if (ns->n == ns->cap) {
		ns->cap = ns->cap ? ns->cap * 2 : 16;
		ns->v = xrealloc(ns->v, ns->cap * sizeof(*ns->v));
	}
	memmove(ns->v + i + 1, ns->v + i, (ns->n - i) * sizeof(*ns->v));
	ns->v[i] = n;
	ns->n++;
}

struct load_ctx {
	struct nodes *ns;
	int skipped;
};

static void
load_one(const struct store_node *sn, void *arg)
{
	struct load_ctx *ctx = arg;
	struct nodes *ns = ctx->ns;
	struct node *n;
	size_t keylen = 0;

	/* A record whose subnet lies outside the (possibly changed) CIDR is dropped from memory;
	 * the node gets a fresh subnet when it registers again. */
	if (sn->subnet_index < 0 || (size_t)sn->subnet_index >= ns->nsubnets ||
	    ns->subnet_used[sn->subnet_index]) {
		ctx->skipped++;
		return;
	}
	n = xcalloc(1, sizeof(*n));
	snprintf(n->id, sizeof(n->id), "%s", sn->id);
	n->name = xstrdup(sn->name);
	n->address = xstrdup(sn->address);
	/* A record written before labels had caps may hold megabytes of them, enough to make
	 * every ListNodes reply too big: it loads without labels, and the node's next Register
	 * (held to the caps) brings them back. */
	struct shoal_err err;
	if (labels_check_joined(sn->labels, &err) == -1) {
		shoal_log(LOG_WARNING, "store: node %.64s: labels dropped: %s", sn->name, err.msg);
		n->agent_labels = xstrdup("");
	} else {
		n->agent_labels = xstrdup(sn->labels);
	}
	/* The admin's are never written past the caps; a record that holds more was not. */
	if (sn->admin_labels && labels_check_joined(sn->admin_labels, &err) == -1) {
		shoal_log(LOG_WARNING, "store: node %.64s: admin labels dropped: %s", sn->name,
		          err.msg);
		n->admin_labels = xstrdup("");
	} else {
		n->admin_labels = xstrdup(sn->admin_labels ? sn->admin_labels : "");
	}
	n->labels = nodes_labels_merge(n->agent_labels, n->admin_labels);
	n->drain = strcmp(sn->availability, "drain") == 0;
	n->cpu_millis = sn->cpu_millis;
	n->memory_bytes = sn->memory_bytes;
	n->subnet_index = sn->subnet_index;
	n->created_ms = sn->created_ms;
	n->status = NODE_UNKNOWN;
	nodes_seen(ns, n, util_now_ms());
	/* A key that does not parse is treated as none: bound again at the next registration. */
	n->has_key = sodium_hex2bin(n->key, sizeof(n->key), sn->node_key, strlen(sn->node_key),
	                            NULL, &keylen, NULL) == 0 &&
	             keylen == sizeof(n->key);
	ns->subnet_used[n->subnet_index] = 1;
	insert(ns, n);
}

int
nodes_load(struct nodes *ns, struct store *st, struct shoal_err *err)
{
	struct load_ctx ctx = {.ns = ns};

	return store_node_each(st, load_one, &ctx, err);
}

int
nodes_persist(struct store *st, const struct node *n, struct shoal_err *err)
{
	char key[2 * NODEKEY_PK_BYTES + 1] = "";
	struct store_node sn = {
	    .id = (char *)n->id,
	    .name = n->name,
	    .address = n->address,
	    .labels = n->agent_labels ? n->agent_labels : "",
	    .admin_labels = n->admin_labels ? n->admin_labels : "",
	    .availability = n->drain ? "drain" : "active",
	    .cpu_millis = n->cpu_millis,
	    .memory_bytes = n->memory_bytes,
	    .subnet_index = n->subnet_index,
	    .created_ms = n->created_ms,
	    .node_key = key,
	};

	if (n->has_key)
		util_hex(n->key, sizeof(n->key), key);
	return store_node_put(st, &sn, err);
}

char *
nodes_labels_join(Shoal__Label *const *labels, size_t n, struct shoal_err *err)
{
	size_t len = 1, off = 0;
	char *out;

	/* The count first: 500,000 labels are refused before any of them is read. */
	if (labels_check_count(n, err) == -1)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (labels_check(labels[i]->key, labels[i]->value, err) == -1)
			return NULL;
		len += strlen(labels[i]->key) + strlen(labels[i]->value) + 2;
	}
	/* One pass with a cursor: strcat in a loop rescans the string each time (quadratic). */
	out = xmalloc(len);
	for (size_t i = 0; i < n; i++) {
		size_t kl = strlen(labels[i]->key), vl = strlen(labels[i]->value);
		if (i)
			out[off++] = ',';
		memcpy(out + off, labels[i]->key, kl);
		off += kl;
		out[off++] = '=';
		memcpy(out + off, labels[i]->value, vl);
		off += vl;
	}
	out[off] = '\0';
	return out;
}

/* One parsed "k=v" of joined text: spans into it. */
struct label_span {
	const char *k, *v;
	size_t klen, vlen;
};

/* Split joined "k=v,k=v" into at most max spans; returns how many. */
static size_t
labels_spans(const char *s, struct label_span *out, size_t max)
{
	size_t n = 0;

	for (const char *p = s; p && *p && n < max;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq) {
			out[n].k = p;
			out[n].klen = (size_t)(eq - p);
			out[n].v = eq + 1;
			out[n].vlen = len - out[n].klen - 1;
			n++;
		}
		p = comma ? comma + 1 : p + len;
	}
	return n;
}

static ssize_t
span_find(const struct label_span *v, size_t n, const char *k, size_t klen)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].klen == klen && memcmp(v[i].k, k, klen) == 0)
			return (ssize_t)i;
	return -1;
}

static char *
spans_join(const struct label_span *const *v, size_t n)
{
	size_t len = 1, off = 0;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += v[i]->klen + v[i]->vlen + 2;
	out = xmalloc(len);
	for (size_t i = 0; i < n; i++) {
		if (i)
			out[off++] = ',';
		memcpy(out + off, v[i]->k, v[i]->klen);
		off += v[i]->klen;
		out[off++] = '=';
		memcpy(out + off, v[i]->v, v[i]->vlen);
		off += v[i]->vlen;
	}
	out[off] = '\0';
	return out;
}

char *
nodes_labels_merge(const char *agent, const char *admin)
{
	struct label_span ag[LABELS_MAX], ad[LABELS_MAX];
	const struct label_span *out[LABELS_MAX];
	size_t nag = labels_spans(agent, ag, LABELS_MAX), nad = labels_spans(admin, ad, LABELS_MAX);
	size_t n = 0, room = LABELS_MAX - nad;

	for (size_t i = 0; i < nag && room > 0; i++)
		if (span_find(ad, nad, ag[i].k, ag[i].klen) < 0) {
			out[n++] = &ag[i];
			room--;
		}
	for (size_t i = 0; i < nad; i++)
		out[n++] = &ad[i];
	return spans_join(out, n);
}

int
nodes_update_labels(struct store *st, struct node *n, char *const *add, size_t nadd,
                    char *const *rm, size_t nrm, struct shoal_err *err)
{
	struct label_span ad[LABELS_MAX], ag[LABELS_MAX];
	const struct label_span *out[LABELS_MAX];
	size_t nad = labels_spans(n->admin_labels, ad, LABELS_MAX);
	size_t nag = labels_spans(n->agent_labels, ag, LABELS_MAX);
	char *joined, *merged;

	if (labels_check_count(nadd, err) == -1 || labels_check_count(nrm, err) == -1)
		return err_prefix(err, "node update");
	for (size_t i = 0; i < nrm; i++) {
		size_t kl = strlen(rm[i]);
		ssize_t at = span_find(ad, nad, rm[i], kl);
		if (at >= 0) {
			ad[at] = ad[--nad];
			continue;
		}
		if (span_find(ag, nag, rm[i], kl) >= 0)
			return err_set(
			    err, 0,
			    "label %.64s of node %s is its agent's (shoal-agent --label): "
			    "change it there",
			    rm[i], n->name);
		return err_set(err, 0, "node %s has no label %.64s", n->name, rm[i]);
	}
	for (size_t i = 0; i < nadd; i++) {
		const char *eq = strchr(add[i], '=');
		struct label_span sp;
		char key[LABEL_KEY_MAX + 1];
		ssize_t at;

		if (eq == NULL)
			return err_set(err, 0, "--label-add %.64s: want KEY=VALUE", add[i]);
		if ((size_t)(eq - add[i]) > LABEL_KEY_MAX)
			return err_set(err, 0, "label key \"%.32s...\": longer than %d bytes",
			               add[i], LABEL_KEY_MAX);
		memcpy(key, add[i], (size_t)(eq - add[i]));
		key[eq - add[i]] = '\0';
		if (labels_check(key, eq + 1, err) == -1)
			return -1;
		sp = (struct label_span){add[i], eq + 1, (size_t)(eq - add[i]), strlen(eq + 1)};
		at = span_find(ad, nad, sp.k, sp.klen);
		if (at >= 0) {
			ad[at] = sp;
		} else {
			if (labels_check_count(nad + 1, err) == -1)
				return err_prefix(err, "node %s", n->name);
			ad[nad++] = sp;
		}
	}
	/* Agent's and admin's together are what a ListNodes reply carries: the same cap. */
	{
		size_t total = nad;
		for (size_t i = 0; i < nag; i++)
			if (span_find(ad, nad, ag[i].k, ag[i].klen) < 0)
				total++;
		if (labels_check_count(total, err) == -1)
			return err_prefix(err, "node %s with its agent's labels", n->name);
	}
	for (size_t i = 0; i < nad; i++)
		out[i] = &ad[i];
	joined = spans_join(out, nad);
	merged = nodes_labels_merge(n->agent_labels, joined);
	{
		char *old_admin = n->admin_labels, *old = n->labels;
		n->admin_labels = joined;
		n->labels = merged;
		if (nodes_persist(st, n, err) == -1) {
			n->admin_labels = old_admin;
			n->labels = old;
			free(joined);
			free(merged);
			return -1;
		}
		free(old_admin);
		free(old);
	}
	return 0;
}

int
nodes_check_task_ip(const struct nodes *ns, const struct node *n, bool host_network, const char *ip,
                    struct shoal_err *err)
{
	uint32_t a, net = ns->cidr_base + ((uint32_t)n->subnet_index << 8);
	const char *why;

	if (ip == NULL || ip[0] == '\0')
		return 0; /* no address in this report: nothing changes */
	if (!addr_parse4(ip, &a))
		return err_set(err, 0, "container_ip \"%.32s\" is not an IPv4 address", ip);
	why = addr_backend_refusal(a);
	if (why)
		return err_set(err, 0, "container_ip %s is a %s address", ip, why);
	/* A host-network task is reached at its node's own address. */
	if (host_network && n->address && strcmp(ip, n->address) == 0)
		return 0;
	/* .0 is the network, .1 the gateway (the node's bridge), .255 the broadcast: the agent
	 * leases .2 to .254 only (agent/netnode.c). */
	if ((a & 0xffffff00u) != net || (a & 255) < 2 || (a & 255) == 255) {
		char subnet[32];
		return err_set(err, 0, "container_ip %s is outside node %s's containers %s%s", ip,
		               n->name, nodes_subnet(ns, n, subnet, sizeof(subnet)),
		               host_network ? " (and not its address)" : "");
	}
	return 0;
}

static void
set_str(char **dst, const char *src)
{
	if (*dst && strcmp(*dst, src) == 0)
		return;
	free(*dst);
	*dst = xstrdup(src);
}

struct node *
nodes_register(struct nodes *ns, struct store *st, const char *name, const char *address,
               const char *labels, int64_t cpu_millis, int64_t memory_bytes, const uint8_t *key,
               struct shoal_err *err)
{
	struct node *n = nodes_find(ns, name);
	bool fresh = n == NULL, bind = false;
	char fp[NODEKEY_FP_LEN];

	if (fresh) {
		size_t idx;
		uint8_t raw[6];

		/* Index 0 is skipped: 10.244.0.0/24 reads like "the cluster", not a node. */
		for (idx = ns->nsubnets > 1 ? 1 : 0; idx < ns->nsubnets; idx++)
			if (!ns->subnet_used[idx])
				break;
		if (idx == ns->nsubnets) {
			err_set(err, 0, "no free /24 left in the cluster CIDR for node %s", name);
			return NULL;
		}
		n = xcalloc(1, sizeof(*n));
		randombytes_buf(raw, sizeof(raw));
		util_hex(raw, sizeof(raw), n->id);
		n->name = xstrdup(name);
		n->subnet_index = (int)idx;
		n->created_ms = util_wall_ms();
	} else if (key != NULL && n->has_key && sodium_memcmp(n->key, key, sizeof(n->key)) != 0) {
		/* Checked before anything changes: an impostor leaves no trace on the record. */
		err_set(err, 0, "node %s is bound to another key (key %s)", name,
		        nodekey_fingerprint(n->key, fp));
		return NULL;
	}
	if (key != NULL && !n->has_key) {
		memcpy(n->key, key, sizeof(n->key));
		n->has_key = bind = true;
	}
	/* A node coming back as it was (every agent after a scheduler restart, or a network
	 * blip) changes no row: no write, no commit to wait for. */
	if (!fresh && !bind && n->address && n->agent_labels && strcmp(n->address, address) == 0 &&
	    strcmp(n->agent_labels, labels) == 0 && n->cpu_millis == cpu_millis &&
	    n->memory_bytes == memory_bytes)
		return n;
	set_str(&n->address, address);
	set_str(&n->agent_labels, labels);
	free(n->labels);
	n->labels = nodes_labels_merge(n->agent_labels, n->admin_labels);
	n->cpu_millis = cpu_millis;
	n->memory_bytes = memory_bytes;
	if (nodes_persist(st, n, err) == -1) {
		if (fresh)
			node_free(n);
		else if (bind)
			n->has_key = false; /* bound in memory only: bind again next time */
		return NULL;
	}
	if (fresh) {
		ns->subnet_used[n->subnet_index] = 1;
		insert(ns, n);
	}
	return n;
}

enum nodes_key_check
nodes_check_key(struct nodes *ns, const char *name, const uint8_t *key)
{
	const struct node *n = nodes_find(ns, name);

	if (n == NULL)
		return NODES_KEY_NEW;
	if (!n->has_key)
		return NODES_KEY_UNBOUND;
	return sodium_memcmp(n->key, key, sizeof(n->key)) == 0 ? NODES_KEY_MATCH
	                                                       : NODES_KEY_MISMATCH;
}

int
nodes_join_admit(struct nodes_join_limit *l, int64_t now, uint32_t *conn_tries,
                 struct shoal_err *err)
{
	if (now > l->last_ms) {
		l->tokens += (double)(now - l->last_ms) * l->rate / 1000.0;
		if (l->tokens > l->burst)
			l->tokens = l->burst;
		l->last_ms = now;
	}
	if (*conn_tries >= l->per_conn)
		return err_set(err, 0, "this connection already tried %u new node names (limit %u)",
		               *conn_tries, l->per_conn);
	(*conn_tries)++;
	if (l->tokens < 1.0)
		return err_set(err, 0,
		               "too many new node names (at most %g a second after a burst of %g); "
		               "try again later",
		               l->rate, l->burst);
	l->tokens -= 1.0;
	return 0;
}

int
nodes_check_capacity(uint64_t cpu_millis, uint64_t memory_bytes, struct shoal_err *err)
{
	if (cpu_millis > (uint64_t)NODES_MAX_CPU_MILLIS)
		return err_set(err, 0,
		               "capacity of %llu CPU millis is beyond any host (at most %lld)",
		               (unsigned long long)cpu_millis, (long long)NODES_MAX_CPU_MILLIS);
	if (memory_bytes > (uint64_t)NODES_MAX_MEMORY_BYTES)
		return err_set(
		    err, 0, "capacity of %llu bytes of memory is beyond any host (at most 64 TiB)",
		    (unsigned long long)memory_bytes);
	return 0;
}

int
nodes_remove(struct nodes *ns, struct store *st, struct node *n, struct shoal_err *err)
{
	size_t i = lower_bound(ns, n->name);

	if (i >= ns->n || ns->v[i] != n)
		return err_set(err, 0, "no such node: %s", n->name);
	if (store_node_delete(st, n->id, err) == -1)
		return -1;
	memmove(ns->v + i, ns->v + i + 1, (ns->n - i - 1) * sizeof(*ns->v));
	ns->n--;
	ns->subnet_used[n->subnet_index] = 0;
	node_free(n);
	return 0;
}

char *
nodes_subnet(const struct nodes *ns, const struct node *n, char *buf, size_t len)
{
	uint32_t a = ns->cidr_base + ((uint32_t)n->subnet_index << 8);

	snprintf(buf, len, "%u.%u.%u.0/24", a >> 24, (a >> 16) & 255, (a >> 8) & 255);
	return buf;
}

size_t
nodes_expire(struct nodes *ns, int64_t now, int64_t timeout_ms,
             void (*fn)(struct node *n, void *arg), void *arg)
{
	size_t changed = 0;

	for (size_t i = 0; i < ns->n; i++) {
		struct node *n = ns->v[i];
		int64_t own = n->expect_ms ? 3 * (int64_t)n->expect_ms : timeout_ms;
		int64_t limit = n->status == NODE_UNKNOWN && ns->restart_grace_ms > own
		                    ? ns->restart_grace_ms
		                    : own;
		/* Silence while our own loop was held up is ours, not the node's. */
		int64_t silent = now - n->last_seen - (ns->stalled_ms - n->stalled_at_seen);
		if (n->status == NODE_DOWN || silent <= limit)
			continue;
		n->status = NODE_DOWN;
		changed++;
		if (fn)
			fn(n, arg);
	}
	return changed;
}

uint32_t
nodes_heartbeat_ms(const struct nodes *ns, uint32_t base_ms, uint32_t max_rate)
{
	uint64_t ms;

	if (max_rate == 0)
		return base_ms;
	ms = ((uint64_t)ns->n * 1000 + max_rate - 1) / max_rate;
	if (ms > NODES_HEARTBEAT_MAX_MS)
		ms = NODES_HEARTBEAT_MAX_MS;
	return ms > base_ms ? (uint32_t)ms : base_ms;
}

void
nodes_told(struct node *n, uint32_t ms)
{
	n->expect_ms = n->told_ms > ms ? n->told_ms : ms;
	n->told_ms = ms;
}

void
nodes_seen(struct nodes *ns, struct node *n, int64_t now)
{
	n->last_seen = now;
	n->stalled_at_seen = ns->stalled_ms;
}

void
nodes_tick(struct nodes *ns, int64_t now, int64_t period_ms)
{
	/* A tick up to one period late is the timer's ordinary slack, not a stall. */
	if (ns->last_tick_ms != 0 && now - ns->last_tick_ms > 2 * period_ms)
		ns->stalled_ms += now - ns->last_tick_ms - period_ms;
	ns->last_tick_ms = now;
}
