/*
 * Unit tests for agent/proxy and agent/lb_rr. The round-robin cursor is tested alone; the
 * proxy over real sockets on 127.0.0.1 with ephemeral ports and small backend servers in
 * threads: rotation, retry and bench, half-close, backpressure, limits, table swaps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/event.h>

#include "fixture.h"
#include "err.h"
#include "agent/lb_rr.h"
#include "log.h"
#include "agent/proxy.h"
#include "proxy_serve.h"
#include "util.h"

/* ---- lb_rr -------------------------------------------------------------------------- */

static bool
usable_mask(void *ctx, size_t i)
{
	return (*(unsigned *)ctx & (1u << i)) == 0;
}

static void
test_lb_rr_rotation(void **state)
{
	void *rr = lb_rr_ops.init();
	unsigned benched = 0;

	(void)state;
	for (int i = 0; i < 30; i++)
		assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), i % 3);
	assert_int_equal(lb_rr_ops.next(rr, 0, usable_mask, &benched), -1);
	lb_rr_ops.free(rr);
}

static void
test_lb_rr_skip(void **state)
{
	void *rr = lb_rr_ops.init();
	unsigned benched = 1u << 1;

	(void)state;
	/* 1 benched: 0, 2, 0, 2 (2 does not get two turns in a row when 1's turn comes) */
	for (int i = 0; i < 6; i++)
		assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), i % 2 ? 2 : 0);
	/* The cursor wraps: with only the last one usable it is picked every time. */
	benched = 1u << 0 | 1u << 1;
	for (int i = 0; i < 4; i++)
		assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), 2);
	benched = 7;
	assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), -1);
	/* Back from the bench: rotation resumes after the last pick. */
	benched = 0;
	assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), 0);
	assert_int_equal(lb_rr_ops.next(rr, 3, usable_mask, &benched), 1);
	lb_rr_ops.free(rr);
}

struct rr_thread {
	void *rr;
	int counts[3];
};

static void *
rr_thread_main(void *arg)
{
	struct rr_thread *t = arg;
	unsigned benched = 0;

	for (int i = 0; i < 30000; i++)
		t->counts[lb_rr_ops.next(t->rr, 3, usable_mask, &benched)]++;
	return NULL;
}

/* The cursor is shared: picks from two threads at once still split exactly evenly. */
static void
test_lb_rr_threads(void **state)
{
	struct rr_thread t[2] = {{.rr = lb_rr_ops.init()}};
	pthread_t th[2];

	(void)state;
	t[1].rr = t[0].rr;
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, rr_thread_main, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int b = 0; b < 3; b++)
		assert_int_equal(t[0].counts[b] + t[1].counts[b], 20000);
	lb_rr_ops.free(t[0].rr);
}

/* ---- backends ----------------------------------------------------------------------- */

enum tb_mode {
	TB_ID,    /* write the id, close */
	TB_ECHO,  /* echo until EOF, then write "bye" and close */
	TB_FLOOD, /* write flood_bytes, close */
	TB_RESET, /* read the request, write the id, reset (its reset comes with the id) */
};

struct tb {
	int fd;
	uint16_t port;
	enum tb_mode mode;
	char id[8];
	size_t flood_bytes;
	pthread_t thread;
	atomic_bool stop;
	atomic_int accepted;
	atomic_int live;
	atomic_size_t written;
	int accept_delay_ms; /* sleep after each accept: a backend that accepts slowly */
};

struct tb_conn {
	struct tb *b;
	int fd;
};

