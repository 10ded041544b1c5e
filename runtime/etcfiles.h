#ifndef SHOAL_RUNTIME_ETCFILES_H
#define SHOAL_RUNTIME_ETCFILES_H

#include <stdbool.h>

struct shoal_err;

/*
 * The files Docker gives every container: /etc/hosts, /etc/hostname and /etc/resolv.conf.
 * They live in the container's state dir (ETCFILES_* below) and are bind-mounted over the
 * image's paths at start (rootfs_bind_etc_files): the image is never written, the container
 * may edit its copies (as in Docker), and they go with the container.
 */

#define ETCFILES_HOSTS    "hosts"
#define ETCFILES_HOSTNAME "hostname"
#define ETCFILES_RESOLV   "resolv.conf"

/* The text of /etc/hosts: localhost for IPv4 and IPv6, and "ip hostname" when ip is not
 * NULL. Caller frees. */
char *etcfiles_hosts(const char *ip, const char *hostname);

/*
 * The text of /etc/resolv.conf. host is the text of the host's own resolv.conf (may be NULL).
 * nameservers (NULL-terminated, may be NULL): the container's resolvers, replacing the host's;
 * without them the host's are kept, minus loopback ones unless keep_loopback (a container in
 * its own network namespace cannot reach the host's 127.0.0.53). search domains come first,
 * the host's follow (an explicit search line also stops resolvers from taking the hostname's
 * domain as one: a task named web.1.x4 would otherwise look up "api" as "api.1.x4"). options
 * replace the host's when not NULL. Caller frees.
 */
char *etcfiles_resolv(const char *host, char *const *nameservers, char *const *search,
                      char *const *options, bool keep_loopback);

/* Write the three files into dir (mode 0644). resolv is the text for resolv.conf. */
int etcfiles_write(const char *dir, const char *hosts, const char *hostname, const char *resolv,
                   struct shoal_err *err);

#endif
