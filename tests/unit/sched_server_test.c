/* Unit tests for scheduler/server's accept path: what a full fd table does to the loop. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <event2/event.h>
#include <sodium.h>

#include "fixture.h"
#include "err.h"
#include "scheduler/identity.h"
#include "log.h"
#include "scheduler/server.h"

/*
 * Hostile: clients wait while the scheduler's fd table is full. accept() fails with EMFILE
 * and the listening socket stays readable: the loop must pause accepting (and shed one
 * waiting client with its spare fd), not call accept() again at once, forever (584,504
 * failures and as many log lines in 4 s at 75% of a core, measured before).
 */
static void
test_emfile_pauses(void **state)
{
	char dir[] = "/tmp/shoal-sched-test-XXXXXX", listen[32];
	struct sched_options so = {0};
	struct sched_server srv;
	struct shoal_err err;
	struct rpc_identity id;
	struct rlimit saved, low;
	struct timeval one_s = {1, 0};
	uint16_t port = fixture_free_port();
	int cl[60], shed = 0;
	int64_t cpu0, used;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(identity_init(dir, false, &id, &err), 0);
	identity_wipe(&id);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	so.data_dir = dir;
	so.listen = listen;
	if (sched_server_init(&srv, &so, &err) == -1)
		fail_msg("sched_server_init: %s", err.msg);
	for (int i = 0; i < 60; i++) {
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(cl[i] >= 0);
	}
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	low = saved;
	low.rlim_cur = (rlim_t)fixture_open_fds() + 10; /* room for ~10 connections */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	for (int i = 0; i < 60; i++) {
		struct sockaddr_in sin = {.sin_family = AF_INET,
		                          .sin_port = htons(port),
		                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

		assert_int_equal(connect(cl[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	cpu0 = fixture_cpu_ms();
	event_base_loopexit(srv.base, &one_s);
	event_base_dispatch(srv.base);
	used = fixture_cpu_ms() - cpu0;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	if (used >= 300)
		fail_msg("the scheduler spun on a full fd table: %lld ms of CPU in 1 s",
		         (long long)used);
	/* Those it could not take, it shed with its spare fd (a close, not a hang). */
	for (int i = 0; i < 60; i++) {
		char c;
		struct timeval tv = {0, 1000};

		setsockopt(cl[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (recv(cl[i], &c, 1, 0) == 0)
			shed++;
		close(cl[i]);
	}
	assert_true(shed >= 1);
	sched_server_free(&srv);
	{
		char cmd[96];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_emfile_pauses),
	};

	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	log_init("sched", LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
