/*
 * libFuzzer target: untrusted Register and Apply bodies at a real scheduler.
 *
 * A scheduler runs in-process (tests/unit/sched_harness.h: sched_server_init on a fresh data
 * dir) with a worker and an admin client connected through the real handshake. The first
 * input byte picks the body: even, a Register sent with the worker token; odd, an Apply sent
 * with the admin token. The rest is the body's bytes, wrapped in an Envelope with a fresh id
 * and delivered as one authentic frame, so protobuf-c unpacks arbitrary bytes and api_handle,
 * nodes_register, the label caps, manifest_spec_from_json and the Apply checks see whatever
 * unpacks. State (nodes, services, tasks) carries over from input to input, as on a live
 * scheduler. Bit 2 of the first byte starts the input on a new connection (one node per
 * connection: a second name needs one); a connection that met the cap on refused Registers
 * is replaced by a new one. A Register body that unpacks is signed with the harness's node
 * key (harness_sign_register, its own node_key and node_signature replaced) unless bit 1 of
 * the first byte is set: most inputs get past register_admit's key check as an agent's do,
 * the others fuzz that check itself. The limits on new names are lifted: the fuzzer makes
 * thousands a second.
 *
 * The oracle, beyond the sanitizers: a request is never answered with silence. When the body
 * unpacked (the connection is still open), a reply with the request's id must come; a body
 * that does not unpack closes the connection, and the client reconnects.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

#include <sodium.h>

#include "log.h"
#include "tests/fuzz/fuzz_init.h"
#include "tests/unit/sched_harness.h"

#define FUZZ_MAX_INPUT (64 << 10)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct harness h;

/* libFuzzer ends with exit(): the data dir goes with it. */
static void
remove_dir(void)
{
	cleanup_free char *rm = xasprintf("rm -rf '%s'", h.dir);

	if (h.dir[0] && system(rm) != 0)
		fprintf(stderr, "fuzz: cannot remove %s\n", h.dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_init_rpc();
	/* Every Register and Apply writes the store: keep it in memory when we can. */
	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 0);
	if (harness_open(&h, 0) == -1)
		abort();
	h.srv.nodes.join.rate = h.srv.nodes.join.burst = h.srv.nodes.join.tokens = 1e12;
	h.srv.nodes.join.per_conn = UINT32_MAX;
	atexit(remove_dir);
	return 0;
}

/* A varint as protobuf writes it; returns its length. */
static size_t
put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	do {
		out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

/*
 * The Register body in data, signed for the worker's connection; NULL when it does not unpack
 * (sent as it is). *len is the new body's length.
 */
static uint8_t *
signed_register(const uint8_t *data, size_t size, size_t *len)
{
	Shoal__Register *reg = shoal__register__unpack(NULL, size, data);
	ProtobufCBinaryData key, sig_field;
	uint8_t sig[NODEKEY_SIG_BYTES], *out;

	if (reg == NULL)
		return NULL;
	key = reg->node_key;
	sig_field = reg->node_signature;
	harness_sign_register(&h, HARNESS_WORKER, reg, sig);
	*len = shoal__register__get_packed_size(reg);
	out = xmalloc(*len ? *len : 1);
	shoal__register__pack(reg, out);
	/* Back to what the unpacker allocated, which it frees. */
	reg->node_key = key;
	reg->node_signature = sig_field;
	shoal__register__free_unpacked(reg, NULL);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int role;
	uint32_t field;
	uint8_t *frame, *body = NULL;
	size_t len = 0, body_len = size - 1;
	uint64_t id;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	role = data[0] & 1 ? HARNESS_ADMIN : HARNESS_WORKER;
	field = role == HARNESS_ADMIN ? 32 : 10; /* Envelope.apply, Envelope.register */
	/* Bit 2: a new session first (one node per connection: a second name needs one). */
	if ((h.cli[role] == NULL || data[0] & 4) && harness_reconnect(&h, role) == -1)
		abort(); /* the scheduler must still take connections */
	if (role == HARNESS_WORKER && !(data[0] & 2))
		body = signed_register(data + 1, size - 1, &body_len);
	/* Envelope { id = 1: varint; body = field: bytes } */
	frame = xmalloc(body_len + 32);
	id = h.want_id = ++h.next_id;
	frame[len++] = 1 << 3 | 0;
	len += put_varint(frame + len, id);
	len += put_varint(frame + len, (uint64_t)field << 3 | 2);
	len += put_varint(frame + len, body_len);
	memcpy(frame + len, body ? body : data + 1, body_len);
	len += body_len;
	free(body);
	h.reply = NULL;
	harness_send_bytes(&h, role, frame, len);
	free(frame);
	for (int64_t end = util_now_ms() + 5000;
	     h.reply == NULL && h.cli[role] != NULL && util_now_ms() < end;)
		event_base_loop(h.srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (h.reply == NULL && h.cli[role] != NULL)
		abort(); /* answered with silence */
	if (h.reply) {
		/* A connection that met the refusal cap answers nothing else: a new session. */
		if (h.reply->body_case == SHOAL__ENVELOPE__BODY_ERROR &&
		    strstr(h.reply->error->message, "refused on this connection") != NULL &&
		    harness_reconnect(&h, role) == -1)
			abort();
		shoal__envelope__free_unpacked(h.reply, NULL);
		h.reply = NULL;
	}
	return 0;
}
