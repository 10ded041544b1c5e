/*
 * Unit tests for agent/dns: the resolver's upstream list, and its UDP path on loopback: a
 * service name answered, a foreign name forwarded to an upstream (ids translated both ways),
 * SERVFAIL at once without an upstream.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "agent/dns.h"
#include "err.h"
#include "shoal.pb-c.h"
#include "dns_query.h"

static void
test_upstreams(void **state)
{
	struct sockaddr_in out[3];
	struct in_addr self;

	(void)state;
	inet_pton(AF_INET, "10.244.1.1", &self);
	assert_int_equal(
	    dns_parse_upstreams("# x\nnameserver 10.244.1.1\nnameserver 192.168.1.1\n"
	                        "nameserver ::1\n  nameserver 127.0.0.53\nsearch a\n"
	                        "nameserver 0.0.0.0\nnameserver 1.1.1.1\nnameserver 8.8.8.8",
	                        self, out, 3),
	    3);
	assert_int_equal(ntohl(out[0].sin_addr.s_addr), 0xc0a80101);
	assert_int_equal(ntohl(out[1].sin_addr.s_addr), 0x7f000035);
	assert_int_equal(ntohs(out[0].sin_port), 53);
	assert_int_equal(dns_parse_upstreams(NULL, self, out, 3), 0);
}

/* Run the loop until fd is readable (at most ~3 s), then read one datagram. */
static ssize_t
await(struct event_base *base, int fd, uint8_t *buf, size_t len, struct sockaddr_in *from)
{
	for (int i = 0; i < 300; i++) {
		struct pollfd p = {fd, POLLIN, 0};
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (poll(&p, 1, 10) == 1) {
			socklen_t fl = sizeof(*from);
			return recvfrom(fd, buf, len, 0, (struct sockaddr *)from, &fl);
		}
	}
	return -1;
}

static int
udp_socket(struct sockaddr_in *bound)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	socklen_t l = sizeof(*bound);

	memset(bound, 0, sizeof(*bound));
	bound->sin_family = AF_INET;
	bound->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)bound, sizeof(*bound)), 0);
	getsockname(fd, (struct sockaddr *)bound, &l);
	return fd;
}

static void
test_answer_and_forward(void **state)
{
	struct event_base *base = event_base_new();
	struct dns_server d;
	struct shoal_err err;
	struct sockaddr_in srv, cl, up, from;
	socklen_t l = sizeof(srv);
	uint8_t q[300], r[600];
	size_t ql;
	ssize_t n;
	char conf[] = "/tmp/dns_test_resolv.XXXXXX";
	int cfd = mkstemp(conf);

	(void)state;
	assert_true(cfd >= 0);
	assert_int_equal(write(cfd, "nameserver 127.0.0.1\n", 21), 21);
	close(cfd);
	dns_init(&d, base);
	assert_int_equal(dns_listen(&d, "127.0.0.1", 0, conf, &err), 0);
	unlink(conf);
	getsockname(d.udp_fd, (struct sockaddr *)&srv, &l);

	/* Endpoints with one published service. */
	Shoal__ServiceName sn = SHOAL__SERVICE_NAME__INIT, *snp = &sn;
	Shoal__Endpoints ep = SHOAL__ENDPOINTS__INIT;
	sn.name = "Web";
	sn.published = 1;
	ep.names = &snp;
	ep.n_names = 1;
	dns_update(&d, &ep, "192.168.56.11");

	int c = udp_socket(&cl);
	int u = udp_socket(&up);
	/* Our own address is never an upstream (a loop): the fake one is set by hand. */
	assert_int_equal(d.nupstream, 0);
	d.upstream[0] = up;
	d.nupstream = 1;

	ql = dns_query_build(q, "web", 0x1111);
	sendto(c, q, ql, 0, (struct sockaddr *)&srv, sizeof(srv));
	n = await(base, c, r, sizeof(r), &from);
	assert_int_equal(n, (ssize_t)ql + 16);
	assert_memory_equal(r, "\x11\x11", 2);
	assert_memory_equal(r + n - 4, "\xc0\xa8\x38\x0b", 4);

	/* Forwarded: the upstream sees another id, the client gets its own back. */
	ql = dns_query_build(q, "example.com", 0x2222);
	sendto(c, q, ql, 0, (struct sockaddr *)&srv, sizeof(srv));
	n = await(base, u, r, sizeof(r), &from);
	assert_int_equal(n, (ssize_t)ql);
	assert_memory_equal(r + 12, q + 12, ql - 12);
	r[2] |= 0x80; /* the upstream's answer: the query, as a reply */
	sendto(u, r, (size_t)n, 0, (struct sockaddr *)&from, sizeof(from));
	n = await(base, c, r, sizeof(r), &from);
	assert_int_equal(n, (ssize_t)ql);
	assert_memory_equal(r, "\x22\x22", 2);
	assert_true(r[2] & 0x80);

	/* No upstream: SERVFAIL at once. */
	d.nupstream = 0;
	ql = dns_query_build(q, "example.org", 0x3333);
	sendto(c, q, ql, 0, (struct sockaddr *)&srv, sizeof(srv));
	n = await(base, c, r, sizeof(r), &from);
	assert_int_equal(n, (ssize_t)ql);
	assert_memory_equal(r, "\x33\x33", 2);
	assert_int_equal(r[3] & 15, 2);

	close(c);
	close(u);
	dns_free(&d);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_upstreams),
	    cmocka_unit_test(test_answer_and_forward),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
