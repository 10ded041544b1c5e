#ifndef SHOAL_COMMON_FDIO_H
#define SHOAL_COMMON_FDIO_H

/* Whole writes to a blocking descriptor: the one loop every program uses. */

#include <stddef.h>

/*
 * Write all n bytes of p to fd, again after EINTR and after a short write. Returns 0, or -1
 * with errno set (EIO when the descriptor took nothing without saying why).
 */
int fdio_write_all(int fd, const void *p, size_t n);

/* The same over a socket with send(MSG_NOSIGNAL): a peer gone is EPIPE, never SIGPIPE. */
int fdio_send_all(int fd, const void *p, size_t n);

#endif
