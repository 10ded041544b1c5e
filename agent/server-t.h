#ifndef SHOAL_AGENT_SERVER_T_H
#define SHOAL_AGENT_SERVER_T_H

/* The types of server.h (a types header: the daemon state every module reaches). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"
#include "ingress.h"
#include "logs-t.h"
#include "netnode.h"
#include "resources.h"
#include "schedlist.h"
#include "session-t.h"
#include "tasks-t.h"
#include "token.h"

struct event_base;
struct event;
struct agent_metrics;

struct agent_options {
	const char *scheduler; /* HOST:PORT */
	const char *token_file;
	const char *name;
	const char *address;
	const char *data_dir;
	const char *image_dir; /* OCI layouts named NAME_TAG/ to import images from */
	char **labels;         /* "k=v" */
	size_t nlabels;
	const char *registry_auth; /* auth.json for registries, or NULL */
	char **insecure;           /* HOST:PORT registries over plain HTTP, NULL-terminated */
	int64_t image_gc_after_ms; /* prune unused images this old; 0: never; -1: default */
	int64_t cpu_millis;        /* advertise at most this much; 0 = what the node has */
	int64_t memory_bytes;
	bool masquerade;     /* masquerade containers' traffic leaving the cluster */
	int proxy_threads;   /* 0 = number of CPUs */
	int proxy_max_conns; /* 0 = no limit */
	int64_t proxy_idle_timeout_ms;
	int64_t proxy_first_byte_timeout_ms; /* 0 = 30 s */
	const char *http;                    /* /metrics: "ADDR:PORT", "off" or NULL (none) */
};

/* The agent daemon's state: the only mutable global, owner of everything below. */
struct agent_server {
	struct event_base *base;
	struct event *sig_term;
	struct event *sig_int;
	struct event *log_tick; /* writes the counts of rate-limited log lines (1 s) */
	struct session session; /* the connection to the scheduler */
	struct tasks tasks;     /* the containers this node runs */
	struct logs logs;       /* `shoal logs` requests being served */
	struct netnode netnode; /* bridge, addresses, routes of the containers */
	struct ingress ingress; /* the node's proxy process: every published service */
	struct token token;     /* worker join token (secret) */
	/* --scheduler: every scheduler, and which to try next */
	struct schedlist scheds;
	char *name;
	char *address;
	char *data_dir;
	char **labels; /* "k=v", owned */
	size_t nlabels;
	struct resources capacity; /* advertised */
	struct resources_cpu_sample cpu_sample;
	struct agent_metrics *metrics; /* /metrics (metrics.c), NULL when off */
	struct dns_server dns;         /* service names for the containers, on the bridge address */
};

#endif