static void *
tb_conn_main(void *arg)
{
	struct tb_conn *tc = arg;
	struct tb *b = tc->b;
	char buf[65536];
	ssize_t n;

	switch (b->mode) {
	case TB_ID:
		n = write(tc->fd, b->id, strlen(b->id));
		break;
	case TB_ECHO:
		while ((n = read(tc->fd, buf, sizeof(buf))) > 0)
			if (write(tc->fd, buf, (size_t)n) != n)
				break;
		n = write(tc->fd, "bye", 3);
		break;
	case TB_FLOOD:
		memset(buf, 'x', sizeof(buf));
		for (size_t left = b->flood_bytes; left > 0;) {
			n = write(tc->fd, buf, left < sizeof(buf) ? left : sizeof(buf));
			if (n <= 0)
				break;
			left -= (size_t)n;
			atomic_fetch_add(&b->written, (size_t)n);
		}
		break;
	case TB_RESET: {
		struct linger lg = {1, 0};

		n = read(tc->fd, buf, sizeof(buf));
		n = write(tc->fd, b->id, strlen(b->id));
		setsockopt(tc->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		break;
	}
	}
	(void)n;
	close(tc->fd);
	atomic_fetch_sub(&b->live, 1);
	free(tc);
	return NULL;
}

static void *
tb_main(void *arg)
{
	struct tb *b = arg;

	while (!atomic_load(&b->stop)) {
		struct pollfd pfd = {b->fd, POLLIN, 0};
		struct tb_conn *tc;
		pthread_t th;
		int fd;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		fd = accept(b->fd, NULL, NULL);
		if (fd == -1)
			continue;
		atomic_fetch_add(&b->accepted, 1);
		atomic_fetch_add(&b->live, 1);
		tc = calloc(1, sizeof(*tc));
		tc->b = b;
		tc->fd = fd;
		pthread_create(&th, NULL, tb_conn_main, tc);
		pthread_detach(th);
		if (b->accept_delay_ms)
			usleep((useconds_t)b->accept_delay_ms * 1000);
	}
	return NULL;
}

/* A socket bound to a free 127.0.0.1 port, not listening: connects to it are refused. */
static int
tb_bind(uint16_t *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/*
 * A backend bound to a free port that accepts nothing yet: listening with room for backlog
 * connections (-1: not listening, connects are refused), and waiting accept_delay_ms after
 * each accept once tb_run or tb_serve starts it.
 */
static struct tb *
tb_new(enum tb_mode mode, const char *id, int backlog, int accept_delay_ms)
{
	struct tb *b = calloc(1, sizeof(*b));

	b->mode = mode;
	b->accept_delay_ms = accept_delay_ms;
	snprintf(b->id, sizeof(b->id), "%s", id);
	b->fd = tb_bind(&b->port);
	if (backlog >= 0)
		assert_int_equal(listen(b->fd, backlog), 0);
	return b;
}

/* Accept in a thread, with the backlog b has. */
static void
tb_run(struct tb *b)
{
	pthread_create(&b->thread, NULL, tb_main, b);
}

/* Start serving on fd (from tb_bind) in a thread. */
static void
tb_serve(struct tb *b)
{
	assert_int_equal(listen(b->fd, 128), 0);
	tb_run(b);
}

static struct tb *
tb_start(enum tb_mode mode, const char *id)
{
	struct tb *b = tb_new(mode, id, -1, 0);

	tb_serve(b);
	return b;
}

static void
tb_stop(struct tb *b)
{
	atomic_store(&b->stop, true);
	pthread_join(b->thread, NULL);
	close(b->fd);
	for (int i = 0; i < 200 && atomic_load(&b->live) > 0; i++)
		usleep(5000);
	free(b);
}

/* ---- clients ------------------------------------------------------------------------ */

static int
cl_connect(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
	                          .sin_port = htons(port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {3, 0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read until EOF: bytes read, or -1 on an error (a reset counts as one). */
static ssize_t
cl_read_all(int fd, char *buf, size_t max)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = read(fd, buf + got, max - got);

		if (n == 0)
			return (ssize_t)got;
		if (n < 0)
			return -1;
		got += (size_t)n;
		if (got == max)
			return (ssize_t)got;
	}
}

/* One connection through the proxy to an id backend: the id, "" when closed at once. */
static void
cl_get_id(uint16_t port, char *out, size_t len)
{
	int fd = cl_connect(port);
	ssize_t n;

	assert_true(fd >= 0);
	n = cl_read_all(fd, out, len - 1);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
}

/* ---- the proxy ---------------------------------------------------------------------- */

struct fixture {
	struct proxy *p;
	struct tb *b[3];
	size_t nb;
	uint16_t port;
	atomic_int failures;
};

static void
on_failure(const struct proxy_failure *f, void *arg)
{
	struct fixture *fx = arg;

	assert_string_equal(f->service, "web");
	atomic_fetch_add(&fx->failures, 1);
}

static struct proxy *
px_start(struct fixture *fx, struct proxy_options *o)
{
	struct shoal_err err;

	o->on_failure = on_failure;
	o->failure_arg = fx;
	fx->p = proxy_create(o, &err);
	assert_non_null(fx->p);
	return fx->p;
}

/* Serve service "web" on a free port with the given backend ports (ids "b0", "b1", ...). */
static void
px_serve(struct fixture *fx, const uint16_t *ports, size_t n)
{
	struct proxy_service_spec opts = {0};

	fx->port = proxy_serve_web(fx->p, &opts, ports, n);
}

/* A proxy with options o serving "web" over the one backend b (fx_free stops both). */
static void
fx_one(struct fixture *fx, struct proxy_options *o, struct tb *b)
{
	fx->nb = 1;
	fx->b[0] = b;
	px_start(fx, o);
	px_serve(fx, &b->port, 1);
}

static void
fx_free(struct fixture *fx)
{
	proxy_destroy(fx->p);
	for (size_t i = 0; i < fx->nb; i++)
		if (fx->b[i])
			tb_stop(fx->b[i]);
}

static int64_t
active_conns(struct proxy *p)
{
	struct proxy_stats st;
	int64_t a;

	proxy_stats(p, &st);
	a = st.services[0].c.active;
	proxy_stats_free(&st);
	return a;
}

/* A proxy over 3 backends that write their id (A, B, C) and close. */
static void
px_start_ids(struct fixture *fx, struct proxy_options *o)
{
	uint16_t ports[3];

	fx->nb = 3;
	for (int i = 0; i < 3; i++) {
		char name[2] = {(char)('A' + i), 0};

		fx->b[i] = tb_start(TB_ID, name);
		ports[i] = fx->b[i]->port;
	}
	px_start(fx, o);
	px_serve(fx, ports, 3);
}

static void
rotation(int threads)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = threads};
	struct proxy_stats st;
	char id[16];

	px_start_ids(&fx, &o);
	for (int i = 0; i < 30; i++) {
		char want[2] = {(char)('A' + i % 3), 0};

		cl_get_id(fx.port, id, sizeof(id));
		assert_string_equal(id, want);
	}
	for (int i = 0; i < 3; i++)
		assert_int_equal(atomic_load(&fx.b[i]->accepted), 10);
	/* Byte counts reach the stats when the proxy closes, just after the client's EOF. */
	for (int i = 0; i < 200 && active_conns(fx.p) > 0; i++)
		usleep(5000);
	proxy_stats(fx.p, &st);
	assert_int_equal(st.nservices, 1);
	assert_int_equal(st.services[0].c.conns, 30);
	assert_int_equal(st.services[0].nbackends, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(st.services[0].backends[i].c.conns, 10);
		assert_int_equal(st.services[0].backends[i].c.bytes_out, 10);
	}
	proxy_stats_free(&st);
	fx_free(&fx);
}

static void
test_rotation(void **state)
{
	(void)state;
	rotation(1);
}

static void
test_rotation_threads(void **state)
{
	(void)state;
	rotation(2);
}

/* Clients that connect faster than the workers accept leave a backlog, which the workers
 * take in full batches and yield between: every client is still served, in strict rotation
 * across the threads. */
static void
test_backlog(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2};
	int fds[60], seen[3] = {0};
	char id[16];

	(void)state;
	px_start_ids(&fx, &o);
	for (int i = 0; i < 60; i++) {
		fds[i] = cl_connect(fx.port);
		assert_true(fds[i] >= 0);
	}
	for (int i = 0; i < 60; i++) {
		ssize_t n = cl_read_all(fds[i], id, sizeof(id) - 1);

		assert_int_equal(n, 1);
		assert_in_range(id[0], 'A', 'C');
		seen[id[0] - 'A']++;
		close(fds[i]);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(seen[i], 20);
		assert_int_equal(atomic_load(&fx.b[i]->accepted), 20);
	}
	fx_free(&fx);
}

/* A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
 * stays in SYN_SENT (a backend that times out). *plug is the connection that fills it. */
static struct tb *
tb_start_full(const char *id, int *plug)
{
	struct tb *b = calloc(1, sizeof(*b));

	b->mode = TB_ID;
	snprintf(b->id, sizeof(b->id), "%s", id);
	b->fd = tb_bind(&b->port);
	assert_int_equal(listen(b->fd, 0), 0);
	*plug = cl_connect(b->port);
	assert_true(*plug >= 0);
	return b;
}

/* A connect that times out benches the backend and moves the client to the next one. */
static void
test_connect_timeout(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .connect_timeout_ms = 200, .bench_ms = 5000};
	struct proxy_stats st;
	uint16_t ports[2];
	char id[16];
	int64_t t0, dt;
	int plug;

	(void)state;
	fx.nb = 2;
	fx.b[0] = tb_start_full("T", &plug);
	fx.b[1] = tb_start(TB_ID, "A");
	ports[0] = fx.b[0]->port;
	ports[1] = fx.b[1]->port;
	px_start(&fx, &o);
	px_serve(&fx, ports, 2);
	t0 = util_now_ms();
	cl_get_id(fx.port, id, sizeof(id));
	dt = util_now_ms() - t0;
	assert_string_equal(id, "A");
	assert_true(dt >= 150);
	assert_true(dt < 1000);
	/* T is benched: the next client goes straight to A. */
	t0 = util_now_ms();
	cl_get_id(fx.port, id, sizeof(id));
	assert_string_equal(id, "A");
	assert_true(util_now_ms() - t0 < 150);
	proxy_stats(fx.p, &st);
	assert_int_equal(st.services[0].backends[0].c.connect_failures, 1);
	assert_int_equal(st.services[0].backends[0].c.conns, 0);
	assert_true(st.services[0].backends[0].benched);
	assert_int_equal(st.services[0].c.retries, 1);
	assert_int_equal(st.services[0].c.rejected, 0);
	proxy_stats_free(&st);
	assert_int_equal(atomic_load(&fx.failures), 1);
	close(plug);
	tb_serve(fx.b[0]); /* tb_stop joins its thread */
	fx_free(&fx);
}

