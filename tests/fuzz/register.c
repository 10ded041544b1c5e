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
 * scheduler.
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
	if (sodium_init() < 0)
		abort();
	signal(SIGPIPE, SIG_IGN);
	/* SHOAL_FUZZ_LOG=1 shows the scheduler's lines when replaying an input by hand. */
	log_level = getenv("SHOAL_FUZZ_LOG") != NULL ? LOG_DEBUG : -1;
	/* Every Register and Apply writes the store: keep it in memory when we can. */
	if (access("/dev/shm", W_OK) == 0)
		setenv("TMPDIR", "/dev/shm", 0);
	if (harness_open(&h, 0) == -1)
		abort();
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int role;
	uint32_t field;
	uint8_t *frame;
	size_t len = 0;
	uint64_t id;

	if (size < 1 || size > FUZZ_MAX_INPUT)
		return 0;
	role = data[0] & 1 ? HARNESS_ADMIN : HARNESS_WORKER;
	field = role == HARNESS_ADMIN ? 32 : 10; /* Envelope.apply, Envelope.register */
	if (h.cli[role] == NULL && harness_connect(&h, role) == -1)
		abort(); /* the scheduler must still take connections */
	/* Envelope { id = 1: varint; body = field: bytes } */
	frame = xmalloc(size + 32);
	id = h.want_id = ++h.next_id;
	frame[len++] = 1 << 3 | 0;
	len += put_varint(frame + len, id);
	len += put_varint(frame + len, (uint64_t)field << 3 | 2);
	len += put_varint(frame + len, size - 1);
	memcpy(frame + len, data + 1, size - 1);
	len += size - 1;
	h.reply = NULL;
	harness_send_bytes(&h, role, frame, len);
	free(frame);
	for (int64_t end = util_now_ms() + 5000;
	     h.reply == NULL && h.cli[role] != NULL && util_now_ms() < end;)
		event_base_loop(h.srv.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	if (h.reply == NULL && h.cli[role] != NULL)
		abort(); /* answered with silence */
	if (h.reply) {
		shoal__envelope__free_unpacked(h.reply, NULL);
		h.reply = NULL;
	}
	return 0;
}
