#ifndef SHOAL_RUNTIME_NETNS_H
#define SHOAL_RUNTIME_NETNS_H

struct shoal_err;

/*
 * A container's network: its own namespace with only loopback up (none), the host's (host),
 * or a namespace the caller already made and wired (join): the agent's bridge networking
 * creates the veth peer directly in a namespace and passes it here.
 */
enum netns_mode {
	NETNS_NONE = 0,
	NETNS_HOST,
	NETNS_JOIN,
};

struct netns_config {
	enum netns_mode mode;
	const char *path; /* NETNS_JOIN: /proc/PID/ns/net or a bind-mounted nsfs file */
	int fd;           /* NETNS_JOIN: an open namespace fd, used when >= 0 (else path) */
};

/* "none" / "host" -> mode. */
int netns_parse_mode(const char *s, enum netns_mode *mode, struct shoal_err *err);
const char *netns_mode_name(enum netns_mode mode);

/* The clone flag the mode needs (CLONE_NEWNET for none, 0 otherwise). */
int netns_clone_flags(const struct netns_config *c);

/* In the container's child, before pivot_root: join the given namespace or bring lo up. */
int netns_enter(const struct netns_config *c, struct shoal_err *err);

/* Set IFF_UP on the loopback interface of the current namespace (an ioctl: no netlink socket,
 * no `ip` process). */
int netns_lo_up(struct shoal_err *err);

#endif
