#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/http.h>

#include "err.h"
#include "util.h"

int
httpd_parse(const char *spec, struct httpd_addr *out, struct shoal_err *err)
{
	struct in_addr in;

	memset(out, 0, sizeof(*out));
	if (util_parse_hostport(spec, out->host, sizeof(out->host), &out->port, err) == -1)
		return err_prefix(err, "--http");
	if (out->host[0] == '\0' || strcmp(out->host, "*") == 0)
		snprintf(out->host, sizeof(out->host), "0.0.0.0");
	if (inet_pton(AF_INET, out->host, &in) != 1)
		return err_set(err, 0, "--http %s: host must be an IPv4 address", spec);
	out->loopback = (ntohl(in.s_addr) >> 24) == 127;
	return 0;
}

struct evhttp *
httpd_new(struct event_base *base, void (*cb)(struct evhttp_request *, void *), void *arg,
          struct shoal_err *err)
{
	struct evhttp *http = evhttp_new(base);

	if (http == NULL) {
		err_set(err, 0, "--http: cannot create the HTTP server");
		return NULL;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(http, 16384);
	evhttp_set_max_body_size(http, 4096);
	/* An idle connection holds an fd the daemon's RPC side may need: evhttp 2.1 has no
	 * connection cap, so idle ones go soon. */
	evhttp_set_timeout(http, 10);
	evhttp_set_gencb(http, cb, arg);
	return http;
}

int
httpd_bind(struct evhttp *http, const struct httpd_addr *a, const char *spec, uint16_t *port,
           struct shoal_err *err)
{
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(http, a->host, a->port);
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (bound == NULL)
		return err_set(err, errno, "--http: listen on %s", spec);
	*port = a->port;
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &len) == 0)
		*port = ntohs(sin.sin_port);
	return 0;
}
