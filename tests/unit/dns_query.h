/*
 * dns_query.h: one DNS question (type A, class IN, recursion desired) for the DNS tests:
 * tests/unit/dns_test.c and the hostile client tests/tools/dnsjunk.c build it alike.
 */
#ifndef SHOAL_TESTS_DNS_QUERY_H
#define SHOAL_TESTS_DNS_QUERY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Writes the query for NAME with id ID into Q (12 + strlen(NAME) + 6 bytes at the most);
 * returns its length. */
static inline size_t
dns_query_build(uint8_t *q, const char *name, uint16_t id)
{
	size_t off = 12;

	memset(q, 0, 12);
	q[0] = (uint8_t)(id >> 8);
	q[1] = (uint8_t)id;
	q[2] = 1;
	q[5] = 1;
	while (*name) {
		size_t l = strcspn(name, ".");
		q[off++] = (uint8_t)l;
		memcpy(q + off, name, l);
		off += l;
		name += l + (name[l] == '.');
	}
	memcpy(q + off, "\0\0\1\0\1", 5);
	return off + 5;
}

#endif
