#ifndef SHOAL_TESTS_UNIT_FIXTURE_H
#define SHOAL_TESTS_UNIT_FIXTURE_H

/*
 * What several unit tests need and used to copy: a temporary directory, a root check, a
 * loopback listener, a free port, an RPC server on its own thread, and the process's open
 * descriptors and CPU time. Linked into every unit
 * test by the Makefile; failures end the test through cmocka's asserts.
 */

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_callbacks;
struct rpc_identity;

/* Make "/tmp/shoal-NAME-test.XXXXXX" into buf (size bytes): 0, or -1 (a cmocka setup's failure). */
int fixture_tmpdir(char *buf, size_t size, const char *name);
/* Remove dir and everything below it: 0, or -1. */
int fixture_rmtree(const char *dir);
/*
 * The state of a test with a temp dir of its own: a struct of size bytes whose first member is
 * char top[FIXTURE_TOP], zeroed, "/tmp/shoal-NAME-test.XXXXXX" made in top; NULL on failure.
 * fixture_teardown is its cmocka teardown: the dir and all below it removed, state freed.
 */
#define FIXTURE_TOP 64
void *fixture_new(size_t size, const char *name);
int fixture_teardown(void **state);

/* Skip the calling test unless it runs as root (mounts, chown, device nodes). */
void fixture_need_root(void);

/* A TCP socket listening on 127.0.0.1 at a port the kernel picks (*port). */
int fixture_listen_loopback(uint16_t *port);

/* A loopback port free a moment ago (bound, then released, for a daemon to bind next). */
uint16_t fixture_free_port(void);

/* How many descriptors the process holds open (a leak check). */
int fixture_open_fds(void);

/* The CPU time (user + system) the process has used, in ms (a busy-loop check). */
int64_t fixture_cpu_ms(void);

/*
 * An RPC server on a thread of its own: it accepts on a loopback port as ident (role "cli")
 * and hands each connection cb and arg; the thread ends when a callback breaks base's loop.
 * Set cb, arg and ident, then start; join after the loop is broken.
 */
struct fixture_rpc_server {
	const struct rpc_callbacks *cb;
	void *arg;
	const struct rpc_identity *ident;
	int lfd;
	uint16_t port;
	struct event_base *base;
	pthread_t thread;
};

/*
 * For a group setup of the RPC tests: libsodium ready, SIGPIPE ignored (a peer that hangs up
 * is an error return, not the end of the run), and id (may be NULL) a fresh signing key with
 * its worker and admin tokens. 0, or -1 (a cmocka setup's failure).
 */
int fixture_rpc_init(struct rpc_identity *id);

void fixture_rpc_server_start(struct fixture_rpc_server *s);
void fixture_rpc_server_join(struct fixture_rpc_server *s);

#endif