/* A handshake that completes after connect() returned (here: the SYN was dropped once and
 * retransmitted a second later) is picked up from the backend's writability, and the
 * client's bytes that waited meanwhile go through. The backend then answers and closes
 * with "hello" unread, so its reply arrives with a reset: the client still gets the reply
 * and its EOF at once, not after the idle timeout. */
static void
test_late_handshake(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .connect_timeout_ms = 5000};
	struct proxy_stats st;
	char id[16];
	int plug, fd;
	ssize_t n;

	(void)state;
	fx_one(&fx, &o, tb_start_full("L", &plug));
	fd = cl_connect(fx.port);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello", 5), 5);
	usleep(100 * 1000);
	/* Make room in the queue and serve: the retransmitted SYN now gets through. */
	tb_serve(fx.b[0]);
	n = cl_read_all(fd, id, sizeof(id) - 1);
	assert_int_equal(n, 1);
	id[n] = '\0';
	assert_string_equal(id, "L");
	close(fd);
	close(plug);
	/* Byte counters are flushed when the proxy closes its side, which may come just after
	 * the client read its EOF: wait for it (a loaded machine takes a while). */
	for (int i = 0;; i++) {
		proxy_stats(fx.p, &st);
		if (st.services[0].c.bytes_in == 5 || i == 200)
			break;
		proxy_stats_free(&st);
		usleep(10 * 1000);
	}
	assert_int_equal(st.services[0].backends[0].c.connect_failures, 0);
	assert_int_equal(st.services[0].backends[0].c.conns, 1);
	assert_int_equal(st.services[0].c.bytes_in, 5);
	proxy_stats_free(&st);
	fx_free(&fx);
}

/* A backend's reply and its reset arrive together: the pump reads the reply short and does
 * not read on to EAGAIN, yet the reset is seen (px_timer_cb's look) and the client gets the
 * reply and its EOF soon, not after the idle timeout. Repeated: a run where the proxy woke
 * between the two proves nothing. */
static void
test_reset_after_short_read(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1};
	struct timeval tv = {3, 0};

	(void)state;
	fx_one(&fx, &o, tb_start(TB_RESET, "R"));
	for (int i = 0; i < 20; i++) {
		char buf[16];
		size_t got = 0;
		ssize_t n;
		int fd = cl_connect(fx.port);

		assert_true(fd >= 0);
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
		assert_int_equal(write(fd, "q", 1), 1);
		while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
			got += (size_t)n;
		/* EOF, or a reset passed on; a timeout (EAGAIN) means the reset was missed. */
		assert_true(n == 0 || errno != EAGAIN);
		buf[got] = '\0';
		assert_string_equal(buf, "R");
		close(fd);
	}
	fx_free(&fx);
}

/* A refusing backend is skipped without a client error, benched, and used again once it
 * listens and the bench is over. */
static void
test_refused_backend(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .bench_ms = 300};
	struct tb *dead = calloc(1, sizeof(*dead));
	uint16_t ports[3];
	struct proxy_stats st;
	char id[16];
	int seen[3] = {0};
	int64_t t0;

	(void)state;
	fx.nb = 3;
	fx.b[0] = tb_start(TB_ID, "A");
	dead->mode = TB_ID;
	snprintf(dead->id, sizeof(dead->id), "B");
	dead->fd = tb_bind(&dead->port); /* bound, not listening: refuses */
	fx.b[2] = tb_start(TB_ID, "C");
	ports[0] = fx.b[0]->port;
	ports[1] = dead->port;
	ports[2] = fx.b[2]->port;
	px_start(&fx, &o);
	px_serve(&fx, ports, 3);
	t0 = util_now_ms();
	for (int i = 0; i < 30; i++) {
		cl_get_id(fx.port, id, sizeof(id));
		assert_true(strcmp(id, "A") == 0 || strcmp(id, "C") == 0);
	}
	assert_true(atomic_load(&fx.b[0]->accepted) >= 14);
	assert_true(atomic_load(&fx.b[2]->accepted) >= 14);
	proxy_stats(fx.p, &st);
	assert_true(st.services[0].backends[1].c.connect_failures >= 1);
	assert_true(st.services[0].c.retries >= 1);
	assert_int_equal(st.services[0].c.rejected, 0);
	if (util_now_ms() - t0 < 250)
		assert_true(st.services[0].backends[1].benched);
	proxy_stats_free(&st);
	assert_true(atomic_load(&fx.failures) >= 1);

	/* B comes up; after the bench it gets its turns again. */
	tb_serve(dead);
	fx.b[1] = dead;
	usleep(350 * 1000);
	for (int i = 0; i < 6; i++) {
		cl_get_id(fx.port, id, sizeof(id));
		assert_int_equal(strlen(id), 1);
		seen[id[0] - 'A']++;
	}
	assert_int_equal(seen[0], 2);
	assert_int_equal(seen[1], 2);
	assert_int_equal(seen[2], 2);
	fx_free(&fx);
}

/* Every backend refuses: the client's connection is closed (EOF or reset), promptly. */
static void
test_all_down(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1};
	uint16_t ports[2];
	int fds[2];
	struct proxy_stats st;
	char buf[16];
	int fd;

	(void)state;
	fds[0] = tb_bind(&ports[0]);
	fds[1] = tb_bind(&ports[1]);
	px_start(&fx, &o);
	px_serve(&fx, ports, 2);
	for (int i = 0; i < 3; i++) {
		fd = cl_connect(fx.port);
		assert_true(fd >= 0);
		assert_true(cl_read_all(fd, buf, sizeof(buf)) <= 0);
		close(fd);
	}
	proxy_stats(fx.p, &st);
	assert_int_equal(st.services[0].c.rejected, 3);
	assert_int_equal(st.services[0].backends[0].c.conns, 0);
	proxy_stats_free(&st);
	fx_free(&fx);
	close(fds[0]);
	close(fds[1]);
}

/* With main_base, passive failures arrive on the caller's loop, once per bench. */
static void
test_failure_on_main_base(void **state)
{
	struct fixture fx = {0};
	struct event_base *base = event_base_new();
	struct proxy_options o = {.threads = 2, .main_base = base, .bench_ms = 10000};
	uint16_t ports[2];
	int dead;
	char id[16];

	(void)state;
	fx.nb = 1;
	fx.b[0] = tb_start(TB_ID, "A");
	ports[0] = fx.b[0]->port;
	dead = tb_bind(&ports[1]);
	px_start(&fx, &o);
	px_serve(&fx, ports, 2);
	for (int i = 0; i < 6; i++) {
		cl_get_id(fx.port, id, sizeof(id));
		assert_string_equal(id, "A");
	}
	assert_int_equal(atomic_load(&fx.failures), 0); /* not delivered until the loop runs */
	for (int i = 0; i < 100 && atomic_load(&fx.failures) == 0; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(2000);
	}
	assert_int_equal(atomic_load(&fx.failures), 1);
	fx_free(&fx);
	event_base_free(base);
	close(dead);
}

