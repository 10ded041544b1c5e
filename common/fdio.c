#include "fdio.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

static int
fdio_loop(int fd, const void *buf, size_t n, bool sock)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = sock ? send(fd, p, n, MSG_NOSIGNAL) : write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return -1;
		if (w == 0) {
			errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
fdio_write_all(int fd, const void *p, size_t n)
{
	return fdio_loop(fd, p, n, false);
}

int
fdio_send_all(int fd, const void *p, size_t n)
{
	return fdio_loop(fd, p, n, true);
}
