/* libFuzzer target for the agent's DNS messages (common/dnsmsg): any bytes a container sends
 * to the node's resolver are dropped, forwarded or answered, never read past their length; an
 * answer fits its buffer, echoes the query's id and question, and is a reply (QR) so no two
 * resolvers can bounce it between them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dnsmsg.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct in_addr tasks[40];
	struct dnsmsg_service v[2] = {
	    {.name = "db", .addr = {0x0100600a}, .tasks = tasks, .ntasks = 0},
	    {.name = "web", .addr = {0x0101a8c0}, .tasks = tasks, .ntasks = 40},
	};
	struct dnsmsg_table t = {v, 2};
	uint8_t *q = xmalloc(size ? size : 1);
	uint8_t out[DNSMSG_UDP_MAX];
	size_t len = 0;

	/* An exact-size copy: ASan catches a read past the query. */
	memcpy(q, data, size);
	for (size_t i = 0; i < 40; i++)
		tasks[i].s_addr = (uint32_t)(0x0a00f40a + (i << 24));
	enum dnsmsg_verdict vd = dnsmsg_answer(&t, q, size, out, sizeof(out), &len, (uint32_t)size);
	if (vd == DNSMSG_REPLY) {
		SHOAL_ASSERT(len >= 12 && len <= sizeof(out));
		SHOAL_ASSERT(memcmp(out, q, 2) == 0 && (out[2] & 0x80));
	} else {
		SHOAL_ASSERT(len == 0);
	}
	len = dnsmsg_error(q, size, 2, out, sizeof(out));
	SHOAL_ASSERT(len <= sizeof(out));
	SHOAL_ASSERT((len == 0) == (vd == DNSMSG_DROP));
	free(q);
	return 0;
}
