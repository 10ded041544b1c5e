#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "util.h"

int
netns_parse_mode(const char *s, enum netns_mode *mode, struct shoal_err *err)
{
	if (strcmp(s, "none") == 0)
		*mode = NETNS_NONE;
	else if (strcmp(s, "host") == 0)
		*mode = NETNS_HOST;
	else
		return err_set(err, 0, "invalid network \"%s\" (want none or host)", s);
	return 0;
}

const char *
netns_mode_name(enum netns_mode mode)
{
	switch (mode) {
	case NETNS_NONE:
		return "none";
	case NETNS_HOST:
		return "host";
	case NETNS_JOIN:
		return "join";
	}
	return "?";
}

int
netns_clone_flags(const struct netns_config *c)
{
	return c->mode == NETNS_NONE ? CLONE_NEWNET : 0;
}

int
netns_lo_up(struct shoal_err *err)
{
	cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;

	if (fd == -1)
		return err_set(err, errno, "socket");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == -1)
		return err_set(err, errno, "get flags of lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) == -1)
		return err_set(err, errno, "bring lo up");
	return 0;
}

int
netns_enter(const struct netns_config *c, struct shoal_err *err)
{
	switch (c->mode) {
	case NETNS_HOST:
		return 0;
	case NETNS_NONE:
		return netns_lo_up(err);
	case NETNS_JOIN: {
		cleanup_close int own = -1;
		int fd = c->fd;
		if (fd < 0) {
			own = open(c->path, O_RDONLY | O_CLOEXEC);
			if (own == -1)
				return err_set(err, errno, "open network namespace %s", c->path);
			fd = own;
		}
		if (setns(fd, CLONE_NEWNET) == -1)
			return err_set(err, errno, "join network namespace %s",
			               c->path ? c->path : "(fd)");
		return 0;
	}
	}
	return err_set(err, EINVAL, "network mode %d", (int)c->mode);
}