/* The client's FIN reaches the backend, which still answers after it. */
static void
test_half_close(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1};
	char buf[64];
	int fd;

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	fd = cl_connect(fx.port);
	assert_int_equal(write(fd, "ping", 4), 4);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	assert_int_equal(cl_read_all(fd, buf, sizeof(buf)), 7);
	assert_memory_equal(buf, "pingbye", 7);
	close(fd);
	fx_free(&fx);
}

/* A client that does not read: the proxy holds at most buf_size, the backend blocks. */
static void
test_slow_reader(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .buf_size = 64 * 1024};
	size_t total = 64u << 20, got = 0;
	static char buf[1 << 20];
	int64_t peak = 0;
	int fd;

	(void)state;
	fx.nb = 1;
	fx.b[0] = tb_start(TB_FLOOD, "F");
	fx.b[0]->flood_bytes = total;
	px_start(&fx, &o);
	px_serve(&fx, &fx.b[0]->port, 1);
	fd = cl_connect(fx.port);
	for (int i = 0; i < 30; i++) {
		int64_t b = proxy_buffered_bytes(fx.p);

		peak = b > peak ? b : peak;
		usleep(10 * 1000);
	}
	assert_true(peak > 0);
	assert_true(peak <= 64 * 1024);
	assert_true(atomic_load(&fx.b[0]->written) < total);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		assert_true(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
		if (proxy_buffered_bytes(fx.p) > peak)
			peak = proxy_buffered_bytes(fx.p);
	}
	assert_int_equal(got, total);
	assert_true(peak <= 64 * 1024);
	close(fd);
	fx_free(&fx);
}

static void
echo_roundtrip(int fd)
{
	char buf[4];

	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(read(fd, buf, 1), 1);
	assert_int_equal(buf[0], 'x');
}

/* Hostile: idle clients. One that sends nothing, to a backend that sends nothing either, is
 * closed after first_byte_timeout_ms; one that spoke keeps the idle timeout (10 min here). */
static void
test_first_byte_timeout(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .first_byte_timeout_ms = 300};
	int64_t t0, dt;
	char buf[4];
	int quiet, talker;

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	t0 = util_now_ms();
	quiet = cl_connect(fx.port);
	talker = cl_connect(fx.port);
	assert_true(quiet >= 0 && talker >= 0);
	echo_roundtrip(talker);
	/* EOF, not the client's own 3 s receive timeout. */
	assert_int_equal(cl_read_all(quiet, buf, sizeof(buf)), 0);
	dt = util_now_ms() - t0;
	assert_true(dt >= 250);
	assert_true(dt < 2000);
	usleep(200 * 1000);
	echo_roundtrip(talker);
	close(quiet);
	close(talker);
	fx_free(&fx);
}

/* The default max_conns follows the fd limit: 2 fds a client, max(256, 1/8) in reserve. */
static void
test_default_max_conns(void **state)
{
	(void)state;
	assert_int_equal(proxy_default_max_conns(1024), 384);
	assert_int_equal(proxy_default_max_conns(20000), 8750);
	assert_int_equal(proxy_default_max_conns(1048576), 65536);
	assert_int_equal(proxy_default_max_conns(100), 1);
}

/* Hostile: clients waiting while the fd table is full. accept() fails with EMFILE and the
 * listener stays readable: the worker must pause accepting, not spin on it (a scheduler spun
 * at 75% of a core and wrote 584,504 lines in 4 s that way). */
