#ifndef SHOAL_AGENT_PROXY_H
#define SHOAL_AGENT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lb_ops;
struct shoal_err;
struct proxy;

/*
 * The node's ingress proxy: for every service with a published port, a listener that
 * forwards each new TCP connection to the next backend in round-robin order.
 *
 * N worker threads, each with its own event base, poll one shared listening socket per
 * service (one accept queue: a connection is taken by the first free worker, and handed to
 * another worker when that one carries fewer connections), and share ONE endpoint table:
 * an immutable snapshot that proxy_set_services() builds
 * on the calling (main) thread and publishes with one atomic store. Workers read it with
 * one atomic load per new connection; an old table is freed once every worker has passed an
 * event-loop turn after the swap (RCU-style quiescent points), so readers take no lock and
 * no reference. Established connections hold their backend, not the table: a swap never
 * drops them.
 *
 * A backend whose connect is refused or reset is down: benched for bench_ms, and the client
 * is retried on another backend at once. A connect that times out while the backend
 * completed one within the last PX_BUSY_WINDOW_MS (10 s) is busy, not down: never benched
 * (an overloaded replica's full accept queue drops SYNs; benching it would turn a spike into
 * an outage), and the backend is taken as full at the connections it holds (a learned limit,
 * HAProxy's maxconn discovered: it rises by one per that many connects completed, and is
 * forgotten 10 s after the last busy timeout). A timeout with no recent answer benches. When
 * every backend is benched they are all tried anyway: a bench orders the choice, it never
 * closes a client on its own. Refused and reset connects are bounded: 1 + 3 (HAProxy's
 * retries 3), each to another backend when there is one. A client whose connect timed out
 * spends no attempt: it is tried on a backend with a free slot or waits at the head of the
 * queue, and is closed only once queue_timeout has passed since its first timeout.
 *
 * max_conns_per_backend bounds the connections (connecting or open) to each backend (with the
 * learned limit, the lower of the two),
 * counted across workers with atomics. A client that finds every backend at its limit
 * waits in the service's FIFO queue (a list under a mutex: no loop blocks on it) for up to
 * queue_timeout_ms, then is closed; one that closes meanwhile with nothing sent leaves it at
 * once (HAProxy's abortonclose); a freed slot goes to the queue's head, at once, on the
 * backend that freed it or the next free one in rotation. The waiting client's worker is
 * told by a command; its bytes stay in its socket meanwhile. Data moves with recv/send through a
 * per-thread scratch buffer: bytes are copied into a per-connection buffer (at most buf_size per
 * direction) only when the receiver is slower, and then reading from the sender stops until it
 * drains.
 *
 * All functions below are for the thread that created the proxy (the agent's main thread).
 */

struct proxy_backend_spec {
	const char *id; /* stable identity (a task id): stats and bench state follow it */
	const char *ip; /* IPv4 or IPv6 literal */
	uint16_t port;
};

/* The HAProxy PROXY protocol header a backend gets first (the client's address). */
enum proxy_protocol {
	PROXY_PROTOCOL_NONE = 0,
	PROXY_PROTOCOL_V1, /* text: "PROXY TCP4 src dst sport dport\r\n" */
	PROXY_PROTOCOL_V2, /* binary, 16-byte header + addresses */
};

struct proxy_service_spec {
	const char *name;
	const char *listen_addr; /* IPv4 or IPv6 literal; NULL = 0.0.0.0 */
	uint16_t port;           /* published port; 0 = any free one (tests) */
	const struct proxy_backend_spec *backends;
	size_t nbackends;
	uint32_t max_conns_per_backend; /* 0 = unlimited (and no queue) */
	int64_t queue_timeout_ms;       /* how long a client waits for a slot; 0 = 30 s */
	enum proxy_protocol protocol;   /* header written to the backend before client bytes */
	bool http; /* balance each HTTP/1.x request (proxy_http.h), not each connection */
};

/* A passive failure: a connect to a backend was refused, reset or timed out, and the proxy
 * benched it. The strings are valid during the callback only. */
struct proxy_failure {
	const char *service;
	const char *backend_id;
	const char *backend_addr; /* "IP:PORT" */
	int code;                 /* errno: ECONNREFUSED, ECONNRESET, ETIMEDOUT, ... */
};

typedef void (*proxy_failure_fn)(const struct proxy_failure *f, void *arg);

struct proxy_options {
	int threads;                /* worker threads; 0 = number of CPUs */
	int max_conns;              /* client connections over all services; 0 = see below */
	int64_t idle_timeout_ms;    /* no byte either way for this long closes; 0 = 10 min */
	int64_t connect_timeout_ms; /* 0 = 1 s */
	int64_t bench_ms;           /* how long a failed backend is skipped; 0 = 2 s */
	size_t buf_size;            /* proxy-side buffer per direction; 0 = 64 KiB, max 256 KiB */
	const struct lb_ops *lb;    /* NULL = round-robin (lb_rr_ops) */
	/* on_failure runs on main_base's thread when main_base is set (one eventfd event is
	 * added to it), else on a worker thread. */
	struct event_base *main_base;
	proxy_failure_fn on_failure;
	void *failure_arg;
	/* A connection on which neither the client nor the backend sent a byte for this long
	 * closes; 0 = 30 s. Counted from the backend connect, and only while both are silent, so
	 * server-speaks-first protocols are safe. */
	int64_t first_byte_timeout_ms;
};

