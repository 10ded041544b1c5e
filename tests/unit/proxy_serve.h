#ifndef SHOAL_TESTS_UNIT_PROXY_SERVE_H
#define SHOAL_TESTS_UNIT_PROXY_SERVE_H

/*
 * For the proxy's unit tests (proxy_test.c, proxy_http_test.c), after cmocka.h: make p serve
 * the one service "web" on 127.0.0.1, any free port, over loopback backends on ports[0..n)
 * (ids "b0", "b1", ...; at most 8), with the rest of its settings (limit, queue timeout,
 * mode, PROXY protocol) from opts. Its listen port; the test fails when it cannot serve.
 */

#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "agent/proxy.h"

static inline uint16_t
proxy_serve_web(struct proxy *p, const struct proxy_service_spec *opts, const uint16_t *ports,
                size_t n)
{
	struct proxy_backend_spec be[8];
	char ids[8][24];
	struct proxy_service_spec svc = *opts;
	struct shoal_err err;
	uint16_t port;

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		snprintf(ids[i], sizeof(ids[i]), "b%zu", i);
		be[i] = (struct proxy_backend_spec){ids[i], "127.0.0.1", ports[i]};
	}
	svc.name = "web";
	svc.listen_addr = "127.0.0.1";
	svc.port = 0;
	svc.backends = be;
	svc.nbackends = n;
	assert_int_equal(proxy_set_services(p, &svc, 1, &err), 0);
	port = proxy_listen_port(p, "web");
	assert_true(port > 0);
	return port;
}

#endif
