#include "server.h"
#include "logs.h"
#include "session.h"
#include "tasks.h"

#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "err.h"
#include "labels.h"
#include "log.h"
#include "metrics.h"
#include "token.h"
#include "util.h"

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct agent_server *a = arg;

	(void)what;
	shoal_log(LOG_INFO, "%s: shutting down", strsignal((int)sig));
	event_base_loopexit(a->base, NULL);
}

static void
on_log_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_tick();
}

int
agent_server_init(struct agent_server *a, const struct agent_options *opt, struct shoal_err *err)
{
	struct in_addr in;
	char mem[32];

	memset(a, 0, sizeof(*a));
	if (schedlist_parse(&a->scheds, opt->scheduler, NULL, err) == -1)
		return err_prefix(err, "--scheduler");
	if (inet_pton(AF_INET, opt->address, &in) != 1)
		return err_set(err, 0, "--address %s: must be an IPv4 address", opt->address);
	for (size_t i = 0; i < opt->nlabels; i++)
		if (strchr(opt->labels[i], '=') == NULL || opt->labels[i][0] == '=')
			return err_set(err, 0, "--label %s: expected KEY=VALUE", opt->labels[i]);
	/* The scheduler refuses a Register past these caps: say so here, once, at start. */
	if (labels_check_count(opt->nlabels, err) == -1)
		return err_prefix(err, "--label");
	for (size_t i = 0; i < opt->nlabels; i++) {
		cleanup_free char *key = xstrdup(opt->labels[i]);
		char *eq = strchr(key, '=');
		*eq = '\0';
		if (labels_check(key, eq + 1, err) == -1)
			return err_prefix(err, "--label");
	}
	if (token_load(opt->token_file, &a->token, err) == -1)
		return err_prefix(err, "--token-file");
	if (a->token.role != TOKEN_ROLE_WORKER) {
		token_wipe(&a->token);
		return err_set(err, 0,
		               "--token-file %s: an agent needs the worker token, not the %s token",
		               opt->token_file, token_role_name(a->token.role));
	}
	if (util_mkdir_p(opt->data_dir, 0700, err) == -1) {
		token_wipe(&a->token);
		return err_prefix(err, "--data-dir");
	}
	a->name = xstrdup(opt->name);
	a->address = xstrdup(opt->address);
	a->data_dir = xstrdup(opt->data_dir);
	a->labels = xcalloc(opt->nlabels + 1, sizeof(char *));
	for (size_t i = 0; i < opt->nlabels; i++)
		a->labels[i] = xstrdup(opt->labels[i]);
	a->nlabels = opt->nlabels;
	resources_capacity("/sys/fs/cgroup", &a->capacity);
	if (opt->cpu_millis > 0 && opt->cpu_millis < a->capacity.cpu_millis)
		a->capacity.cpu_millis = opt->cpu_millis;
	if (opt->memory_bytes > 0 && opt->memory_bytes < a->capacity.memory_bytes)
		a->capacity.memory_bytes = opt->memory_bytes;

	a->base = event_base_new();
	if (a->base == NULL) {
		agent_server_free(a);
		return err_set(err, 0, "cannot create event base");
	}
	a->sig_term = evsignal_new(a->base, SIGTERM, on_signal, a);
	a->sig_int = evsignal_new(a->base, SIGINT, on_signal, a);
	event_add(a->sig_term, NULL);
	event_add(a->sig_int, NULL);
	a->log_tick = event_new(a->base, -1, EV_PERSIST, on_log_tick, NULL);
	event_add(a->log_tick, &(struct timeval){1, 0});
	dns_init(&a->dns, a->base);
	session_init(&a->session, a);
	{
		cleanup_free char *key = xasprintf("%s/node.key", a->data_dir);
		if (session_load_key(&a->session, key, err) == -1) {
			agent_server_free(a);
			return -1;
		}
	}
	if (netnode_init(&a->netnode, a->data_dir, a->name, opt->masquerade, err) == -1) {
		agent_server_free(a);
		return err_prefix(err, "network");
	}
	if (tasks_init(&a->tasks, a, a->data_dir, opt->image_dir, err) == -1) {
		agent_server_free(a);
		return -1;
	}
	tasks_set_registry(&a->tasks, opt->registry_auth, opt->insecure);
	tasks_set_image_gc(&a->tasks,
	                   opt->image_gc_after_ms < 0 ? 3600 * 1000 : opt->image_gc_after_ms);
	tasks_load(&a->tasks);
	logs_init(&a->logs, a);
	{
		struct ingress_spawn_opts io = {
		    .threads = opt->proxy_threads,
		    .max_conns = opt->proxy_max_conns,
		    .idle_timeout_ms = opt->proxy_idle_timeout_ms,
		    .first_byte_timeout_ms = opt->proxy_first_byte_timeout_ms,
		};
		struct ingress_ops ops = {session_ingress_report, session_ingress_failure};

		if (ingress_init(&a->ingress, a->base, a->data_dir, &io, &ops, &a->session, err) ==
		    -1) {
			agent_server_free(a);
			return err_prefix(err, "ingress");
		}
	}
	if (opt->http && metrics_start(a, opt->http, err) == -1) {
		agent_server_free(a);
		return -1;
	}
	shoal_log(LOG_INFO, "agent %s address=%s capacity cpus=%.2f memory=%s", a->name, a->address,
	          (double)a->capacity.cpu_millis / 1000.0,
	          util_format_bytes(a->capacity.memory_bytes, mem, sizeof(mem)));
	return 0;
}

int
agent_server_run(struct agent_server *a)
{
	signal(SIGPIPE, SIG_IGN);
	session_start(&a->session);
	return event_base_dispatch(a->base) == -1 ? -1 : 0;
}

void
agent_server_free(struct agent_server *a)
{
	session_free(&a->session);
	metrics_free(a);
	if (a->ingress.sock_path)
		ingress_free(&a->ingress);
	if (a->logs.poll)
		agent_logs_free(&a->logs);
	if (a->tasks.root)
		tasks_free(&a->tasks);
	netnode_free(&a->netnode);
	if (a->sig_term)
		event_free(a->sig_term);
	if (a->sig_int)
		event_free(a->sig_int);
	if (a->log_tick)
		event_free(a->log_tick);
	if (a->dns.base)
		dns_free(&a->dns);
	if (a->base)
		event_base_free(a->base);
	for (size_t i = 0; i < a->nlabels; i++)
		free(a->labels[i]);
	free(a->labels);
	free(a->name);
	free(a->address);
	free(a->data_dir);
	token_wipe(&a->token);
	memset(a, 0, sizeof(*a));
}