static void
test_emfile_pauses(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .max_conns = 100000};
	struct rlimit saved, low;
	uint16_t port;
	int cl[40], backend, n;
	int64_t cpu0, used;

	(void)state;
	backend = tb_bind(&port); /* listens, never accepts: connects complete in its backlog */
	assert_int_equal(listen(backend, 128), 0);
	px_start(&fx, &o);
	px_serve(&fx, &port, 1);
	for (int i = 0; i < 40; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(cl[i] >= 0);
	}
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur =
	    (rlim_t)fixture_open_fds() + 20; /* room for ~10 proxied clients (2 fds each) */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	for (int i = 0; i < 40; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons(fx.port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

		assert_int_equal(connect(cl[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	usleep(200 * 1000);
	cpu0 = fixture_cpu_ms();
	usleep(1000 * 1000);
	used = fixture_cpu_ms() - cpu0;
	n = (int)active_conns(fx.p);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_true(n >= 1 && n < 40);
	if (used >= 300)
		fail_msg("the proxy spun on a full fd table: %lld ms of CPU in 1 s",
		         (long long)used);
	/* With fds again, the waiting clients get in after the pause. */
	for (int i = 0; i < 100 && active_conns(fx.p) < 40; i++)
		usleep(20 * 1000);
	assert_int_equal(active_conns(fx.p), 40);
	for (int i = 0; i < 40; i++)
		close(cl[i]);
	fx_free(&fx);
	close(backend);
}

/* Hostile: the last fd goes to an accepted client, none is left for its backend socket.
 * The client was accepted and did nothing wrong: it waits for an fd and is then served,
 * never closed (closing it was what turned fd pressure into refused requests). */
static void
test_emfile_backend_waits(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .max_conns = 100000};
	struct rlimit saved, low;
	struct proxy_stats st;
	int cl, lowest;

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(cl >= 0);
	lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)lowest + 1; /* accept() gets `lowest`, socket() gets nothing */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	{
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons(fx.port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

		assert_int_equal(connect(cl, (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	usleep(300 * 1000);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_int_equal(active_conns(fx.p), 1); /* accepted and waiting, not closed */
	proxy_stats(fx.p, &st);
	assert_int_equal(st.services[0].c.rejected, 0);
	proxy_stats_free(&st);
	echo_roundtrip(cl); /* served once an fd is free again */
	close(cl);
	fx_free(&fx);
}

static void
test_max_conns(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .max_conns = 2};
	struct proxy_stats st;
	int c1, c2, c3, c4;
	char buf[4];

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	c1 = cl_connect(fx.port);
	echo_roundtrip(c1);
	c2 = cl_connect(fx.port);
	echo_roundtrip(c2);
	c3 = cl_connect(fx.port);
	assert_true(c3 >= 0);
	assert_true(cl_read_all(c3, buf, sizeof(buf)) <= 0);
	close(c3);
	close(c1);
	for (int i = 0; i < 200 && active_conns(fx.p) > 1; i++)
		usleep(5000);
	c4 = cl_connect(fx.port);
	echo_roundtrip(c4);
	proxy_stats(fx.p, &st);
	assert_int_equal(st.services[0].c.rejected, 1);
	assert_int_equal(st.services[0].c.conns, 3);
	proxy_stats_free(&st);
	close(c2);
	close(c4);
	fx_free(&fx);
}

/* Connections opened one by one end up spread over the workers to within the hand-off
 * margin (2), whichever worker won each accept. */
static void
test_worker_balance(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 4};
	int fds[200];
	int64_t conns[4], lo = INT64_MAX, hi = 0, sum = 0;

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	for (int i = 0; i < 200; i++) {
		fds[i] = cl_connect(fx.port);
		echo_roundtrip(fds[i]);
	}
	assert_int_equal(proxy_worker_conns(fx.p, conns, 4), 4);
	for (int i = 0; i < 4; i++) {
		lo = conns[i] < lo ? conns[i] : lo;
		hi = conns[i] > hi ? conns[i] : hi;
		sum += conns[i];
	}
	print_message("connections per worker: %lld %lld %lld %lld\n", (long long)conns[0],
	              (long long)conns[1], (long long)conns[2], (long long)conns[3]);
	assert_int_equal(sum, 200);
	assert_true(hi - lo <= 3);
	for (int i = 0; i < 200; i++)
		close(fds[i]);
	for (int i = 0; i < 200 && active_conns(fx.p) > 0; i++)
		usleep(5000);
	assert_int_equal(proxy_worker_conns(fx.p, conns, 4), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(conns[i], 0);
	fx_free(&fx);
}

static void
test_idle_timeout(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .idle_timeout_ms = 200};
	struct pollfd pfd;
	char buf[16];
	int64_t t0, dt;
	int fd;

	(void)state;
	fx_one(&fx, &o, tb_start(TB_ECHO, "E"));
	fd = cl_connect(fx.port);
	echo_roundtrip(fd);
	/* Activity pushes the deadline back. */
	usleep(120 * 1000);
	echo_roundtrip(fd);
	t0 = util_now_ms();
	pfd = (struct pollfd){fd, POLLIN, 0};
	assert_int_equal(poll(&pfd, 1, 2000), 1);
	dt = util_now_ms() - t0;
	assert_true(dt >= 150);
	assert_true(dt < 1000);
	assert_true(read(fd, buf, sizeof(buf)) <= 0);
	close(fd);
	fx_free(&fx);
}

/* Swapping the table keeps established connections and the listener; new connections use
 * the new backends; removing the service closes its port. */
static void
test_swap(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2};
	struct proxy_backend_spec be[2];
	struct proxy_service_spec svc = {.name = "web", .listen_addr = "127.0.0.1"};
	struct proxy_stats st;
	struct shoal_err err;
	char id[16];
	int fd;

	(void)state;
	fx.nb = 3;
	fx.b[0] = tb_start(TB_ECHO, "E");
	fx.b[1] = tb_start(TB_ID, "A");
	fx.b[2] = tb_start(TB_ID, "B");
	px_start(&fx, &o);
	px_serve(&fx, &fx.b[0]->port, 1);
	fd = cl_connect(fx.port);
	echo_roundtrip(fd);

	svc.port = 0;
	be[0] = (struct proxy_backend_spec){"a", "127.0.0.1", fx.b[1]->port};
	be[1] = (struct proxy_backend_spec){"b", "127.0.0.1", fx.b[2]->port};
	svc.backends = be;
	svc.nbackends = 2;
	for (int round = 0; round < 20; round++) /* many swaps: old tables are retired */
		assert_int_equal(proxy_set_services(fx.p, &svc, 1, &err), 0);
	assert_int_equal(proxy_listen_port(fx.p, "web"), fx.port);
	echo_roundtrip(fd); /* its backend left the table; the connection stays */
	for (int i = 0; i < 4; i++) {
		cl_get_id(fx.port, id, sizeof(id));
		assert_true(strcmp(id, "A") == 0 || strcmp(id, "B") == 0);
	}
	assert_int_equal(atomic_load(&fx.b[1]->accepted), 2);
	assert_int_equal(atomic_load(&fx.b[2]->accepted), 2);
	/* A kept backend keeps its counters across a swap. */
	assert_int_equal(proxy_set_services(fx.p, &svc, 1, &err), 0);
	proxy_stats(fx.p, &st);
	assert_int_equal(st.services[0].c.conns, 5);
	assert_int_equal(st.services[0].backends[0].c.conns, 2);
	proxy_stats_free(&st);
	close(fd);

	/* Bad input is reported; the good service still applies. */
	struct proxy_service_spec two[2] = {svc, svc};
	two[1].name = "bad";
	two[1].listen_addr = "not-an-ip";
	assert_int_equal(proxy_set_services(fx.p, two, 2, &err), -1);
	assert_non_null(strstr(err.msg, "service bad: listen address not-an-ip"));
	assert_int_equal(proxy_listen_port(fx.p, "web"), fx.port);

	assert_int_equal(proxy_set_services(fx.p, NULL, 0, &err), 0);
	assert_int_equal(proxy_listen_port(fx.p, "web"), 0);
	for (int i = 0; i < 100; i++) { /* the workers close their listeners soon */
		fd = cl_connect(fx.port);
		if (fd == -1)
			break;
		close(fd);
		usleep(5000);
	}
	assert_int_equal(fd, -1);
	fx_free(&fx);
}

/* One name on two ports (a service's virtual IP for each of its target ports): two
 * listeners of one service, both served (before, the second was refused as "given twice"
 * on every table, and that port never listened); the same name on the same address and port
 * is still refused. */
static void
test_one_name_two_ports(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1};
	struct proxy_backend_spec be = {"a", "127.0.0.1", 0};
	struct proxy_service_spec svc[3];
	struct proxy_stats st;
	struct shoal_err err;
	uint16_t port[2];
	char id[16];

	(void)state;
	for (int i = 0; i < 2; i++) /* two free ports */
		close(tb_bind(&port[i]));
	fx_one(&fx, &o, tb_start(TB_ID, "A"));
	be.port = fx.b[0]->port;
	for (int i = 0; i < 3; i++)
		svc[i] = (struct proxy_service_spec){.name = "db",
		                                     .listen_addr = "127.0.0.1",
		                                     .port = port[i % 2],
		                                     .backends = &be,
		                                     .nbackends = 1};
	assert_int_equal(proxy_set_services(fx.p, svc, 2, &err), 0);
	for (int i = 0; i < 2; i++) {
		cl_get_id(port[i], id, sizeof(id));
		assert_string_equal(id, "A");
	}
	proxy_stats(fx.p, &st);
	assert_int_equal(st.nservices, 2);
	proxy_stats_free(&st);
	assert_int_equal(proxy_set_services(fx.p, svc, 3, &err), -1);
	fx_free(&fx);
}

/* ---- overload: busy is not down, the queue --------------------------------------------- */

/* Serve "web" over ports with a per-backend limit and a queue timeout. */
static void
px_serve_limited(struct fixture *fx, const uint16_t *ports, size_t n, uint32_t max,
                 int64_t queue_ms)
{
	struct proxy_service_spec opts = {.max_conns_per_backend = max,
	                                  .queue_timeout_ms = queue_ms};

	fx->port = proxy_serve_web(fx->p, &opts, ports, n);
}

/* True when fd has something to read (or EOF) within ms. */
static bool
cl_ready(int fd, int ms)
{
	struct pollfd pfd = {fd, POLLIN, 0};

	return poll(&pfd, 1, ms) == 1;
}

static struct proxy_service_stats
svc_stats(struct proxy *p)
{
	struct proxy_stats st;
	struct proxy_service_stats s;

	proxy_stats(p, &st);
	s = st.services[0];
	s.backends = NULL;
	s.nbackends = 0;
	proxy_stats_free(&st);
	return s;
}

/* A backend that completed a connect a moment ago and now times out (its accept queue is
 * full: the kernel drops the SYN) is busy, not down: the client goes to the other one, and
 * the busy one is neither benched nor reported. It is full at the one connection it holds
 * (a learned limit): the next clients go to A at once instead of timing out on it again. */
static void
test_busy_not_benched(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .connect_timeout_ms = 200, .bench_ms = 10000};
	struct proxy_stats st;
	uint16_t ports[2];
	char id[16];
	int hold, c2;
	int64_t t0;

	(void)state;
	fx.nb = 2;
	fx.b[0] = tb_new(TB_ID, "T", 0, 0); /* room for one, never accepted */
	fx.b[1] = tb_start(TB_ID, "A");
	ports[0] = fx.b[0]->port;
	ports[1] = fx.b[1]->port;
	px_start(&fx, &o);
	px_serve(&fx, ports, 2);
	/* The first client's connect to T completes (it answered) and fills its queue. */
	hold = cl_connect(fx.port);
	assert_true(hold >= 0);
	usleep(50 * 1000);
	c2 = cl_connect(fx.port); /* A */
	assert_true(c2 >= 0);
	assert_int_equal(cl_read_all(c2, id, sizeof(id)), 1);
	close(c2);
	/* T's turn: it times out, A serves. */
	t0 = util_now_ms();
	cl_get_id(fx.port, id, sizeof(id));
	assert_string_equal(id, "A");
	assert_true(util_now_ms() - t0 >= 150);
	/* T is full at one connection: its turns pass to A without a timeout. */
	for (int i = 0; i < 3; i++) {
		t0 = util_now_ms();
		cl_get_id(fx.port, id, sizeof(id));
		assert_string_equal(id, "A");
		assert_true(util_now_ms() - t0 < 150);
	}
	proxy_stats(fx.p, &st);
	assert_false(st.services[0].backends[0].benched);
	assert_int_equal(st.services[0].backends[0].c.busy_timeouts, 1);
	assert_int_equal(st.services[0].c.rejected, 0);
	proxy_stats_free(&st);
	assert_int_equal(atomic_load(&fx.failures), 0);
	close(hold);
	tb_serve(fx.b[0]);
	fx_free(&fx);
}

/* Every backend benched is no reason to close a client: the only backend refused once and
 * is benched for 10 s, but comes back at once, and the next client is served by it. */
static void
test_all_benched_still_tried(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 1, .bench_ms = 10000};
	struct proxy_stats st;
	char id[16];

	(void)state;
	fx_one(&fx, &o, tb_new(TB_ID, "R", -1, 0)); /* refuses */
	cl_get_id(fx.port, id, sizeof(id));
	assert_string_equal(id, "");
	proxy_stats(fx.p, &st);
	assert_true(st.services[0].backends[0].benched);
	/* 1 + 3 attempts, then closed: bounded. */
	assert_int_equal(st.services[0].backends[0].c.connect_failures, 4);
	proxy_stats_free(&st);
	tb_serve(fx.b[0]);
	cl_get_id(fx.port, id, sizeof(id));
	assert_string_equal(id, "R");
	fx_free(&fx);
}

/* max_conns_per_backend 1 over two echo backends: the third client waits (no backend sees
 * it), and gets the first slot freed, on that backend; a wait past queue_timeout closes. */
static void
test_queue(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2};
	struct proxy_service_stats ss;
	uint16_t ports[2];
	int c[5];
	char buf[8];
	int64_t t0;

	(void)state;
	fx.nb = 2;
	fx.b[0] = tb_start(TB_ECHO, "E0");
	fx.b[1] = tb_start(TB_ECHO, "E1");
	ports[0] = fx.b[0]->port;
	ports[1] = fx.b[1]->port;
	px_start(&fx, &o);
	px_serve_limited(&fx, ports, 2, 1, 600);
	c[0] = cl_connect(fx.port);
	echo_roundtrip(c[0]);
	c[1] = cl_connect(fx.port);
	echo_roundtrip(c[1]);
	/* Two more wait, in order. */
	c[2] = cl_connect(fx.port);
	assert_true(c[2] >= 0);
	assert_int_equal(write(c[2], "2", 1), 1);
	usleep(30 * 1000);
	c[3] = cl_connect(fx.port);
	assert_true(c[3] >= 0);
	assert_int_equal(write(c[3], "3", 1), 1);
	assert_false(cl_ready(c[2], 100));
	assert_int_equal(atomic_load(&fx.b[0]->accepted) + atomic_load(&fx.b[1]->accepted), 2);
	ss = svc_stats(fx.p);
	assert_int_equal(ss.queue_len, 2);
	assert_true(ss.queue_max_wait >= 100);
	/* c[1]'s slot (on E1) goes to the oldest, c[2], whose byte waited in its socket. */
	shutdown(c[1], SHUT_WR);
	assert_true(cl_ready(c[2], 1000));
	assert_int_equal(read(c[2], buf, 1), 1);
	assert_int_equal(buf[0], '2');
	assert_false(cl_ready(c[3], 50));
	assert_int_equal(atomic_load(&fx.b[1]->accepted), 2);
	/* c[3] is not served in time: closed at queue_timeout (600 ms), not before. */
	t0 = util_now_ms();
	assert_true(cl_ready(c[3], 2000));
	assert_true(cl_read_all(c[3], buf, sizeof(buf)) <= 0);
	assert_true(util_now_ms() - t0 >= 300);
	ss = svc_stats(fx.p);
	assert_int_equal(ss.queue_len, 0);
	assert_int_equal(ss.c.queued, 1);
	assert_int_equal(ss.c.queue_timeouts, 1);
	assert_int_equal(ss.c.rejected, 1);
	for (int i = 0; i < 4; i++)
		close(c[i]);
	fx_free(&fx);
}

