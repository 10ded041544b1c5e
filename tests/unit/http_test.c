/* Unit tests for common/prom (the exposition format) and scheduler/http (the status page's
 * port: who may read it, what it answers). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <sodium.h>

#include "fixture.h"
#include "err.h"
#include "scheduler/events.h"
#include "log.h"
#include "prom.h"
#include "rpc.h"
#include "scheduler/http.h"
#include "scheduler/identity.h"
#include "scheduler/server.h"
#include "token.h"
#include "util.h"

static char *
drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = xmalloc(n + 1);

	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

/* Label values are escaped; a histogram's buckets are cumulative and end in +Inf = count. */
static void
test_prom_format(void **state)
{
	static const double bounds[] = {0.1, 1};
	struct evbuffer *b = evbuffer_new();
	struct prom_hist h;
	const char *l[] = {"service", "a\"b\\c\nd", NULL};
	char *s;

	(void)state;
	prom_family(b, "x_total", "counter", "Things.");
	prom_sample_u64(b, "x_total", l, 18446744073709551615ULL);
	prom_sample(b, "y", NULL, 0.5);
	s = drain(b);
	assert_string_equal(s, "# HELP x_total Things.\n# TYPE x_total counter\n"
	                       "x_total{service=\"a\\\"b\\\\c\\nd\"} 18446744073709551615\n"
	                       "y 0.5\n");
	free(s);
	prom_hist_init(&h, bounds, 2);
	prom_hist_observe(&h, 0.05);
	prom_hist_observe(&h, 0.1); /* on a bound: le is "less or equal" */
	prom_hist_observe(&h, 0.5);
	prom_hist_observe(&h, 7);
	prom_hist_write(b, "d_seconds", NULL, &h);
	s = drain(b);
	assert_string_equal(s, "d_seconds_bucket{le=\"0.1\"} 2\n"
	                       "d_seconds_bucket{le=\"1\"} 3\n"
	                       "d_seconds_bucket{le=\"+Inf\"} 4\n"
	                       "d_seconds_sum 7.6500000000000004\n"
	                       "d_seconds_count 4\n");
	free(s);
	evbuffer_free(b);
}

struct fixture {
	char dir[64];
	struct sched_server srv;
	char admin[TOKEN_STRLEN], worker[TOKEN_STRLEN], read[TOKEN_STRLEN];
};

static void
fixture_up(struct fixture *f, const char *http_host)
{
	char listen[32], http[48];
	struct sched_options so = {0};
	struct rpc_identity id;
	struct shoal_err err;
	struct token rd;
	bool made;

	snprintf(f->dir, sizeof(f->dir), "/tmp/shoal-http-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(identity_init(f->dir, false, &id, &err), 0);
	token_format(&id.admin, f->admin, sizeof(f->admin));
	token_format(&id.worker, f->worker, sizeof(f->worker));
	assert_int_equal(identity_read_token(f->dir, id.sign_pk, &rd, &made, &err), 0);
	assert_true(made);
	token_format(&rd, f->read, sizeof(f->read));
	identity_wipe(&id);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", fixture_free_port());
	snprintf(http, sizeof(http), "%s:%u", http_host, fixture_free_port());
	so.data_dir = f->dir;
	so.listen = listen;
	so.http = http;
	if (sched_server_init(&f->srv, &so, &err) == -1)
		fail_msg("sched_server_init: %s", err.msg);
}

static void
fixture_down(struct fixture *f)
{
	char cmd[128];

	sched_server_free(&f->srv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
}

/* Send req to the scheduler's HTTP port while running its loop; the whole response. */
static char *
http_call(struct sched_server *srv, const char *req)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(http_port(srv)),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int64_t deadline = util_now_ms() + 3000;
	struct evbuffer *got = evbuffer_new();
	char buf[4096];

	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	while (util_now_ms() < deadline) {
		ssize_t n;

		event_base_loop(srv->base, EVLOOP_NONBLOCK);
		n = read(fd, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n > 0)
			evbuffer_add(got, buf, (size_t)n);
		else
			usleep(1000);
	}
	close(fd);
	{
		char *s = drain(got);
		evbuffer_free(got);
		return s;
	}
}

static char *
get(struct sched_server *srv, const char *path, const char *host, const char *extra)
{
	char req[1024];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n",
	         path, host, extra ? extra : "");
	return http_call(srv, req);
}

#define assert_prefix(s, p) assert_true(strncmp((s), (p), strlen(p)) == 0)

