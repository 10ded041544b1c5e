#ifndef SHOAL_AGENT_PROXY_HTTP_H
#define SHOAL_AGENT_PROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "proxy_http_parse.h"

struct event_base;

/*
 * The node proxy's HTTP mode (`proxy: {mode: http}`): one client connection carries many
 * HTTP/1.x requests, and each goes to the next backend in rotation, with X-Forwarded-For
 * (appended to one the client sent), X-Forwarded-Proto and Forwarded added. A request whose
 * backend refuses the connect, or resets or closes before the first byte of the answer, is
 * sent again to another backend (at most 1 + 3 tries, like the L4 mode's connects), as long as
 * the proxy still holds all of it (PROXY_HTTP_RETRY_MAX bytes). Backend connections are kept
 * for the client connection's next requests (a few per client, HAProxy's `http-reuse safe`).
 *
 * Errors the client gets: 400 (malformed request, then close), 431 (head over
 * PROXY_HTTP_HEAD_MAX), 501 (a transfer coding other than chunked, CONNECT), 502 (no
 * backend answered, or the answer is not HTTP), 503 (no backend), 504 (no answer within the
 * idle timeout). Upgrades (101 Switching Protocols) become a plain two-way relay.
 * The parser is proxy_http_parse.h.
 */

/* ---- connections ---------------------------------------------------------------------- */

/* What the owner (proxy.c) gives: backends in rotation and their accounting. A backend is an
 * opaque pointer the owner keeps alive while a reference is held. */
struct proxy_http_ops {
	/* The next backend with a free slot, slot and one reference taken; avoid (may be NULL)
	 * is passed over while another will do. NULL: none. */
	void *(*pick)(void *owner, const void *avoid);
	/* pick found every backend at its limit: queue the client for a slot (true), which
	 * then comes through proxy_http_conn_slot; false: no queue (no limit). */
	bool (*wait)(void *owner);
	/* Give back pick's slot and reference. */
	void (*release)(void *owner, void *be);
	void (*ref)(void *be);
	void (*unref)(void *be);
	const struct sockaddr *(*addr)(void *be, socklen_t *len);
	/* A connect to be was refused, reset or timed out (errno code). */
	void (*failed)(void *owner, void *be, int code);
	void (*connected)(void *owner, void *be);
	/* Bytes of client requests (in) and answers (out) relayed. */
	void (*bytes)(void *owner, void *be, uint64_t in, uint64_t out);
	/* The client connection is over: the owner frees its side, then calls
	 * proxy_http_conn_free. */
	void (*done)(void *owner);
};

struct proxy_http_config {
	int64_t idle_ms;       /* keep-alive wait for a request, and for an answer */
	int64_t connect_ms;    /* backend connect */
	int64_t first_byte_ms; /* a new connection's first request head */
	int protocol;          /* enum proxy_protocol: a PROXY header on each backend connection */
};

struct proxy_http_conn;

/* Serve client fd (takes it) on base. The config and ops outlive the connection. */
struct proxy_http_conn *proxy_http_conn_new(struct event_base *base, int fd,
                                            const struct proxy_http_config *cfg,
                                            const struct proxy_http_ops *ops, void *owner);

/*
 * The slot a queued request waited for: be with a slot and one reference (taken), or NULL
 * when none came in time (the client gets a 503). May end the connection (ops->done).
 */
void proxy_http_conn_slot(struct proxy_http_conn *c, void *be);

/* Close the client and its backend connections. NULL is a no-op. */
void proxy_http_conn_free(struct proxy_http_conn *c);

#endif
