/* The PROXY protocol header (see proxy_pp.h). */
#include "proxy_pp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* v2's fixed signature: chosen by the spec to be invalid as the start of any text protocol. */
static const char pp2_sig[12] = "\r\n\r\n\0\r\nQUIT\n";

size_t
proxy_pp_build(int version, const struct sockaddr *src, const struct sockaddr *dst, char *out)
{
	int fam = src->sa_family == dst->sa_family ? src->sa_family : AF_UNSPEC;

	if (fam != AF_INET && fam != AF_INET6)
		fam = AF_UNSPEC;
	if (version == 1) {
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		unsigned sp, dp;
		int n;

		if (fam == AF_UNSPEC) {
			memcpy(out, "PROXY UNKNOWN\r\n", 15);
			return 15;
		}
		if (fam == AF_INET) {
			const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

			inet_ntop(AF_INET, &a->sin_addr, s, sizeof(s));
			inet_ntop(AF_INET, &b->sin_addr, d, sizeof(d));
			sp = ntohs(a->sin_port);
			dp = ntohs(b->sin_port);
		} else {
			const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

			inet_ntop(AF_INET6, &a->sin6_addr, s, sizeof(s));
			inet_ntop(AF_INET6, &b->sin6_addr, d, sizeof(d));
			sp = ntohs(a->sin6_port);
			dp = ntohs(b->sin6_port);
		}
		n = snprintf(out, PROXY_PP_MAX, "PROXY %s %s %s %u %u\r\n",
		             fam == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
		return n > 0 && n < PROXY_PP_MAX ? (size_t)n : 0;
	}
	memcpy(out, pp2_sig, sizeof(pp2_sig));
	out[12] = 0x21; /* version 2, PROXY (a relayed connection) */
	if (fam == AF_INET) {
		const struct sockaddr_in *a = (const void *)src, *b = (const void *)dst;

		out[13] = 0x11; /* TCP over IPv4 */
		out[14] = 0;
		out[15] = 12;
		memcpy(out + 16, &a->sin_addr, 4);
		memcpy(out + 20, &b->sin_addr, 4);
		memcpy(out + 24, &a->sin_port, 2); /* already network order */
		memcpy(out + 26, &b->sin_port, 2);
		return 28;
	}
	if (fam == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)src, *b = (const void *)dst;

		out[13] = 0x21; /* TCP over IPv6 */
		out[14] = 0;
		out[15] = 36;
		memcpy(out + 16, &a->sin6_addr, 16);
		memcpy(out + 32, &b->sin6_addr, 16);
		memcpy(out + 48, &a->sin6_port, 2);
		memcpy(out + 50, &b->sin6_port, 2);
		return 52;
	}
	out[13] = 0x00; /* UNSPEC: the receiver keeps the connection's own addresses */
	out[14] = 0;
	out[15] = 0;
	return 16;
}
