#ifndef SHOAL_AGENT_SESSION_H
#define SHOAL_AGENT_SESSION_H

#include <stdint.h>

#include "nodekey.h"
#include "schedlist.h"
#include "session-t.h"

struct agent_server;
struct shoal_err;
struct event;
struct rpc_conn;

/*
 * The agent's one long-lived session with the scheduler: connect, register, heartbeat, and on
 * any loss reconnect with exponential back-off (100 ms doubling to 2 s, jittered +/-20%:
 * common/backoff.h). Each state change is logged once, not once per retry.
 */

void session_init(struct session *s, struct agent_server *a);
/*
 * Load this node's key from path, making it at the first start (nodekey.h). Every Register
 * carries the public key and a signature over the connection's channel binding.
 */
int session_load_key(struct session *s, const char *path, struct shoal_err *err);
/* Start connecting now. */
void session_start(struct session *s);
void session_free(struct session *s);

typedef struct Shoal__ProxyHint Shoal__ProxyHint;
typedef struct Shoal__IngressReport Shoal__IngressReport;
/* The node's proxy could not reach a backend: pass it on to the scheduler as a hint. */
void session_ingress_failure(const Shoal__ProxyHint *h, void *arg);
/* The node's proxy reported (stats, the table applied, ports not listening): the heartbeat
 * that was waiting for it goes out. */
void session_ingress_report(const Shoal__IngressReport *r, void *arg);

/*
 * Why the proxy must not dial ip, a backend the scheduler sent ("loopback", "link-local",
 * "multicast", "unspecified", "broadcast", "reserved", "not an IPv4 address"); NULL if it may.
 */
const char *session_backend_refusal(const char *ip);

/* Back-off after the n-th consecutive failure (n >= 1), before jitter: 100ms * 2^(n-1), max 2s. */
int64_t session_backoff_ms(int n);

#endif
