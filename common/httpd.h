#ifndef SHOAL_COMMON_HTTPD_H
#define SHOAL_COMMON_HTTPD_H

/*
 * The --http ADDR:PORT server both daemons run (the agent's /metrics, the scheduler's status
 * page and /metrics): one parser of the address and one evhttp set-up, so the two cannot
 * drift in what they accept or in their limits.
 */

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_request;
struct shoal_err;

struct httpd_addr {
	char host[64]; /* an IPv4 address; "" and "*" are given as 0.0.0.0 */
	uint16_t port; /* 0: any */
	bool loopback; /* host is in 127.0.0.0/8 */
};

/* Parse spec ("ADDR:PORT", ":PORT", "*:PORT") into *out; errors name --http and spec. */
int httpd_parse(const char *spec, struct httpd_addr *out, struct shoal_err *err);

/*
 * A server on base for GET and HEAD only, with small header and body limits and a short idle
 * timeout, handing every request to cb(req, arg). Free with evhttp_free. NULL on failure.
 */
struct evhttp *httpd_new(struct event_base *base, void (*cb)(struct evhttp_request *, void *),
                         void *arg, struct shoal_err *err);

/* Listen on a; *port is the port bound. Errors carry errno and name spec:
 * "--http: listen on SPEC: ...". */
int httpd_bind(struct evhttp *http, const struct httpd_addr *a, const char *spec, uint16_t *port,
               struct shoal_err *err);

#endif
