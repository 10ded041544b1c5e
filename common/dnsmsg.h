#ifndef SHOAL_COMMON_DNSMSG_H
#define SHOAL_COMMON_DNSMSG_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/*
 * DNS messages as the agent's resolver (agent/dns.h) reads and writes them: pure functions over
 * bytes, no sockets, so a fuzzer drives them. A query comes from any container of the node and
 * is hostile until parsed: anything malformed is dropped, never answered (no reflection of
 * garbage), and nothing is read past its length.
 *
 * Names it answers (case-insensitive, with or without the cluster domain DNSMSG_DOMAIN and a
 * trailing dot):
 *   NAME         the service's address (the node's proxy or the service's VIP); a service
 *                with neither (host network, unpublished) answers its task addresses
 *   tasks.NAME   the service's healthy task addresses, rotated per query
 * An unknown single-label NAME and every other name are for the node's upstream resolvers;
 * an unknown name under the cluster domain, or tasks.X for an unknown X, is NXDOMAIN. For a
 * known name, a type other than A (AAAA, MX...) is NOERROR with no answer.
 */

#define DNSMSG_DOMAIN  "shoal"
#define DNSMSG_UDP_MAX 512   /* a reply over UDP without EDNS: more answers set TC */
#define DNSMSG_TCP_MAX 65535 /* over TCP (2-byte length prefix) */
#define DNSMSG_TTL     5     /* seconds: NAME is stable, tasks.NAME follows Endpoints */

/* One service's names. */
struct dnsmsg_service {
	char *name;          /* lower case */
	struct in_addr addr; /* NAME's answer; 0.0.0.0: the tasks' addresses */
	struct in_addr *tasks;
	size_t ntasks;
};

/* Every service, sorted by name (dnsmsg_table_sort). */
struct dnsmsg_table {
	struct dnsmsg_service *v;
	size_t n;
};

enum dnsmsg_verdict {
	DNSMSG_DROP = 0, /* malformed, or a reply: send nothing */
	DNSMSG_REPLY,    /* *outlen bytes of out are the answer */
	DNSMSG_FORWARD,  /* not ours: ask the upstream resolvers */
};

/* The parts of a query the server needs to forward and match the upstream's reply. */
struct dnsmsg_question {
	uint16_t id;
	size_t end; /* offset just past the question */
	uint16_t qtype, qclass;
	char name[256]; /* dotted, lower case, no trailing dot; "" for the root */
};

/* Parse q's header and single question; -1 if malformed or not a standard query. */
int dnsmsg_parse_query(const uint8_t *q, size_t qlen, struct dnsmsg_question *out);

/*
 * Answer q from t into out (cap bytes, at least DNSMSG_UDP_MAX; answers that do not fit are
 * left out and TC set). rotate picks the first task address of a tasks.NAME answer.
 */
enum dnsmsg_verdict dnsmsg_answer(const struct dnsmsg_table *t, const uint8_t *q, size_t qlen,
                                  uint8_t *out, size_t cap, size_t *outlen, uint32_t rotate);

/* A reply to q with rcode (2 SERVFAIL, 3 NXDOMAIN...) and no answer; 0 if q is malformed. */
size_t dnsmsg_error(const uint8_t *q, size_t qlen, int rcode, uint8_t *out, size_t cap);

void dnsmsg_table_sort(struct dnsmsg_table *t);
void dnsmsg_table_clear(struct dnsmsg_table *t);

#endif