/* A service that goes away closes its waiting clients at once, not at their queue timeout. */
static void
test_queue_service_gone(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2};
	struct shoal_err err;
	char buf[8];
	int c1, c2;
	int64_t t0;

	(void)state;
	fx.nb = 1;
	fx.b[0] = tb_start(TB_ECHO, "E");
	px_start(&fx, &o);
	px_serve_limited(&fx, &fx.b[0]->port, 1, 1, 10000);
	c1 = cl_connect(fx.port);
	echo_roundtrip(c1);
	c2 = cl_connect(fx.port);
	assert_true(c2 >= 0);
	for (int i = 0; i < 200 && svc_stats(fx.p).queue_len == 0; i++)
		usleep(5000);
	assert_int_equal(svc_stats(fx.p).queue_len, 1);
	t0 = util_now_ms();
	assert_int_equal(proxy_set_services(fx.p, NULL, 0, &err), 0);
	assert_true(cl_ready(c2, 2000));
	assert_true(cl_read_all(c2, buf, sizeof(buf)) <= 0);
	assert_true(util_now_ms() - t0 < 1000);
	close(c1);
	close(c2);
	fx_free(&fx);
}

/* The queue gauge once it has reached want or ms have passed: its value then. */
static int64_t
queue_len_within(struct proxy *p, int64_t want, int ms)
{
	for (int i = 0; i < ms / 5 && svc_stats(p).queue_len != want; i++)
		usleep(5000);
	return svc_stats(p).queue_len;
}

