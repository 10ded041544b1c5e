#ifndef SHOAL_COMMON_MANIFEST_SPEC_T_H
#define SHOAL_COMMON_MANIFEST_SPEC_T_H

/* The types of a service's desired state (manifest_spec.h has its functions). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shoal_err;

/* update.timeout's default: five minutes without progress ends a rollout. */
#define MANIFEST_UPDATE_TIMEOUT_MS 300000

/* Docker Swarm's restart conditions; "always" is Swarm's "any". */
enum manifest_restart_policy {
	MANIFEST_RESTART_ALWAYS = 0,
	MANIFEST_RESTART_ON_FAILURE,
	MANIFEST_RESTART_NEVER,
};

enum manifest_health_kind {
	MANIFEST_HEALTH_NONE = 0, /* no check: a running task counts as healthy */
	MANIFEST_HEALTH_HTTP,     /* GET http_path on port: 2xx/3xx is healthy */
	MANIFEST_HEALTH_TCP,      /* a TCP connect to port succeeds */
	MANIFEST_HEALTH_CMD,      /* cmd run in the container exits 0 */
};

enum manifest_update_order {
	MANIFEST_ORDER_STOP_FIRST = 0,
	MANIFEST_ORDER_START_FIRST,
};

enum manifest_failure_action {
	MANIFEST_FAILURE_PAUSE = 0,
	MANIFEST_FAILURE_ROLLBACK,
	MANIFEST_FAILURE_CONTINUE,
};

enum manifest_network {
	MANIFEST_NETWORK_BRIDGE = 0,
	MANIFEST_NETWORK_HOST,
};

/* proxy.protocol: what the node's proxy writes to a replica before the client's bytes. */
enum manifest_proxy_protocol {
	MANIFEST_PROXY_PROTOCOL_NONE = 0,
	MANIFEST_PROXY_PROTOCOL_V1, /* HAProxy PROXY protocol, text */
	MANIFEST_PROXY_PROTOCOL_V2, /* HAProxy PROXY protocol, binary */
};

/* proxy.mode: tcp relays connections (L4), http balances each HTTP/1.1 request. */
enum manifest_proxy_mode {
	MANIFEST_PROXY_MODE_TCP = 0,
	MANIFEST_PROXY_MODE_HTTP,
};

enum manifest_constraint_field {
	MANIFEST_NODE_NAME = 0,
	MANIFEST_NODE_ID,
	MANIFEST_NODE_LABEL, /* node.labels.KEY: label holds KEY */
};

/* An argument vector. set distinguishes "absent" (use the image's) from an explicit []. */
struct manifest_argv {
	bool set;
	size_t n;
	char **v;
};

struct manifest_env {
	char *name;
	char *value;
};

struct manifest_port {
	uint16_t published; /* port every node's proxy listens on; 0 = not published */
	uint16_t target;    /* port inside the container */
};

/* "node.labels.zone == a": field LABEL, label "zone", equal true, value "a". */
struct manifest_constraint {
	enum manifest_constraint_field field;
	char *label; /* NULL unless field is MANIFEST_NODE_LABEL */
	bool equal;  /* == when true, != when false */
	char *value;
};

/*
 * One service's desired state. manifest_spec_init() fills the defaults; every
 * string and array is heap-owned by the spec. env is sorted by name and
 * constraints by their text, so two manifests that differ only in that order
 * describe the same spec.
 */
struct service_spec {
	char *name;  /* DNS label */
	char *image; /* image reference, e.g. shoal/web:1 */
	uint32_t replicas;
	struct manifest_argv entrypoint; /* unset: the image's */
	struct manifest_argv command;    /* unset: the image's */
	struct manifest_env *env;
	size_t n_env;
	struct manifest_port *ports;
	size_t n_ports;
	struct {
		uint32_t cpu_millis;  /* 0 = unlimited; cpus 0.25 is 250 */
		int64_t memory_bytes; /* 0 = unlimited */
		int64_t pids;         /* 0 = unlimited */
	} resources;
	struct {
		enum manifest_restart_policy policy;
		uint32_t max_attempts; /* 0 = no limit */
		int64_t delay_ms;
	} restart;
	struct {
		struct manifest_constraint *constraints;
		size_t n_constraints;
		uint32_t max_per_node; /* 0 = no limit */
	} placement;
	struct {
		enum manifest_health_kind kind;
		char *http_path;          /* HTTP only */
		uint16_t port;            /* HTTP and TCP */
		struct manifest_argv cmd; /* CMD only */
		int64_t interval_ms;
		int64_t timeout_ms;
		int64_t start_period_ms;
		uint32_t retries;
	} health;
	struct {
		uint32_t parallelism; /* 0 = all at once */
		int64_t delay_ms;
		enum manifest_update_order order;
		enum manifest_failure_action failure_action;
		int64_t monitor_ms;
		/* A rollout (apply, scale, rollback) that brings no further slot to running and
		 * healthy for this long ends with failure_action (an update) or is reported stuck
		 * (a deploy, a scale); 0 = wait for ever. Default MANIFEST_UPDATE_TIMEOUT_MS. */
		int64_t timeout_ms;
	} update;
	int64_t stop_grace_ms;
	enum manifest_network network;
	struct {
		uint32_t max_conns_per_replica; /* 0 = unlimited; at the limit clients queue */
		int64_t queue_timeout_ms;       /* how long a queued client waits for a slot */
		enum manifest_proxy_protocol protocol;
		enum manifest_proxy_mode mode;
	} proxy;
	/* Set no_new_privs on the container's processes: setuid binaries and file capabilities
	 * then grant nothing. Off by default, as in Docker (--security-opt no-new-privileges). */
	bool no_new_privileges;
};

/* Every error found, one "FILE:LINE:COLUMN: message" per line. Zero-initialise;
 * parsers append, so one set can gather the errors of several files. */
struct manifest_errors {
	char **lines;
	size_t n;
	/* Accepted, but worth a line on stderr: "FILE:LINE:COL: warning: ..." (Swarm's spelling
	 * of a value Shoal names otherwise). */
	char **warnings;
	size_t nwarnings;
};

/* Caps a runaway file (or a fuzzer) at this many lines, then one "too many errors" line. */
#define MANIFEST_MAX_ERRORS 100

/* The largest service spec, as canonical JSON: a spec is sent whole in every service listing
 * and, with its previous version during an update, in every Assignments of a node running it,
 * all within one 4 MiB frame. */
#define MANIFEST_MAX_SPEC_BYTES (128 * 1024)

#endif