/* On loopback: no token, but only for a Host that names loopback (DNS rebinding). */
static void
test_loopback(void **state)
{
	struct fixture f;
	char *r;

	(void)state;
	fixture_up(&f, "127.0.0.1");
	r = get(&f.srv, "/metrics", "127.0.0.1:7180", NULL);
	assert_prefix(r, "HTTP/1.1 200");
	assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	assert_non_null(strstr(r, "# TYPE shoal_nodes gauge\n"));
	assert_non_null(strstr(r, "shoal_reconcile_pass_duration_seconds_bucket{le=\"+Inf\"}"));
	free(r);
	r = get(&f.srv, "/api/state", "localhost:7180", NULL);
	assert_prefix(r, "HTTP/1.1 200");
	assert_non_null(strstr(r, "\"nodes\":[]"));
	free(r);
	r = get(&f.srv, "/", "127.0.0.1", NULL);
	assert_prefix(r, "HTTP/1.1 200");
	assert_non_null(strstr(r, "<title>Shoal cluster</title>"));
	assert_non_null(strstr(r, "Content-Security-Policy: default-src 'none'"));
	free(r);
	r = get(&f.srv, "/", "attacker.example", NULL);
	assert_prefix(r, "HTTP/1.1 403");
	free(r);
	r = get(&f.srv, "/", "127.0.0.1.attacker.example", NULL);
	assert_prefix(r, "HTTP/1.1 403");
	free(r);
	r = get(&f.srv, "/nosuch", "127.0.0.1", NULL);
	assert_prefix(r, "HTTP/1.1 404");
	free(r);
	r = http_call(&f.srv, "POST /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
	                      "0\r\nConnection: close\r\n\r\n");
	assert_true(strncmp(r, "HTTP/1.1 200", 12) != 0);
	free(r);
	fixture_down(&f);
}

/* Elsewhere: the admin or the read token, as Bearer or as a Basic password; nothing else. */
static void
test_token_required(void **state)
{
	struct fixture f;
	char hdr[512], b64[400], up[TOKEN_STRLEN + 8];
	char *r;

	(void)state;
	/* Any address but loopback asks for a token; 0.0.0.0 is one. */
	fixture_up(&f, "0.0.0.0");
	r = get(&f.srv, "/metrics", "127.0.0.1", NULL);
	assert_prefix(r, "HTTP/1.1 401");
	assert_non_null(strstr(r, "WWW-Authenticate: Bearer"));
	free(r);
	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", f.read);
	r = get(&f.srv, "/metrics", "example", hdr);
	assert_prefix(r, "HTTP/1.1 200");
	free(r);
	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", f.worker);
	r = get(&f.srv, "/api/state", "example", hdr);
	assert_prefix(r, "HTTP/1.1 401");
	free(r);

	snprintf(hdr, sizeof(hdr), "Bearer %s", f.admin);
	assert_true(http_authorized(&f.srv, hdr));
	snprintf(hdr, sizeof(hdr), "bearer %s", f.read);
	assert_true(http_authorized(&f.srv, hdr));
	snprintf(hdr, sizeof(hdr), "Bearer %s", f.worker);
	assert_false(http_authorized(&f.srv, hdr));
	/* One digit off. */
	snprintf(hdr, sizeof(hdr), "Bearer %s", f.read);
	hdr[strlen(hdr) - 1] = hdr[strlen(hdr) - 1] == '0' ? '1' : '0';
	assert_false(http_authorized(&f.srv, hdr));
	assert_false(http_authorized(&f.srv, NULL));
	assert_false(http_authorized(&f.srv, ""));
	assert_false(http_authorized(&f.srv, "Bearer "));
	assert_false(http_authorized(&f.srv, "Bearer SHOAL1-read-xx-yy"));
	assert_false(http_authorized(&f.srv, "Basic !!!"));
	snprintf(up, sizeof(up), "me:%s", f.read);
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)up, strlen(up),
	                  sodium_base64_VARIANT_ORIGINAL);
	snprintf(hdr, sizeof(hdr), "Basic %s", b64);
	assert_true(http_authorized(&f.srv, hdr));
	/* No colon: no password. */
	sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)f.read, strlen(f.read),
	                  sodium_base64_VARIANT_ORIGINAL);
	snprintf(hdr, sizeof(hdr), "Basic %s", b64);
	assert_false(http_authorized(&f.srv, hdr));
	fixture_down(&f);
}

/* /api/events reads on from since=SEQ; a seq from before a restart reads from the start. */
static void
test_events(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct fixture f;
	char *s;

	(void)state;
	fixture_up(&f, "127.0.0.1");
	events_emit(&f.srv.events, EVENTS_NODE, "ready", NULL, "node1", NULL, NULL, 0, 0, NULL);
	events_emit(&f.srv.events, EVENTS_UPDATE, "started", "web", NULL, NULL, NULL, 0, 2,
	            "updating 0/%d", 3);
	http_events(&f.srv, "since=1", b);
	s = drain(b);
	assert_non_null(strstr(s, "\"action\":\"started\""));
	assert_non_null(strstr(s, "\"message\":\"updating 0/3\""));
	assert_null(strstr(s, "\"action\":\"ready\""));
	assert_non_null(strstr(s, "\"next\":2,"));
	free(s);
	http_events(&f.srv, "since=2", b);
	s = drain(b);
	assert_prefix(s, "{\"events\":[],\"next\":2,");
	free(s);
	/* Past the end (the scheduler restarted under the page), garbage, or none: from 0. */
	for (int i = 0; i < 3; i++) {
		http_events(&f.srv, i == 0 ? "since=99" : i == 1 ? "since=x" : NULL, b);
		s = drain(b);
		assert_non_null(strstr(s, "\"action\":\"ready\""));
		assert_non_null(strstr(s, "\"next\":2,"));
		free(s);
	}
	evbuffer_free(b);
	fixture_down(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prom_format),
	    cmocka_unit_test(test_loopback),
	    cmocka_unit_test(test_token_required),
	    cmocka_unit_test(test_events),
	};

	if (sodium_init() < 0)
		return 1;
	log_init("sched", LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
