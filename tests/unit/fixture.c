#include "fixture.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <sodium.h>

#include "err.h"
#include "rpc.h"
#include "runtime/layer.h"
#include "token.h"

int
fixture_tmpdir(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "/tmp/shoal-%s-test.XXXXXX", name);
	return mkdtemp(buf) == NULL ? -1 : 0;
}

int
fixture_rmtree(const char *dir)
{
	struct shoal_err err;

	return layer_remove_tree(dir, &err);
}

void *
fixture_new(size_t size, const char *name)
{
	char *top = calloc(1, size);

	if (top == NULL || fixture_tmpdir(top, FIXTURE_TOP, name) == -1) {
		free(top);
		return NULL;
	}
	return top;
}

int
fixture_teardown(void **state)
{
	char *top = *state;
	int rc = fixture_rmtree(top);

	free(top);
	return rc;
}

void
fixture_need_root(void)
{
	if (geteuid() != 0)
		skip();
}

int
fixture_listen_loopback(uint16_t *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

uint16_t
fixture_free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&sin, len), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

int
fixture_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

int64_t
fixture_cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

int
fixture_rpc_init(struct rpc_identity *id)
{
	if (sodium_init() < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	if (id != NULL) {
		crypto_sign_keypair(id->sign_pk, id->sign_sk);
		token_generate(TOKEN_ROLE_WORKER, id->sign_pk, &id->worker);
		token_generate(TOKEN_ROLE_ADMIN, id->sign_pk, &id->admin);
	}
	return 0;
}

static void
fixture_accept(evutil_socket_t fd, short what, void *arg)
{
	struct fixture_rpc_server *s = arg;
	int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

	(void)what;
	if (cfd >= 0)
		rpc_accept(s->base, cfd, "cli", s->ident, NULL, s->cb, s->arg);
}

static void *
fixture_rpc_main(void *arg)
{
	struct fixture_rpc_server *s = arg;
	struct event *ev = event_new(s->base, s->lfd, EV_READ | EV_PERSIST, fixture_accept, s);

	event_add(ev, NULL);
	event_base_dispatch(s->base);
	event_free(ev);
	return NULL;
}

void
fixture_rpc_server_start(struct fixture_rpc_server *s)
{
	s->lfd = fixture_listen_loopback(&s->port);
	s->base = event_base_new();
	assert_non_null(s->base);
	assert_int_equal(pthread_create(&s->thread, NULL, fixture_rpc_main, s), 0);
}

void
fixture_rpc_server_join(struct fixture_rpc_server *s)
{
	pthread_join(s->thread, NULL);
	event_base_free(s->base);
	s->base = NULL;
	close(s->lfd);
	s->lfd = -1;
}
