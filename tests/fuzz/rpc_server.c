/*
 * libFuzzer target: untrusted bytes at the scheduler's side of an rpc connection.
 *
 * The first input byte picks how the rest reaches the server:
 *   even: as is, from the first byte on the wire (handshake parsing: magic, role, FINISH);
 *   odd:  after a real handshake done here with the worker token, as records
 *         [kind][len hi][len lo][len bytes]: an even kind sends the bytes as one authentic
 *         encrypted frame (so the Envelope parser sees arbitrary plaintext), an odd kind
 *         writes them raw on the wire (length prefixes, tampered ciphertext).
 * Then the peer hangs up and the loop runs until the server has closed, so every iteration
 * ends with the connection freed and both fds closed.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "shoal.pb-c.h"
#include "log.h"
#include "rpc.h"
#include "token.h"
#include "tests/fuzz/fuzz_init.h"

#define HELLO_LEN      (4 + 1 + crypto_kx_PUBLICKEYBYTES)
#define ACCEPT_LEN     (32 + 32 + 32 + 64 + 24)
#define FUZZ_MAX_INPUT (16 << 10)
#define ABYTES         crypto_secretstream_xchacha20poly1305_ABYTES
#define TAG_MESSAGE    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static struct rpc_identity ident;
static const struct rpc_limits limits = {.max_frame = 1024};

struct state {
	bool closed;
	int messages;
};

static void
on_message(struct rpc_conn *c, const Shoal__Envelope *env, void *arg)
{
	struct state *st = arg;

	(void)c;
	st->messages += env->body_case != SHOAL__ENVELOPE__BODY__NOT_SET;
}

static void
on_closed(struct rpc_conn *c, const char *reason, void *arg)
{
	struct state *st = arg;

	(void)c;
	(void)reason;
	st->closed = true;
}

static const struct rpc_callbacks cbs = {.message = on_message, .closed = on_closed};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_init_rpc(); /* SHOAL_FUZZ_LOG=1: why each input was closed */
	base = event_base_new();
	crypto_sign_keypair(ident.sign_pk, ident.sign_sk);
	token_generate(TOKEN_ROLE_WORKER, ident.sign_pk, &ident.worker);
	token_generate(TOKEN_ROLE_ADMIN, ident.sign_pk, &ident.admin);
	return 0;
}

/* Write all of buf to the peer end, letting the server read while the socket is full. Returns
 * false once the server has hung up. */
static bool
put(int fd, const void *buf, size_t len, struct state *st)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (st->closed)
				return false;
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
			continue;
		}
		if (n == -1)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* The client half of the handshake, spelled out from rpc.h independently of rpc.c. */
static bool
handshake(int fd, crypto_secretstream_xchacha20poly1305_state *tx, struct state *st)
{
	uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES];
	uint8_t hello[HELLO_LEN], acc[ACCEPT_LEN], fin[32 + 24], msg[66];
	uint8_t rx_key[32], tx_key[32], mac_key[crypto_auth_KEYBYTES];
	size_t got = 0;

	crypto_kx_keypair(pk, sk);
	memcpy(hello, "SHL1", 4);
	hello[4] = TOKEN_ROLE_WORKER;
	memcpy(hello + 5, pk, sizeof(pk));
	if (!put(fd, hello, sizeof(hello), st))
		return false;
	for (int i = 0; i < 1000 && got < sizeof(acc) && !st->closed; i++) {
		ssize_t n = recv(fd, acc + got, sizeof(acc) - got, MSG_DONTWAIT);

		if (n > 0)
			got += (size_t)n;
		else
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	if (got < sizeof(acc))
		abort(); /* the server must answer a valid HELLO */
	if (crypto_kx_client_session_keys(rx_key, tx_key, pk, sk, acc) != 0)
		abort();
	crypto_generichash(mac_key, sizeof(mac_key), (const uint8_t *)"shoal-mac-v1", 12,
	                   ident.worker.secret, TOKEN_SECRET_BYTES);
	msg[0] = 'C';
	msg[1] = TOKEN_ROLE_WORKER;
	memcpy(msg + 2, pk, 32);
	memcpy(msg + 34, acc, 32);
	crypto_auth(fin, msg, sizeof(msg), mac_key);
	crypto_secretstream_xchacha20poly1305_init_push(tx, fin + 32, tx_key);
	return put(fd, fin, sizeof(fin), st);
}

/* Play the records of an odd-mode input after the handshake; false once the server hung up. */
static bool
send_records(int fd, crypto_secretstream_xchacha20poly1305_state *tx, const uint8_t *data,
             size_t size, struct state *st)
{
	uint8_t frame[4 + 1024 + ABYTES];

	while (size >= 3) {
		uint8_t kind = data[0];
		size_t len = (size_t)data[1] << 8 | data[2];
		const uint8_t *p = data + 3;

		if (len > size - 3)
			len = size - 3;
		data += 3 + len;
		size -= 3 + len;
		if (kind & 1) {
			if (!put(fd, p, len, st))
				return false;
			continue;
		}
		if (len > limits.max_frame)
			len = limits.max_frame;
		frame[0] = 0;
		frame[1] = 0;
		frame[2] = (uint8_t)((len + ABYTES) >> 8);
		frame[3] = (uint8_t)(len + ABYTES);
		crypto_secretstream_xchacha20poly1305_push(tx, frame + 4, NULL, p, len, NULL, 0,
		                                           TAG_MESSAGE);
		if (!put(fd, frame, 4 + len + ABYTES, st))
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	crypto_secretstream_xchacha20poly1305_state tx;
	struct state st = {0};
	struct rpc_conn *c;
	int sp[2];

	if (size == 0 || size > FUZZ_MAX_INPUT)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == -1)
		abort();
	c = rpc_accept(base, sp[0], "fuzz", &ident, &limits, &cbs, &st);
	if (c == NULL)
		abort();
	if ((data[0] & 1) == 0)
		put(sp[1], data + 1, size - 1, &st);
	else if (handshake(sp[1], &tx, &st))
		send_records(sp[1], &tx, data + 1, size - 1, &st);
	shutdown(sp[1], SHUT_WR);
	while (!st.closed)
		event_base_loop(base, EVLOOP_ONCE);
	close(sp[1]);
	return 0;
}
