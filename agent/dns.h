#ifndef SHOAL_AGENT_DNS_H
#define SHOAL_AGENT_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "dnsmsg.h"

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct shoal_err;
typedef struct Shoal__Endpoints Shoal__Endpoints;

/*
 * The node's resolver for its containers (their resolv.conf names it): UDP and TCP on the
 * bridge address, port 53, on the agent's loop. Service names are answered from the latest
 * Endpoints (common/dnsmsg.h says which); other names go to the upstream resolvers of the
 * agent's own /etc/resolv.conf over UDP, and a client gets SERVFAIL when there is none, when
 * the send fails or when no answer came within DNS_FORWARD_TIMEOUT_MS: never silence.
 */

#define DNS_PORT               53
#define DNS_MAX_PENDING        256 /* forwarded queries in flight; more get SERVFAIL */
#define DNS_MAX_UPSTREAMS      3
#define DNS_FORWARD_TIMEOUT_MS 2000
#define DNS_MAX_TCP            64           /* TCP clients at once; more are closed */
#define DNS_TCP_IDLE_MS        10000        /* a TCP client silent this long is closed */
#define DNS_TCP_OUT_MAX        (256 * 1024) /* answers queued for a client that does not read */
#define DNS_MAX_HOLD           64           /* UDP queries waiting for a service's tasks */
#define DNS_HOLD_TIMEOUT_MS    2000         /* then answered from what the table has (the VIP) */
#define DNS_MAX_SUBS           1024         /* services followed (scheduler/endpoints.h) */

/* A query for a service whose tasks this node does not have yet (tasks_omitted): held until
 * the scheduler sent them and the node's proxy serves them, so that the first connection to
 * the VIP it answers finds backends. */
struct dns_hold {
	int used;
	uint8_t q[DNSMSG_UDP_MAX];
	size_t qlen;
	struct sockaddr_in client;
	char service[256];  /* lower case */
	uint64_t ready_gen; /* 0: the tasks have not come; else the table that brought them */
	int64_t deadline;   /* monotonic ms */
};

struct dns_pending {
	int used;
	uint16_t upstream_id; /* the id sent upstream (random) */
	uint16_t client_id;
	struct sockaddr_in client;
	int64_t deadline; /* monotonic ms */
	uint8_t *query;   /* as sent upstream: its question must come back */
	size_t qlen;
};

struct dns_server {
	struct event_base *base;
	struct dnsmsg_table table; /* from the latest Endpoints */
	struct in_addr listen;     /* 0.0.0.0 until dns_listen */
	uint16_t port;
	int udp_fd;
	struct event *udp_ev;
	struct evconnlistener *tcp;
	struct bufferevent *tcpc[DNS_MAX_TCP]; /* TCP clients open (NULL: free slot) */
	size_t ntcp;
	struct sockaddr_in upstream[DNS_MAX_UPSTREAMS];
	size_t nupstream;
	int up_fd; /* the socket forwarded queries leave from, -1 until the first */
	struct event *up_ev;
	struct dns_pending pending[DNS_MAX_PENDING];
	struct event *timer; /* expires pending queries */
	uint32_t rotate;     /* tasks.NAME answers start one further each time */
	uint64_t dropped;    /* malformed queries, for the log's rate */
	char **omitted;      /* sorted, lower case: services whose tasks the table lacks */
	size_t nomitted;
	char **subs; /* services followed, as the scheduler was asked (re-sent in Register) */
	size_t nsubs;
	size_t subs_saved; /* how many of subs the agent has written down (session.c) */
	struct dns_hold hold[DNS_MAX_HOLD];
	uint64_t gen; /* the generation of the table */
	/* Ask the scheduler for a service's tasks (session.c sends EndpointsSubscribe). */
	void (*subscribe)(const char *service, void *arg);
	void *subscribe_arg;
};

void dns_init(struct dns_server *d, struct event_base *base);
/*
 * Serve on ip:port (UDP and TCP), reading upstreams from resolv_conf (the agent's
 * /etc/resolv.conf; the listen address itself is skipped). Listening again on the same address
 * is a no-op; on another one the old sockets close first.
 */
int dns_listen(struct dns_server *d, const char *ip, uint16_t port, const char *resolv_conf,
               struct shoal_err *err);
/*
 * Take the names of ep (its ServiceName list); node_addr answers for published services. A
 * service whose tasks ep omits is followed at its first query: the query waits (at most
 * DNS_HOLD_TIMEOUT_MS) for a table with them, then for dns_applied of that table.
 */
void dns_update(struct dns_server *d, const Shoal__Endpoints *ep, const char *node_addr);
/* The node's proxy serves the table of generation gen: answer the queries that waited for it. */
void dns_applied(struct dns_server *d, uint64_t gen);
/* The name a query is about when it names a service: NAME or tasks.NAME, with or without the
 * cluster domain, lower case; false otherwise. */
bool dns_service_of(const char *qname, char *out, size_t cap);
void dns_free(struct dns_server *d);

/* The upstream resolvers in the text of a resolv.conf (IPv4, not skip), at most max. */
size_t dns_parse_upstreams(const char *text, struct in_addr skip, struct sockaddr_in *out,
                           size_t max);

#endif