/*
 * The default max_conns for an fd limit of nofile: what max_conns = 0 gives (one limit for the
 * node, over all services). Every client holds two fds (its own and its backend's), and
 * max(256, nofile / 8) stay in reserve for the rest of the agent, at most 65536 connections.
 * 1024 fds: 384 connections; 1048576: 65536.
 */
int proxy_default_max_conns(uint64_t nofile);

/* Start the worker threads (no listener yet). NULL with *err on failure. */
struct proxy *proxy_create(const struct proxy_options *opt, struct shoal_err *err);

/* Stop the workers, close every listener and connection, free everything. NULL is a no-op. */
void proxy_destroy(struct proxy *p);

/*
 * Make the proxy serve exactly these services (the whole set, level-triggered like the
 * scheduler's Endpoints): listeners open for new ones and close for those gone; a service
 * keeps its listener, stats and rotation when its name, address and port stay; a backend
 * keeps its stats and bench state when its id, ip and port stay. Established connections
 * are never dropped. A service that cannot listen (port taken, bad address) is left out and
 * reported in *err, the others still apply: -1 then, 0 when all applied.
 */
int proxy_set_services(struct proxy *p, const struct proxy_service_spec *svcs, size_t n,
                       struct shoal_err *err);

/* The port a service listens on (useful with port 0; its first listener's when it has several,
 * one per port); 0 when there is no such service. */
uint16_t proxy_listen_port(struct proxy *p, const char *service);

struct proxy_counters {
	uint64_t conns;            /* connections accepted (service) / established (backend) */
	int64_t active;            /* open now */
	uint64_t bytes_in;         /* client -> backend */
	uint64_t bytes_out;        /* backend -> client */
	uint64_t connect_failures; /* connects refused, reset or timed out */
	uint64_t retries;          /* clients moved to another backend after a failure */
	uint64_t rejected;         /* service: over max_conns, no backend left, queue timeout */
	uint64_t busy_timeouts;    /* connects timed out on a backend that answered recently */
	uint64_t queued;           /* service: clients that waited in the queue for a slot */
	uint64_t queue_wait_ms;    /* service: their waits, summed (those that got a slot) */
	uint64_t queue_timeouts;   /* service: clients closed after queue_timeout_ms waiting */
};

struct proxy_backend_stats {
	char id[128];
	char addr[64]; /* "IP:PORT" */
	bool benched;
	struct proxy_counters c;
};

struct proxy_service_stats {
	char name[128];
	uint16_t port;
	struct proxy_counters c;
	int64_t queue_len;      /* clients waiting for a slot now */
	int64_t queue_max_wait; /* ms the oldest of them has waited */
	size_t nbackends;
	struct proxy_backend_stats *backends;
};

struct proxy_stats {
	size_t nservices;
	struct proxy_service_stats *services;
};

/* Snapshot the counters of the current table into *out (free with proxy_stats_free). Byte
 * counts of open connections lag by at most 64 KiB each. */
void proxy_stats(struct proxy *p, struct proxy_stats *out);
void proxy_stats_free(struct proxy_stats *s);

/* Bytes held in proxy buffers across all connections now (introspection for tests and
 * /metrics: the backpressure bound is buf_size per direction per connection). */
int64_t proxy_buffered_bytes(struct proxy *p);

/* Client connections each worker thread serves now, into out[0..max): the number of
 * workers. (How evenly the shared accept queue and the hand-offs spread them.) */
size_t proxy_worker_conns(struct proxy *p, int64_t *out, size_t max);

/* A published port that could not be opened by the last proxy_set_services. */
struct proxy_bind_error {
	char service[128];
	uint16_t port;
	int code;      /* errno: EADDRINUSE, EACCES, EADDRNOTAVAIL; 0 = not a system error */
	char msg[256]; /* the whole message, as proxy_set_services reported it */
};

/* The services of the last proxy_set_services that are not listening, valid until the next
 * call; their count. Calling proxy_set_services again with the same set retries them. */
size_t proxy_bind_errors(struct proxy *p, const struct proxy_bind_error **out);

/*
 * Listener hand-over between two ingress processes (an upgrade): proxy_listener_fds gives the
 * listening sockets of the current services (the proxy keeps owning them; their count, which
 * may exceed max); the receiving proxy takes each with proxy_adopt_listener (takes fd), and
 * a later proxy_set_services uses it for the service on that very address and port instead of
 * binding anew, so no connection is refused while both processes change over.
 * proxy_drop_adopted closes those no service took (their count).
 */
size_t proxy_listener_fds(struct proxy *p, int *out, size_t max);
void proxy_adopt_listener(struct proxy *p, int fd);
size_t proxy_drop_adopted(struct proxy *p);

#endif