/* One echo backend with a limit of 1 and a 10 s queue timeout, held by *holder: the next
 * client waits. */
static void
queue_fixture(struct fixture *fx, int *holder)
{
	struct proxy_options o = {.threads = 2};

	fx->nb = 1;
	fx->b[0] = tb_start(TB_ECHO, "E");
	px_start(fx, &o);
	px_serve_limited(fx, &fx->b[0]->port, 1, 1, 10000);
	*holder = cl_connect(fx->port);
	echo_roundtrip(*holder);
}

/*
 * The queue gauge on each way a client leaves the queue (served and timed out: test_queue;
 * service gone: test_queue_service_gone; a storm of all: test_queue_storm). A client that
 * closes while it waits leaves at once: the gauge drops then, not at queue_timeout (10 s
 * here; before, it stayed up that long after every client had gone), and the slot freed
 * next goes to a client still there, not to it. One that half-closed after its bytes still
 * waits, and is served.
 */
static void
test_queue_client_gone(void **state)
{
	struct fixture fx = {0};
	struct proxy_service_stats ss;
	char buf[8];
	int hold, gone, half;

	(void)state;
	queue_fixture(&fx, &hold);
	gone = cl_connect(fx.port);
	assert_true(gone >= 0);
	assert_int_equal(queue_len_within(fx.p, 1, 2000), 1);
	close(gone);
	assert_int_equal(queue_len_within(fx.p, 0, 1000), 0);
	half = cl_connect(fx.port);
	assert_true(half >= 0);
	assert_int_equal(write(half, "h", 1), 1);
	shutdown(half, SHUT_WR);
	assert_int_equal(queue_len_within(fx.p, 1, 2000), 1);
	usleep(100 * 1000);
	assert_int_equal(svc_stats(fx.p).queue_len, 1);
	shutdown(hold, SHUT_WR);
	assert_true(cl_ready(half, 2000));
	assert_int_equal(cl_read_all(half, buf, sizeof(buf)), 4); /* "h" + "bye" */
	assert_int_equal(buf[0], 'h');
	ss = svc_stats(fx.p);
	assert_int_equal(ss.queue_len, 0);
	assert_int_equal(ss.c.queued, 1);
	assert_int_equal(ss.c.queue_timeouts, 0);
	assert_int_equal(ss.c.rejected, 0);
	assert_int_equal(atomic_load(&fx.b[0]->accepted), 2); /* hold and half, not gone */
	close(hold);
	close(half);
	fx_free(&fx);
}

/* A table swap that raises the limit serves the client waiting at once: the gauge drops. */
static void
test_queue_limit_raised(void **state)
{
	struct fixture fx = {0};
	int hold, c2;

	(void)state;
	queue_fixture(&fx, &hold);
	c2 = cl_connect(fx.port);
	assert_true(c2 >= 0);
	assert_int_equal(queue_len_within(fx.p, 1, 2000), 1);
	px_serve_limited(&fx, &fx.b[0]->port, 1, 2, 10000);
	echo_roundtrip(c2);
	assert_int_equal(svc_stats(fx.p).queue_len, 0);
	assert_int_equal(svc_stats(fx.p).c.queued, 1);
	close(hold);
	close(c2);
	fx_free(&fx);
}

/* The proxy destroyed while clients wait: they are closed, nothing leaks (the sanitizer run
 * checks), the gauge goes with the proxy. */
static void
test_queue_destroy_waiting(void **state)
{
	struct fixture fx = {0};
	char buf[8];
	int hold, c[3];

	(void)state;
	queue_fixture(&fx, &hold);
	for (int i = 0; i < 3; i++) {
		c[i] = cl_connect(fx.port);
		assert_true(c[i] >= 0);
	}
	assert_int_equal(queue_len_within(fx.p, 3, 2000), 3);
	proxy_destroy(fx.p);
	fx.p = NULL;
	for (int i = 0; i < 3; i++) {
		assert_true(cl_read_all(c[i], buf, sizeof(buf)) <= 0);
		close(c[i]);
	}
	close(hold);
	fx_free(&fx);
}

struct overload_client {
	uint16_t port;
	char id[16];
};

static void *
overload_client_main(void *arg)
{
	struct overload_client *oc = arg;
	int fd = cl_connect(oc->port);
	ssize_t n;

	if (fd < 0)
		return NULL;
	n = cl_read_all(fd, oc->id, sizeof(oc->id) - 1);
	oc->id[n > 0 ? n : 0] = '\0';
	close(fd);
	return NULL;
}

/*
 * Overload: two backends that accept one connection per 40 ms from a backlog of 1, and 24
 * clients at once. Unlimited, the surplus SYNs are dropped, connects time out, and (before
 * busy was told from down) both backends were benched and clients closed. With a limit of 1
 * per backend the rest wait in the queue: every client gets its answer.
 */
static void
test_overload_slow_accept(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .connect_timeout_ms = 200};
	struct overload_client oc[24];
	pthread_t th[24];
	struct proxy_service_stats ss;
	uint16_t ports[2];
	int served = 0;

	(void)state;
	fx.nb = 2;
	for (int i = 0; i < 2; i++) {
		char name[2] = {(char)('A' + i), 0};

		fx.b[i] = tb_new(TB_ID, name, 0, 40);
		tb_run(fx.b[i]);
		ports[i] = fx.b[i]->port;
	}
	px_start(&fx, &o);
	px_serve_limited(&fx, ports, 2, 1, 5000);
	for (int i = 0; i < 24; i++) {
		oc[i] = (struct overload_client){.port = fx.port};
		pthread_create(&th[i], NULL, overload_client_main, &oc[i]);
	}
	for (int i = 0; i < 24; i++) {
		pthread_join(th[i], NULL);
		served += oc[i].id[0] == 'A' || oc[i].id[0] == 'B';
	}
	assert_int_equal(served, 24);
	ss = svc_stats(fx.p);
	assert_int_equal(ss.c.rejected, 0);
	assert_true(ss.c.queued >= 10);
	fx_free(&fx);
}

/*
 * The queue gauge after a storm: slow-accepting backends, clients that give up at once or
 * after a while, the backend set swapped and the limit changed while they wait. Once every
 * client is gone and queue_timeout has passed, no one is waiting: queue_len reads 0 and a
 * new client is served (a client counted twice, or freed while still queued, would leave
 * the gauge up for ever or spin the worker that hands slots out).
 */
