/*
 * Unit tests for agent/ingress and agent/ingress_host: the frame codec over a bufferevent
 * pair, the bind retry back-off, the proxy's report of a port it cannot listen on (and its
 * retry binding once free), and the listener hand-over an upgrade relies on: a proxy that
 * adopted another's listening socket serves that port while the other still holds it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "err.h"
#include "log.h"
#include "agent/ingress.h"
#include "fixture.h"
#include "agent/ingress_host.h"
#include "agent/proxy.h"
#include "shoal.pb-c.h"

static void
test_backoff(void **state)
{
	(void)state;
	assert_int_equal(ingress_bind_backoff_ms(0), 500);
	assert_int_equal(ingress_bind_backoff_ms(1), 1000);
	assert_int_equal(ingress_bind_backoff_ms(2), 2000);
	assert_int_equal(ingress_bind_backoff_ms(3), 4000);
	assert_int_equal(ingress_bind_backoff_ms(4), 5000);
	assert_int_equal(ingress_bind_backoff_ms(40), 5000);
}

static void
test_frames(void **state)
{
	struct event_base *base = event_base_new();
	struct bufferevent *pair[2];
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT, *got = NULL;
	Shoal__IngressReport r = SHOAL__INGRESS_REPORT__INIT;
	Shoal__PortStatus ps = SHOAL__PORT_STATUS__INIT, *pp = &ps;
	struct evbuffer *in;
	uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};

	(void)state;
	bufferevent_pair_new(base, 0, pair);
	bufferevent_enable(pair[1], EV_READ);
	ps.service = "web";
	ps.port = 9300;
	ps.code = EADDRINUSE;
	ps.error = "Address already in use";
	r.endpoints_generation = 7;
	r.ports = &pp;
	r.n_ports = 1;
	f.body_case = SHOAL__INGRESS_FRAME__BODY_REPORT;
	f.report = &r;
	ingress_frame_send(pair[0], &f);
	event_base_loop(base, EVLOOP_NONBLOCK);
	in = bufferevent_get_input(pair[1]);
	/* One whole frame, then nothing more. */
	assert_true(evbuffer_get_length(in) > 4);
	assert_int_equal(ingress_frame_take(pair[1], &got), 1);
	assert_int_equal(got->body_case, SHOAL__INGRESS_FRAME__BODY_REPORT);
	assert_int_equal(got->report->endpoints_generation, 7);
	assert_int_equal(got->report->ports[0]->port, 9300);
	assert_string_equal(got->report->ports[0]->error, "Address already in use");
	shoal__ingress_frame__free_unpacked(got, NULL);
	assert_int_equal(ingress_frame_take(pair[1], &got), 0);
	/* A length over the cap is refused, not allocated. */
	bufferevent_write(pair[0], junk, sizeof(junk));
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(ingress_frame_take(pair[1], &got), -1);
	bufferevent_free(pair[0]);
	bufferevent_free(pair[1]);
	event_base_free(base);
}

