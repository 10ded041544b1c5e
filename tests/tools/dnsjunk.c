/*
 * dnsjunk IP PORT: what a hostile container sends the node's DNS server (dns.bats): random
 * datagrams, every truncation of a query, compression pointers in the question, replies,
 * oversized labels and names, a TCP length that never comes, random TCP bytes. Then one good
 * query for "web" over TCP and one over UDP, which must still be answered within 5 s (exit 0),
 * else exit 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "../unit/dns_query.h"

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	uint8_t buf[4096], q[512];
	size_t ql;
	int u, sent = 0;

	if (argc != 3 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "usage: dnsjunk IP PORT\n");
		return 2;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	if (sodium_init() < 0 || (u = socket(AF_INET, SOCK_DGRAM, 0)) == -1)
		return 2;
	for (int i = 0; i < 2000; i++) {
		size_t n = randombytes_uniform(sizeof(buf));
		randombytes_buf(buf, n);
		sent += sendto(u, buf, n, 0, (struct sockaddr *)&sa, sizeof(sa)) != -1;
	}
	ql = dns_query_build(q, "web", 0x4242);
	for (size_t n = 0; n < ql; n++)
		sent += sendto(u, q, n, 0, (struct sockaddr *)&sa, sizeof(sa)) != -1;
	/* A pointer loop where the name starts; a reply; a label of 64; a name of 300 bytes. */
	memcpy(buf, q, ql);
	buf[12] = 0xc0;
	buf[13] = 12;
	sendto(u, buf, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
	memcpy(buf, q, ql);
	buf[2] |= 0x80;
	sendto(u, buf, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
	memset(buf, 0, sizeof(buf));
	memcpy(buf, q, 12);
	buf[12] = 64;
	memset(buf + 13, 'a', 64);
	sendto(u, buf, 13 + 64 + 5, 0, (struct sockaddr *)&sa, sizeof(sa));
	for (int i = 0; i < 5; i++) {
		buf[12 + i * 61] = 60;
		memset(buf + 13 + i * 61, 'b', 60);
	}
	sendto(u, buf, 12 + 5 * 61 + 5, 0, (struct sockaddr *)&sa, sizeof(sa));
	/* TCP: a length never followed by its bytes, then random bytes. */
	for (int i = 0; i < 2; i++) {
		int t = socket(AF_INET, SOCK_STREAM, 0);
		if (t == -1 || connect(t, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
			fprintf(stderr, "dnsjunk: tcp connect: %s\n", strerror(errno));
			return 1;
		}
		if (i == 0) {
			(void)!write(t, "\xff\xff\x00", 3);
		} else {
			randombytes_buf(buf, 1000);
			(void)!write(t, buf, 1000);
		}
		close(t);
	}
	/* A good query over TCP, on a connection of its own (junk closes its connection). */
	{
		int t = socket(AF_INET, SOCK_STREAM, 0);
		uint8_t msg[2 + 512], ans[2 + 4096];
		size_t got = 0;
		struct pollfd p = {t, POLLIN, 0};
		if (t == -1 || connect(t, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
			fprintf(stderr, "dnsjunk: tcp connect: %s\n", strerror(errno));
			return 1;
		}
		msg[0] = (uint8_t)(ql >> 8);
		msg[1] = (uint8_t)ql;
		memcpy(msg + 2, q, ql);
		(void)!write(t, msg, ql + 2);
		while (got < 14 && poll(&p, 1, 5000) == 1) {
			ssize_t n = read(t, ans + got, sizeof(ans) - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(t);
		if (got < 14 || ans[2] != 0x42 || !(ans[4] & 0x80)) {
			fprintf(stderr, "dnsjunk: no answer over TCP\n");
			return 1;
		}
		printf("dnsjunk: answered over TCP (%d answers)\n", ans[8] << 8 | ans[9]);
	}
	/* Still serving over UDP? */
	for (int attempt = 0; attempt < 5; attempt++) {
		struct pollfd p = {u, POLLIN, 0};
		ssize_t n;
		sendto(u, q, ql, 0, (struct sockaddr *)&sa, sizeof(sa));
		while (poll(&p, 1, 1000) == 1) {
			n = recv(u, buf, sizeof(buf), 0);
			if (n >= 12 && buf[0] == 0x42 && buf[1] == 0x42 && (buf[2] & 0x80)) {
				printf("dnsjunk: %d junk datagrams sent, then answered (rcode %d, "
				       "%d answers)\n",
				       sent, buf[3] & 15, buf[6] << 8 | buf[7]);
				return 0;
			}
		}
	}
	fprintf(stderr, "dnsjunk: no answer after the junk\n");
	return 1;
}