static void
test_queue_storm(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .connect_timeout_ms = 100};
	uint16_t ports[2];
	int c[60];
	struct overload_client oc[4];
	pthread_t th[4];
	struct proxy_service_stats ss, after;

	(void)state;
	fx.nb = 2;
	for (int i = 0; i < 2; i++) {
		char name[2] = {(char)('A' + i), 0};

		fx.b[i] = tb_new(TB_ID, name, 0, 30);
		tb_run(fx.b[i]);
		ports[i] = fx.b[i]->port;
	}
	px_start(&fx, &o);
	px_serve_limited(&fx, ports, 2, 1, 400);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 60; i++) {
			c[i] = cl_connect(fx.port);
			assert_true(c[i] >= 0);
			if (i % 3 == 0) { /* gives up at once: closed while queued or in hand-off */
				close(c[i]);
				c[i] = -1;
			}
			if (i == 20)
				px_serve_limited(&fx, &ports[1], 1, 1, 400); /* A removed */
			if (i == 40)
				px_serve_limited(&fx, ports, 2, 2, 400); /* A back, limit 2 */
		}
		usleep(50 * 1000);
		for (int i = 0; i < 60; i++)
			if (c[i] >= 0 && i % 2 == 0) {
				close(c[i]);
				c[i] = -1;
			}
		px_serve_limited(&fx, ports, 2, 1, 400);
		usleep(100 * 1000);
		for (int i = 0; i < 60; i++)
			if (c[i] >= 0)
				close(c[i]);
	}
	/* Every client is gone and queue_timeout (400 ms) has passed well before 3 s. */
	for (int i = 0; i < 300 && svc_stats(fx.p).queue_len != 0; i++)
		usleep(10 * 1000);
	ss = svc_stats(fx.p);
	assert_int_equal(ss.queue_len, 0);
	/* The queue still hands slots out: 4 clients at once on 2 slots, each answered, at
	 * least 2 of them through the queue, none timed out (a queue that no longer passes
	 * freed slots on closes them at queue_timeout; the gauge alone would not tell). */
	px_serve_limited(&fx, ports, 2, 1, 5000);
	for (int i = 0; i < 4; i++) {
		oc[i] = (struct overload_client){.port = fx.port};
		pthread_create(&th[i], NULL, overload_client_main, &oc[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_true(oc[i].id[0] == 'A' || oc[i].id[0] == 'B');
	}
	after = svc_stats(fx.p);
	assert_true(after.c.queued >= ss.c.queued + 2);
	assert_int_equal(after.c.queue_timeouts, ss.c.queue_timeouts);
	assert_int_equal(after.queue_len, 0);
	fx_free(&fx);
}

/*
 * Every backend's accept queue full (backlog 0, never accepted: the kernel drops further
 * SYNs), no configured limit: a client whose connects time out on backends that answered a
 * moment ago is not closed after its 1 + 3 connects, as before, but waits (each backend is
 * full at the connections it holds) and is served by the first backend that frees a slot.
 * Refused connects still close after 1 + 3 (test_all_benched_still_tried).
 */
static void
test_full_accept_queues_wait(void **state)
{
	struct fixture fx = {0};
	struct proxy_options o = {.threads = 2, .connect_timeout_ms = 100};
	struct proxy_service_stats ss;
	uint16_t ports[2];
	char id[16];
	int hold[2], c3;
	ssize_t n;

	(void)state;
	fx.nb = 2;
	for (int i = 0; i < 2; i++) {
		char name[2] = {(char)('A' + i), 0};

		fx.b[i] = tb_new(TB_ID, name, 0, 0); /* room for one, never accepted */
		ports[i] = fx.b[i]->port;
	}
	px_start(&fx, &o);
	px_serve_limited(&fx, ports, 2, 0, 5000);
	/* One client on each: their connects complete and fill both accept queues. */
	for (int i = 0; i < 2; i++) {
		hold[i] = cl_connect(fx.port);
		assert_true(hold[i] >= 0);
		for (int k = 0; k < 200 && svc_stats(fx.p).c.active < i + 1; k++)
			usleep(5000);
	}
	usleep(50 * 1000);
	/* The third times out on both (busy) and waits: 8 connect timeouts later it is still
	 * open (before: closed after 4). */
	c3 = cl_connect(fx.port);
	assert_true(c3 >= 0);
	assert_false(cl_ready(c3, 800));
	ss = svc_stats(fx.p);
	assert_int_equal(ss.c.rejected, 0);
	assert_true(ss.c.busy_timeouts >= 2);
	assert_int_equal(ss.queue_len, 1);
	/* The backends serve: the holders get their answers, their slots free, and the waiting
	 * client is served too. */
	tb_serve(fx.b[0]);
	tb_serve(fx.b[1]);
	n = cl_read_all(c3, id, sizeof(id) - 1);
	assert_int_equal(n, 1);
	id[n] = '\0';
	assert_true(id[0] == 'A' || id[0] == 'B');
	for (int i = 0; i < 2; i++) {
		n = cl_read_all(hold[i], id, sizeof(id) - 1);
		assert_int_equal(n, 1);
		close(hold[i]);
	}
	close(c3);
	ss = svc_stats(fx.p);
	assert_int_equal(ss.c.rejected, 0);
	assert_int_equal(ss.queue_len, 0);
	fx_free(&fx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lb_rr_rotation),
	    cmocka_unit_test(test_lb_rr_skip),
	    cmocka_unit_test(test_lb_rr_threads),
	    cmocka_unit_test(test_rotation),
	    cmocka_unit_test(test_rotation_threads),
	    cmocka_unit_test(test_refused_backend),
	    cmocka_unit_test(test_all_down),
	    cmocka_unit_test(test_connect_timeout),
	    cmocka_unit_test(test_late_handshake),
	    cmocka_unit_test(test_reset_after_short_read),
	    cmocka_unit_test(test_failure_on_main_base),
	    cmocka_unit_test(test_half_close),
	    cmocka_unit_test(test_slow_reader),
	    cmocka_unit_test(test_max_conns),
	    cmocka_unit_test(test_first_byte_timeout),
	    cmocka_unit_test(test_default_max_conns),
	    cmocka_unit_test(test_emfile_pauses),
	    cmocka_unit_test(test_emfile_backend_waits),
	    cmocka_unit_test(test_worker_balance),
	    cmocka_unit_test(test_backlog),
	    cmocka_unit_test(test_idle_timeout),
	    cmocka_unit_test(test_swap),
	    cmocka_unit_test(test_one_name_two_ports),
	    cmocka_unit_test(test_busy_not_benched),
	    cmocka_unit_test(test_all_benched_still_tried),
	    cmocka_unit_test(test_queue),
	    cmocka_unit_test(test_overload_slow_accept),
	    cmocka_unit_test(test_queue_service_gone),
	    cmocka_unit_test(test_queue_storm),
	    cmocka_unit_test(test_queue_client_gone),
	    cmocka_unit_test(test_queue_limit_raised),
	    cmocka_unit_test(test_queue_destroy_waiting),
	    cmocka_unit_test(test_full_accept_queues_wait),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init("test", LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
