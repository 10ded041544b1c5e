#include "addr.h"

#include <arpa/inet.h>
#include <stddef.h>

bool
addr_parse4(const char *s, uint32_t *out)
{
	struct in_addr in;

	/* inet_pton takes exactly four decimal parts: no "127.1", no octal, no hex. */
	if (s == NULL || inet_pton(AF_INET, s, &in) != 1)
		return false;
	*out = ntohl(in.s_addr);
	return true;
}

const char *
addr_backend_refusal(uint32_t a)
{
	if (a == 0xffffffffu)
		return "broadcast";
	if ((a >> 24) == 0)
		return "unspecified"; /* 0.0.0.0/8: "this host" */
	if ((a >> 24) == 127)
		return "loopback";
	if ((a >> 16) == 0xa9fe)
		return "link-local"; /* 169.254/16 */
	if ((a >> 28) == 0xe)
		return "multicast"; /* 224/4 */
	if ((a >> 28) == 0xf)
		return "reserved"; /* 240/4 */
	return NULL;
}

const char *
addr_backend_refusal_text(const char *s)
{
	uint32_t a;

	if (!addr_parse4(s, &a))
		return "not an IPv4 address";
	return addr_backend_refusal(a);
}
