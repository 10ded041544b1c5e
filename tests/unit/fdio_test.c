/* Unit tests for common/fdio: the one whole-write loop of every program. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "fdio.h"

#define BIG (512 * 1024) /* more than a pipe holds: the writer must loop on short writes */

static void *
drain(void *arg)
{
	int fd = *(int *)arg;
	static char got[BIG];
	size_t n = 0;
	ssize_t r;

	while (n < sizeof(got) && (r = read(fd, got + n, sizeof(got) - n)) > 0)
		n += (size_t)r;
	return n == sizeof(got) && got[0] == 'a' && got[BIG - 1] == 'z' ? got : NULL;
}

static void
test_write_all_loops(void **state)
{
	static char buf[BIG];
	pthread_t t;
	void *ok;
	int p[2];

	(void)state;
	memset(buf, 'a', sizeof(buf) / 2);
	memset(buf + sizeof(buf) / 2, 'z', sizeof(buf) / 2);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pthread_create(&t, NULL, drain, &p[0]), 0);
	assert_int_equal(fdio_write_all(p[1], buf, sizeof(buf)), 0);
	close(p[1]);
	pthread_join(t, &ok);
	assert_non_null(ok);
	close(p[0]);
}

/* A peer gone is an error to handle, not a SIGPIPE that kills the process. */
static void
test_send_all_peer_gone(void **state)
{
	int sv[2];

	(void)state;
	signal(SIGPIPE, SIG_DFL);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	errno = 0;
	assert_int_equal(fdio_send_all(sv[0], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(sv[0]);
	assert_int_equal(fdio_write_all(-1, "x", 1), -1);
	assert_int_equal(errno, EBADF);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_all_loops),
	    cmocka_unit_test(test_send_all_peer_gone),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