/* A listening socket on 127.0.0.1 (port 0: any); its port in *port. */
static int
squat(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(*port)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Service web on 127.0.0.1 (the port is the test's) with the one backend be. */
#define WEB_BACKEND                                                                                \
	{                                                                                          \
		.id = "t1", .ip = "127.0.0.1", .port = 9                                           \
	}

static struct proxy_service_spec
web_service(struct proxy_backend_spec *be)
{
	return (struct proxy_service_spec){
	    .name = "web", .listen_addr = "127.0.0.1", .backends = be, .nbackends = 1};
}

static void
test_bind_error_reported_then_retried(void **state)
{
	struct proxy_options po = {.threads = 1};
	struct proxy_backend_spec be = WEB_BACKEND;
	struct proxy_service_spec svc = web_service(&be);
	const struct proxy_bind_error *errs;
	struct shoal_err err;
	struct proxy *p;
	int fd;

	(void)state;
	fd = squat(&svc.port);
	p = proxy_create(&po, &err);
	assert_non_null(p);
	assert_int_equal(proxy_set_services(p, &svc, 1, &err), -1);
	assert_int_equal(proxy_bind_errors(p, &errs), 1);
	assert_string_equal(errs[0].service, "web");
	assert_int_equal(errs[0].port, svc.port);
	assert_int_equal(errs[0].code, EADDRINUSE);
	assert_int_equal(proxy_listen_port(p, "web"), 0);
	/* The squatter leaves: the same set again binds. */
	close(fd);
	assert_int_equal(proxy_set_services(p, &svc, 1, &err), 0);
	assert_int_equal(proxy_bind_errors(p, &errs), 0);
	assert_int_equal(proxy_listen_port(p, "web"), svc.port);
	proxy_destroy(p);
}

static void
test_listener_handover(void **state)
{
	struct proxy_options po = {.threads = 1};
	struct proxy_backend_spec be = WEB_BACKEND;
	struct proxy_service_spec svc = web_service(&be);
	const struct proxy_bind_error *errs;
	struct shoal_err err;
	struct proxy *a, *b;
	int fds[4], fd;
	uint16_t port = 0;

	(void)state;
	fd = squat(&port); /* find a free port, then let it go */
	close(fd);
	svc.port = port;
	a = proxy_create(&po, &err);
	b = proxy_create(&po, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(proxy_set_services(a, &svc, 1, &err), 0);
	/* Without the socket, b cannot have the port while a listens on it. */
	assert_int_equal(proxy_set_services(b, &svc, 1, &err), -1);
	assert_int_equal(proxy_bind_errors(b, &errs), 1);
	assert_int_equal(proxy_listener_fds(a, fds, 4), 1);
	proxy_adopt_listener(b, fcntl(fds[0], F_DUPFD_CLOEXEC, 0));
	assert_int_equal(proxy_set_services(b, &svc, 1, &err), 0);
	assert_int_equal(proxy_listen_port(b, "web"), port);
	/* a retires: b keeps the socket open. */
	assert_int_equal(proxy_set_services(a, NULL, 0, &err), 0);
	proxy_destroy(a);
	{
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(c);
	}
	assert_int_equal(proxy_drop_adopted(b), 0);
	proxy_destroy(b);
}

static void
test_specs_from_endpoints(void **state)
{
	Shoal__Endpoints ep = SHOAL__ENDPOINTS__INIT;
	Shoal__ServiceEndpoints se = SHOAL__SERVICE_ENDPOINTS__INIT, *sep = &se;
	Shoal__Backend b1 = SHOAL__BACKEND__INIT, b2 = SHOAL__BACKEND__INIT;
	Shoal__Backend *bs[] = {&b1, &b2};
	struct ingress_specs sp;

	(void)state;
	b1.ip = "10.244.1.2";
	b1.port = 8080;
	b1.task_id = "t1";
	b2.ip = "127.0.0.1"; /* never dialled from the node */
	b2.port = 8080;
	b2.task_id = "t2";
	se.name = "web";
	se.published_port = 9300;
	se.backends = bs;
	se.n_backends = 2;
	se.max_conns_per_replica = 4;
	ep.services = &sep;
	ep.n_services = 1;
	ingress_specs_build(&ep, "192.168.56.11", &sp);
	assert_int_equal(sp.n, 1);
	assert_string_equal(sp.svcs[0].name, "web");
	assert_string_equal(sp.svcs[0].listen_addr, "192.168.56.11");
	assert_int_equal(sp.svcs[0].port, 9300);
	assert_int_equal(sp.svcs[0].nbackends, 1);
	assert_string_equal(sp.svcs[0].backends[0].id, "t1");
	assert_int_equal(sp.svcs[0].max_conns_per_backend, 4);
	ingress_specs_free(&sp);
}

/* A fake ingress: says hello, answers the first report request with a service whose queue
 * holds 8 clients and 3 open connections, then its connection drops (a crash). */
struct fake_ingress {
	int lfd;
	bool mute; /* after the report: reads on, answers nothing more, until the agent leaves */
	/* The agent's side (fake_ingress_up): its ingress, connected to this one. */
	char dir[40];
	char *path;
	pthread_t th;
	struct event_base *base;
	struct ingress g;
	int reports;
};

static void *
fake_ingress_main(void *arg)
{
	struct fake_ingress *fi = arg;
	Shoal__IngressFrame f = SHOAL__INGRESS_FRAME__INIT, *req;
	Shoal__IngressHello hello = SHOAL__INGRESS_HELLO__INIT;
	Shoal__IngressReport r = SHOAL__INGRESS_REPORT__INIT;
	Shoal__ServiceStats row = SHOAL__SERVICE_STATS__INIT, *rows[1] = {&row};
	struct shoal_err err;
	int fd = accept(fi->lfd, NULL, NULL);

	if (fd == -1)
		return NULL;
	hello.version = (char *)ingress_version();
	hello.pid = 4242;
	f.body_case = SHOAL__INGRESS_FRAME__BODY_HELLO;
	f.hello = &hello;
	ingress_frame_write_fd(fd, &f, &err);
	while ((req = ingress_frame_read_fd(fd, &err)) != NULL) {
		bool asked = req->body_case == SHOAL__INGRESS_FRAME__BODY_REPORT_REQUEST;

		shoal__ingress_frame__free_unpacked(req, NULL);
		if (asked)
			break;
	}
	row.service = "web";
	row.backend = "";
	row.task_id = "";
	row.connections = 20;
	row.active = 3;
	row.queue_len = 8;
	row.queue_max_wait_ms = 700;
	row.queued = 12;
	r.stats = rows;
	r.n_stats = 1;
	f.body_case = SHOAL__INGRESS_FRAME__BODY_REPORT;
	f.report = &r;
	ingress_frame_write_fd(fd, &f, &err);
	while (fi->mute && (req = ingress_frame_read_fd(fd, &err)) != NULL)
		shoal__ingress_frame__free_unpacked(req, NULL);
	usleep(50 * 1000);
	close(fd);
	return NULL;
}

static void
count_report(const Shoal__IngressReport *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
}

/* Listen as an ingress in a fresh dir, on a thread (fake_ingress_main), and connect an agent's
 * ingress to it on a loop of its own: back once its first report came. */
static void
fake_ingress_up(struct fake_ingress *fi)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	static const struct ingress_ops ops = {.on_report = count_report};
	struct ingress_spawn_opts so = {0};
	struct shoal_err err;

	assert_int_equal(fixture_tmpdir(fi->dir, sizeof(fi->dir), "ingress"), 0);
	fi->path = ingress_socket_path(fi->dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fi->path);
	fi->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fi->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fi->lfd, 4), 0);
	pthread_create(&fi->th, NULL, fake_ingress_main, fi);
	fi->base = event_base_new();
	assert_int_equal(ingress_init(&fi->g, fi->base, fi->dir, &so, &ops, &fi->reports, &err), 0);
	for (int i = 0; i < 200 && fi->reports == 0; i++)
		event_base_loop(fi->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(5000);
	assert_int_equal(fi->reports, 1);
}

/* What fake_ingress_up made, once the ingress is freed and the thread joined. */
static void
fake_ingress_remove(struct fake_ingress *fi)
{
	event_base_free(fi->base);
	unlink(fi->path);
	free(fi->path);
	rmdir(fi->dir);
}

/*
 * The agent keeps the last report after its ingress connection drops (heartbeats send it
 * until a new one comes), but not its gauges: a queue length frozen at 8 read as clients
 * waiting long after the ingress that had them was gone. Counters stay.
 */
static void
test_report_gauges_dropped_with_the_connection(void **state)
{
	struct fake_ingress fi = {0};
	struct ingress *g = &fi.g;

	(void)state;
	fake_ingress_up(&fi);
	assert_int_equal(ingress_report(g)->stats[0]->queue_len, 8);
	/* The fake closes: the loss is seen before the reconnect (100 ms later) is tried. */
	close(fi.lfd);
	pthread_join(fi.th, NULL);
	for (int i = 0; i < 100 && g->bev; i++)
		event_base_loop(fi.base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
	assert_null(g->bev);
	assert_non_null(ingress_report(g));
	assert_int_equal(ingress_report(g)->stats[0]->queue_len, 0);
	assert_int_equal(ingress_report(g)->stats[0]->active, 0);
	assert_int_equal(ingress_report(g)->stats[0]->queue_max_wait_ms, 0);
	assert_int_equal(ingress_report(g)->stats[0]->queued, 12);
	assert_int_equal(ingress_report(g)->stats[0]->connections, 20);
	ingress_free(g);
	fake_ingress_remove(&fi);
}

/* An ingress that is connected but stops answering report requests: after 3 s unanswered
 * the last report's gauges read 0 too, and the caller is told to go on without one. */
static void
test_report_gauges_dropped_when_unanswered(void **state)
{
	struct fake_ingress fi = {.mute = true};
	struct ingress *g = &fi.g;

	(void)state;
	fake_ingress_up(&fi);
	assert_true(ingress_request_report(g)); /* never answered */
	assert_false(ingress_request_report(g));
	assert_int_equal(ingress_report(g)->stats[0]->queue_len, 8); /* a moment: still now */
	g->report_asked_ms -= 3500;                                  /* 3.5 s later */
	assert_false(ingress_request_report(g));
	assert_non_null(g->bev);
	assert_int_equal(ingress_report(g)->stats[0]->queue_len, 0);
	assert_int_equal(ingress_report(g)->stats[0]->active, 0);
	assert_int_equal(ingress_report(g)->stats[0]->queued, 12);
	ingress_free(g);
	event_base_loop(fi.base,
	                EVLOOP_NONBLOCK); /* libevent closes a freed bufferevent's fd here */
	pthread_join(fi.th, NULL);
	close(fi.lfd);
	fake_ingress_remove(&fi);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_frames),
	    cmocka_unit_test(test_bind_error_reported_then_retried),
	    cmocka_unit_test(test_listener_handover),
	    cmocka_unit_test(test_specs_from_endpoints),
	    cmocka_unit_test(test_report_gauges_dropped_with_the_connection),
	    cmocka_unit_test(test_report_gauges_dropped_when_unanswered),
	};

	log_init("test", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
