#ifndef SHOAL_AGENT_PROXY_PP_H
#define SHOAL_AGENT_PROXY_PP_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * The HAProxy PROXY protocol header (haproxy doc/proxy-protocol.txt): what a backend behind
 * the node's proxy reads first to learn the client's address, since the TCP connection it
 * sees comes from the proxy. v1 is one text line, v2 a binary block; nginx, HAProxy, Envoy
 * and most servers read both.
 */

/* Room for any header proxy_pp_build writes: v1 is at most 107 bytes, v2 16 + 36. */
#define PROXY_PP_MAX 108

/*
 * Write the header of version (1 or 2) for a connection from src (the client) to dst (the
 * address the client connected to) into out (PROXY_PP_MAX bytes). Families other than
 * AF_INET/AF_INET6, or src and dst of different families, give v1 "PROXY UNKNOWN" and v2's
 * LOCAL-less UNSPEC form, which the spec says receivers must accept. Returns its length.
 */
size_t proxy_pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst,
                      char *out);

#endif
